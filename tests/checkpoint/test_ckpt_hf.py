"""herd's native Hugging Face layout: sharding, config variants, conversion CLI and bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from transformers import LlamaForCausalLM

from herd.checkpoint.base import CheckpointInfo
from herd.checkpoint.hf import INDEX_NAME, HFReader, config_from_hf, config_to_hf, write_hf
from herd.checkpoint.load import load_model, model_tensors
from herd.cli import main
from herd.errors import CheckpointError
from herd.model.build import build_model
from herd.model.presets import get_preset


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    model = build_model(get_preset("llama3.1-tiny"), seed=11)
    path = tmp_path_factory.mktemp("hf") / "tiny"
    write_hf(path, CheckpointInfo(model.config), model_tensors(model))
    return model, path


@torch.no_grad()
def test_sharded_with_index_loads_everywhere(tiny: tuple, tmp_path: Path) -> None:
    model, _ = tiny
    dst = tmp_path / "sharded"
    write_hf(dst, CheckpointInfo(model.config), model_tensors(model), max_shard_bytes=1_000_000)
    index = json.loads((dst / INDEX_NAME).read_text())
    files = sorted(set(index["weight_map"].values()))
    assert len(files) > 2 and files[0].endswith(f"-of-{len(files):05d}.safetensors")
    assert index["metadata"]["total_size"] == sum(t.nbytes for _, t in model_tensors(model))
    tokens = torch.randint(0, model.config.vocab_size, (1, 30))
    hf = LlamaForCausalLM.from_pretrained(dst).eval()
    assert (hf(tokens).logits - model(tokens)).abs().max() <= 1e-4
    assert torch.equal(load_model(dst)(tokens), model(tokens))


def test_dtype_conversion(tiny: tuple, tmp_path: Path) -> None:
    model, src = tiny
    assert (
        main(["convert", str(src), str(tmp_path / "bf16"), "--to", "hf", "--dtype", "bf16", "--quiet"]) == 0
    )
    loaded = load_model(tmp_path / "bf16")
    assert loaded.tok_embeddings.weight.dtype == torch.bfloat16
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["torch_dtype"] == "bfloat16"
    assert torch.equal(loaded.norm.weight.float(), model.norm.weight.to(torch.bfloat16).float())
    assert load_model(tmp_path / "bf16", dtype="fp32").tok_embeddings.weight.dtype == torch.float32


def test_rope_parameters_v5_config() -> None:
    """transformers v5 puts θ and scaling under ``rope_parameters``; released v4 files use rope_theta/rope_scaling."""
    config = get_preset("llama3.1-tiny")
    v4 = config_to_hf(config)
    v5 = {k: v for k, v in v4.items() if k not in ("rope_theta", "rope_scaling")}
    v5["rope_parameters"] = {"rope_theta": config.rope_theta} | v4["rope_scaling"]
    assert config_from_hf(v4) == config_from_hf(v5) == config
    plain = config_to_hf(get_preset("llama2-tiny"))
    v5_plain = {k: v for k, v in plain.items() if k not in ("rope_theta", "rope_scaling")}
    v5_plain["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0}
    assert config_from_hf(v5_plain) == config_from_hf(plain)


def test_legacy_rope_scaling_type_key() -> None:
    hf = config_to_hf(get_preset("llama2-tiny"))
    hf["rope_scaling"] = {"type": "linear", "factor": 2.0}
    assert config_from_hf(hf).rope_scaling.factor == 2.0


def _cli_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1
    return err


def test_truncated_safetensors(tiny: tuple, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, src = tiny
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_bytes((src / "config.json").read_bytes())
    data = (src / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[: len(data) // 2])
    err = _cli_error(["convert", str(bad), str(tmp_path / "out"), "--to", "hf", "--quiet"], capsys)
    assert "model.safetensors" in err
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad"]


def test_garbage_safetensors(tiny: tuple, tmp_path: Path) -> None:
    _, src = tiny
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_bytes((src / "config.json").read_bytes())
    (bad / "model.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        load_model(bad)


def test_shape_mismatch(tiny: tuple, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, src = tiny
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.safetensors").write_bytes((src / "model.safetensors").read_bytes())
    config = json.loads((src / "config.json").read_text())
    config["intermediate_size"] += 64
    (bad / "config.json").write_text(json.dumps(config))
    err = _cli_error(["convert", str(bad), str(tmp_path / "out"), "--to", "hf", "--quiet"], capsys)
    assert "mlp.gate_proj" in err or "w1" in err
    assert "shape" in err
    assert not (tmp_path / "out").exists()


def test_missing_shard(tiny: tuple, tmp_path: Path) -> None:
    model, _ = tiny
    dst = tmp_path / "sharded"
    write_hf(dst, CheckpointInfo(model.config), model_tensors(model), max_shard_bytes=1_000_000)
    victim = sorted(dst.glob("model-*.safetensors"))[1]
    victim.unlink()
    with pytest.raises(CheckpointError, match=re.escape(victim.name)):
        load_model(dst)


def test_bad_config_json(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"config\.json"):
        HFReader(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(CheckpointError, match="gpt2"):
        HFReader(tmp_path)


def test_existing_destination_survives_failed_conversion(tiny: tuple, tmp_path: Path) -> None:
    _, src = tiny
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "keep.txt").write_text("precious")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_bytes((src / "config.json").read_bytes())
    (bad / "model.safetensors").write_bytes(b"junk")
    assert main(["convert", str(bad), str(dst), "--to", "hf", "--quiet"]) == 2
    assert (dst / "keep.txt").read_text() == "precious"


def test_unknown_path_and_dtype(tiny: tuple, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, src = tiny
    assert "no such file" in _cli_error(
        ["convert", str(tmp_path / "nope"), str(tmp_path / "o"), "--to", "hf"], capsys
    )
    assert "fp7" in _cli_error(
        ["convert", str(src), str(tmp_path / "o"), "--to", "hf", "--dtype", "fp7"], capsys
    )
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_tokenizer_travels_with_conversions(llama3_tokenizer_dir: Path, tmp_path: Path) -> None:
    """Tokenizer files are copied to hf/meta outputs and embedded in GGUF outputs (llama.cpp reads them)."""
    import shutil

    import llama_cpp

    from herd.tokenizer import load_tokenizer

    config = get_preset("llama3-tiny").replace(dim=32, n_layers=1, n_heads=2, n_kv_heads=1, vocab_size=128256)
    src = write_hf(tmp_path / "src", CheckpointInfo(config), model_tensors(build_model(config)))
    for name in ("tokenizer.model", "tokenizer.json"):
        shutil.copyfile(llama3_tokenizer_dir / name, src / name)
    text = "Hello, world! 12345 — ünïcödé <|eot_id|>"
    expected = load_tokenizer(src).encode(text)
    for to, dst in (("hf", tmp_path / "hf"), ("meta", tmp_path / "meta")):
        assert main(["convert", str(src), str(dst), "--to", to, "--quiet"]) == 0
        assert (dst / "tokenizer.model").read_bytes() == (src / "tokenizer.model").read_bytes()
        assert load_tokenizer(dst).encode(text) == expected
    gguf = tmp_path / "m.gguf"
    assert main(["convert", str(tmp_path / "meta"), str(gguf), "--to", "gguf", "--quiet"]) == 0
    assert load_tokenizer(gguf).encode(text) == expected
    vocab = llama_cpp.Llama(model_path=str(gguf), vocab_only=True, verbose=False)
    assert vocab.tokenize(text.encode(), add_bos=False, special=False) == expected


@pytest.mark.slow
def test_smollm2_gguf_to_hf_is_a_complete_transformers_model(smollm2_gguf: Path, tmp_path: Path) -> None:
    """GGUF -> HF writes the weights and the GGUF's vocabulary: transformers loads both and agrees with herd."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from herd.tokenizer import load_tokenizer

    dst = tmp_path / "smollm2"
    assert main(["convert", str(smollm2_gguf), str(dst), "--to", "hf", "--quiet"]) == 0
    text = "The capital of France is Paris. 12345 ünïcödé!"
    ours = load_tokenizer(dst)
    assert ours.encode(text) == load_tokenizer(smollm2_gguf).encode(text)
    theirs = AutoTokenizer.from_pretrained(dst)
    assert theirs(text, add_special_tokens=False)["input_ids"] == ours.encode(text)
    messages = [{"role": "user", "content": "Hi"}]
    assert "<|im_start|>assistant" in theirs.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True
    )
    ids = torch.tensor([ours.encode(text)])
    with torch.no_grad():
        reference = AutoModelForCausalLM.from_pretrained(dst).eval()(ids).logits
        assert (load_model(dst)(ids) - reference).abs().max() <= 1e-4
