"""Config: TOML sections, unknown keys, types, command-line overrides, the shipped configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from herd.cli import main
from herd.config import parse_value
from herd.errors import ConfigError
from herd.train.config import VOCAB_FROM_DATA, load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "pretrain"


def test_shipped_configs_load() -> None:
    demo = load_config(CONFIGS / "demo.toml")
    assert demo.vocab_from_data and demo.model["vocab_size"] == VOCAB_FROM_DATA == 0  # the data's
    model = demo.with_vocab_size(2304).model_config()
    assert model.n_kv_heads < model.n_heads and model.vocab_size == 2304  # Llama-3 shape: GQA
    llama2 = load_config(CONFIGS / "llama2-7b.toml")
    assert llama2.with_vocab_size(32000).model_config().name == "llama2-7b"
    o, s = llama2.optim, llama2.schedule
    assert (o.lr, o.beta1, o.beta2, o.eps, o.weight_decay, o.grad_clip) == (3e-4, 0.9, 0.95, 1e-5, 0.1, 1.0)
    assert (s.warmup_steps, s.min_lr_ratio) == (2000, 0.1)
    assert llama2.train.batch_tokens == 4 * 1024 * 1024


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[optim]\nlearning_rate = 1e-3\n", "unknown config key.*optim.learning_rate"),
        ("[nonsense]\nx = 1\n", "unknown config key.*nonsense"),
        ("[model]\npreset = 'llama3-tiny'\nwidth = 3\n", "model: unknown key.*width"),
        ("[optim]\nlr = 'fast'\n", "optim.lr: expected float"),
        ("[train]\nactivation_checkpointing = 'some'\n", "not one of 'none', 'selective', 'full'"),
        ("[train]\nsteps = 0\n", "train.steps must be positive"),
        ("[optim]\nlr = 'abc'\n", "optim.lr: expected float, got 'abc'"),
        ("[optim]\nlr = inf\n", "optim.lr: expected a finite number, got inf"),
        ("[train]\nsteps = -3\n", "train.steps must be positive"),
        ("[train]\nsteps = 2.5\n", "train.steps: expected int, got 2.5"),
        ("[train]\ndevice = 'tpu'\n", "train.device: 'tpu' is not one of 'auto', 'cpu', 'cuda'"),
        ("[log]\nevery = 0\n", "log.every must be positive"),
        ("[model]\npreset = 'llama3-tiny'\ndim = 1.5\n", r"model\.dim: expected int, got 1\.5"),
        (
            "[model]\npreset = 'llama3-tiny'\nn_kv_heads = 'two'\n",
            "model.n_kv_heads: expected int, got 'two'",
        ),
        (
            "[model]\npreset = 'llama3-tiny'\ntie_embeddings = 1\n",
            "model.tie_embeddings: expected bool, got 1",
        ),
        (
            "[model]\npreset = 'llama3-tiny'\nrope_scaling = {factor = 'x'}\n",
            "model.rope_scaling.factor: expected float",
        ),
        ("[model]\npreset = ['llama3-tiny']\n", "model.preset: expected str"),
        ("[model]\ndim = 64\n", r"model: missing key\(s\) n_layers, n_heads \(or set model.preset\)"),
        (
            "[model]\npreset = 'llama3-tiny'\nvocab_size = -5\n",
            "vocab_size must be a positive integer, got -5",
        ),
        ("[data]\nweights = {web = 'many'}\n", "data.weights.web: expected float, got 'many'"),
        ("[train]\nsteps = \n", "invalid TOML"),
        ("[train]\nsteps = " + "[" * 5000 + "\n", r"invalid TOML \(nested too deeply\)"),
    ],
)
def test_bad_configs_are_rejected_by_name(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[model]\npreset = 'llama3-tiny'\n" + text if "[model]" not in text else text)
    with pytest.raises(ConfigError, match=match):
        load_config(path)


def test_overrides_from_the_command_line(tmp_path: Path) -> None:
    config = load_config(
        CONFIGS / "demo.toml",
        ["optim.lr=1e-3", "train.steps=7", "model.dim=64", "data.weights={web = 2, code = 1}", "out_dir=x y"],
    )
    assert config.optim.lr == 1e-3 and config.train.steps == 7 and config.out_dir == "x y"
    assert config.with_vocab_size(512).model_config().dim == 64
    assert config.data.weights == {"web": 2.0, "code": 1.0}
    with pytest.raises(ConfigError, match=r"unknown config key.*optim\.lrr"):
        load_config(CONFIGS / "demo.toml", ["optim.lrr=1"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(CONFIGS / "demo.toml", ["optim.lr"])


def test_parse_value() -> None:
    assert parse_value("3e-4") == 3e-4 and parse_value("true") is True and parse_value("fsdp") == "fsdp"


def test_cli_reports_config_errors_on_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pretrain", str(CONFIGS / "demo.toml"), "--set", "optim.betas=1"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "herd: error: unknown config key(s): optim.betas"
    assert main(["pretrain", str(CONFIGS / "demo.toml"), "--set", "data.path=/nonexistent"]) == 2
    assert "no token dataset here" in capsys.readouterr().err
    assert main(["pretrain", str(CONFIGS / "demo.toml"), "--print-config", "--max-restarts", "3"]) == 0
    assert '"max_restarts": 3' in capsys.readouterr().out


@pytest.mark.parametrize("name", ["parse_value", "apply_overrides"])
def test_the_loader_s_old_names_warn_and_re_export(name: str) -> None:
    """``herd.train.config.parse_value``/``apply_overrides`` moved to herd.config and remain as deprecated aliases."""
    import herd.config
    import herd.train.config

    with pytest.warns(DeprecationWarning, match=f"herd.train.config.{name} moved to herd.config.{name}"):
        moved = getattr(herd.train.config, name)
    assert moved is getattr(herd.config, name)
    with pytest.raises(AttributeError):
        herd.train.config.nonexistent  # noqa: B018
