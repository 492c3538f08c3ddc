"""configs/pretrain/codellama-long-context.toml: Code Llama's long-context fine-tuning shape (Code Llama
§2.4: RoPE θ 1e6, sequences 4x the base's) on demo.toml's model, and a couple of training steps of it."""

from __future__ import annotations

from pathlib import Path

from herd.train.config import load_config
from herd.train.loop import pretrain

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs/pretrain/codellama-long-context.toml"


def test_long_context_shape_against_the_demo_base() -> None:
    config = load_config(CONFIG)
    base = load_config(ROOT / "configs/pretrain/demo.toml")
    model = config.with_vocab_size(2304).model_config()
    base_model = base.with_vocab_size(2304).model_config()
    assert model.rope_theta == 1e6 and base_model.rope_theta == 5e5
    assert config.data.seq_len == 4 * base.data.seq_len == 512 <= model.max_seq_len
    # Only RoPE's θ and the window change: the weights of the base would fit this model.
    assert model.replace(rope_theta=base_model.rope_theta, max_seq_len=base_model.max_seq_len) == base_model
    assert config.data.path == base.data.path


def test_two_steps_train(dataset_dir: Path, tmp_path: Path) -> None:
    """Two steps on the trainer tests' token shards (vocab 96), with the config's model and sequence length."""
    overrides = [
        f"data.path={dataset_dir}",
        f"out_dir={tmp_path / 'run'}",
        "train.steps=2",
        "train.batch_tokens=1024",
        "checkpoint.export_hf=false",
        "log.progress=false",
        "log.tensorboard=false",
        "log.val_batches=1",
    ]
    result = pretrain(load_config(CONFIG, overrides))
    assert result.steps == 2 and result.tokens == 2 * 1024 and 0 < result.final_loss < 10
