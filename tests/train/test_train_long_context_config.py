"""configs/pretrain/codellama-long-context.toml: Code Llama's long-context fine-tuning (Code Llama §2.4: RoPE θ
1e6, sequences 4x the base's) continuing demo.toml's export, and a couple of training steps of it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import tiny_config_dict
from herd.checkpoint.load import open_checkpoint
from herd.train.config import INIT_MODEL_KEYS, config_from_dict, load_config
from herd.train.loop import pretrain

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs/pretrain/codellama-long-context.toml"
DEMO = ROOT / "configs/pretrain/demo.toml"


def test_long_context_continues_the_demo_base() -> None:
    config = load_config(CONFIG)
    base = load_config(DEMO)
    assert Path(config.init) == Path(base.out_dir) / "hf"
    # Only keys that change no weight's shape are given; the rest is the checkpoint's.
    assert set(config.model) - {"vocab_size"} <= set(INIT_MODEL_KEYS)
    base_model = base.with_vocab_size(2304).model_config()
    model = config.with_init_model(base_model, config.init).model_config()
    assert model.rope_theta == 1e6 and base_model.rope_theta == 5e5
    assert model == base_model.replace(rope_theta=1e6, max_seq_len=2 * base_model.max_seq_len)
    assert config.data.seq_len == 4 * base.data.seq_len == 512 <= model.max_seq_len
    assert config.data.path == base.data.path


@pytest.fixture(scope="module")
def demo_shaped_base(dataset_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One step of demo.toml's model shape on the trainer tests' token shards (vocab 96), exported."""
    out = tmp_path_factory.mktemp("base") / "run"
    raw = tiny_config_dict(dataset_dir, out, train={"steps": 1}, checkpoint={"export_hf": True})
    raw["model"] = {"preset": "llama3-tiny", "max_seq_len": 256}
    pretrain(config_from_dict(raw))
    return out / "hf"


def test_two_steps_train(demo_shaped_base: Path, dataset_dir: Path, tmp_path: Path) -> None:
    """Two steps of the config from a demo-shaped base, with its θ and sequence length."""
    overrides = [
        f"init={demo_shaped_base}",
        f"data.path={dataset_dir}",
        f"out_dir={tmp_path / 'run'}",
        "train.steps=2",
        "train.batch_tokens=1024",
        "log.progress=false",
        "log.tensorboard=false",
        "log.val_batches=1",
    ]
    result = pretrain(load_config(CONFIG, overrides))
    assert result.steps == 2 and result.tokens == 2 * 1024 and 0 < result.final_loss < 10
    assert result.init == str(demo_shaped_base)
    with open_checkpoint(tmp_path / "run" / "hf") as reader, open_checkpoint(demo_shaped_base) as base:
        assert reader.config == base.config.replace(rope_theta=1e6, max_seq_len=512)
    assert json.loads((tmp_path / "run" / "hf" / "config.json").read_text())["rope_theta"] == 1e6
