"""Every preset reproduces docs/spec.md §1 exactly; ``herd model info`` reports it."""

from __future__ import annotations

import json

import pytest
from transformers import LlamaConfig, LlamaForCausalLM

from herd.checkpoint.hf import config_to_hf
from herd.cli import main
from herd.errors import ConfigError
from herd.model.config import ModelConfig, llama_hidden_dim
from herd.model.info import count_parameters, model_info
from herd.model.presets import get_preset, preset_names

# (preset, ffn hidden, context, parameters) copied from the docs/spec.md §1 table.
SPEC_TABLE = [
    ("llama1-7b", 11008, 2048, 6_738_415_616),
    ("llama1-13b", 13824, 2048, 13_015_864_320),
    ("llama1-33b", 17920, 2048, 32_528_943_616),
    ("llama1-65b", 22016, 2048, 65_285_660_672),
    ("llama2-7b", 11008, 4096, 6_738_415_616),
    ("llama2-13b", 13824, 4096, 13_015_864_320),
    ("llama2-70b", 28672, 4096, 68_976_648_192),
    ("codellama-7b", 11008, 16384, 6_738_546_688),
    ("codellama-13b", 13824, 16384, 13_016_028_160),
    ("codellama-34b", 22016, 16384, 33_743_970_304),
    ("codellama-70b", 28672, 16384, 68_976_910_336),
    ("llama3-8b", 14336, 8192, 8_030_261_248),
    ("llama3-70b", 28672, 8192, 70_553_706_496),
    ("llama3.1-8b", 14336, 131072, 8_030_261_248),
    ("llama3.1-70b", 28672, 131072, 70_553_706_496),
    ("llama3.1-405b", 53248, 131072, 405_853_388_800),
]


@pytest.mark.parametrize(("name", "hidden", "context", "params"), SPEC_TABLE)
def test_preset_matches_spec(name: str, hidden: int, context: int, params: int) -> None:
    config = get_preset(name)
    assert config.hidden_dim == hidden
    assert config.max_seq_len == context
    assert count_parameters(config) == params


@pytest.mark.parametrize("name", ["llama2-7b", "llama2-70b", "llama3.1-8b", "smollm2-135m", "llama3-tiny"])
def test_count_agrees_with_transformers(name: str) -> None:
    """transformers' own LlamaForCausalLM, built on the meta device, has the same parameter count."""
    import torch

    config = get_preset(name)
    with torch.device("meta"):
        hf = LlamaForCausalLM(LlamaConfig(**config_to_hf(config)))
    assert sum(p.numel() for p in hf.parameters()) == count_parameters(config)


def test_all_presets_build() -> None:
    for name in preset_names():
        assert count_parameters(get_preset(name)) > 0


def test_hidden_dim_rule() -> None:
    # Hand-computed: int(2*4*4096/3) = 10922 -> next multiple of 256 = 11008.
    assert llama_hidden_dim(4096, 256, None) == 11008
    # int(1.3 * 21845) = 28398 -> next multiple of 4096 = 28672 (Llama-2 70B).
    assert llama_hidden_dim(8192, 4096, 1.3) == 28672


def test_info_figures_hand_computed() -> None:
    info = model_info(get_preset("llama2-7b"), seq_len=4096)
    assert info.non_embedding_parameters == 6_738_415_616 - 2 * 32000 * 4096
    # KV cache per token: 2 (k, v) x 32 layers x 32 heads x 128 x 2 bytes.
    assert info.kv_cache_bytes_per_token_bf16 == 2 * 32 * 32 * 128 * 2
    assert info.training_flops_per_token == 6 * (6_738_415_616 - 32000 * 4096) + 12 * 32 * 32 * 128 * 4096
    assert info.weight_bytes_bf16 == 2 * 6_738_415_616
    assert model_info(get_preset("llama3-8b")).kv_cache_bytes_per_token_bf16 == 2 * 32 * 8 * 128 * 2


def test_model_info_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "info", "llama3.1-405b", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["parameters"] == 405_853_388_800


def test_model_info_cli_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "info", "codellama-34b"]) == 0
    assert "33,743,970,304" in capsys.readouterr().out


def test_model_info_unknown(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "info", "llama9-1t"]) == 2
    err = capsys.readouterr().err
    assert "llama9-1t" in err and "Traceback" not in err


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ConfigError, match="n_kv_heads"):
        ModelConfig(dim=64, n_layers=1, n_heads=4, n_kv_heads=3, vocab_size=10)
    with pytest.raises(ConfigError, match="unknown key"):
        ModelConfig.from_dict({"dim": 64, "n_layers": 1, "n_heads": 4, "vocab_size": 10, "colour": "red"})
