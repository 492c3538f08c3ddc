"""What the SFT, reward-model and DPO run tests share: a tiny start checkpoint, row files, configs, metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from herd.checkpoint.base import SIDE_FILES_EXTRA, CheckpointInfo
from herd.checkpoint.hf import write_hf
from herd.checkpoint.load import model_tensors, open_checkpoint
from herd.model.build import build_model
from herd.model.presets import get_preset
from herd.posttrain.reward_model import RewardModel
from herd.tokenizer import Tokenizer
from herd.tokenizer.save import save_tokenizer
from herd.train.distributed import Runtime
from herd.train.loop import Trainer
from herd.train.metrics import METRICS_FILE, read_metrics
from herd.train.objective import Placement


def write_rows(path: Path, rows: list[Any]) -> Path:
    """A JSONL file of ``rows``: objects as JSON, strings (bad rows) as they are."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def write_tiny_init(root: Path, tokenizer: Tokenizer) -> Path:
    """``root/init``: a 2-layer Llama 2 model of width 32 over ``tokenizer``'s vocabulary, with its tokenizer files."""
    config = get_preset("llama2-tiny").replace(
        dim=32,
        n_layers=2,
        n_heads=4,
        n_kv_heads=2,
        multiple_of=16,
        vocab_size=tokenizer.vocab_size,
        max_seq_len=128,
    )
    files = save_tokenizer(tokenizer, root / "tokenizer")
    info = CheckpointInfo(config, extras={SIDE_FILES_EXTRA: files})
    return write_hf(root / "init", info, model_tensors(build_model(config, seed=0)))


#: Four short prompts of the PPO and RLHF runs on the tiny models.
PROMPTS = ["name the parser", "what is an argument?", "help with the option", "the default value?"]


def write_tiny_policy_and_rm(root: Path, tokenizer: Tokenizer) -> Path:
    """``root/init`` (:func:`write_tiny_init`) and ``root/rm``, a random reward model of its shape (seed 1, the
    tokenizer's end-of-sequence id as pad) with the tokenizer's files: what a PPO or RLHF run starts from.
    Returns ``root/init``."""
    init = write_tiny_init(root, tokenizer)
    with open_checkpoint(init) as reader:
        config = reader.config
    RewardModel.random(config, seed=1, pad_id=tokenizer.eos_id).save_pretrained(
        root / "rm", tokenizer=tokenizer
    )
    return init


def run_config(root: Path, out: Path, seq_len: int, rows_per_step: int, micro_batch: int) -> dict[str, Any]:
    """A raw run config over the workspace ``root`` (``init/``, ``train.jsonl``, ``val.jsonl``): 12 steps."""
    return {
        "out_dir": str(out),
        "init": str(root / "init"),
        "data": {"train": str(root / "train.jsonl"), "val": str(root / "val.jsonl"), "seq_len": seq_len},
        "optim": {"lr": 3e-3},
        "train": {"steps": 12, "batch_tokens": rows_per_step * seq_len, "micro_batch_size": micro_batch},
        "checkpoint": {"every": 4},
        "log": {"progress": False, "tensorboard": False},
    }


def with_sections(base: dict[str, Any], sections: dict[str, Any]) -> dict[str, Any]:
    """``base`` with each section's keys updated (a dict) or the key replaced (anything else)."""
    for section, values in sections.items():
        if isinstance(values, dict):
            base.setdefault(section, {}).update(values)
        else:
            base[section] = values
    return base


def losses(out: Path) -> dict[int, float]:
    """The training loss of each step of the run in ``out``."""
    return {r["step"]: r["loss"] for r in read_metrics(out / METRICS_FILE) if "loss" in r}


def cpu_placement() -> Placement:
    """One process on the CPU."""
    return Placement(Runtime(0, 1, torch.device("cpu")), 0, 1)


def posttrain_command(argv: list[str]) -> tuple[int, str]:
    """``herd ARGV`` through the post-training commands' own parsers: the exit code and one-line message on failure."""
    from herd.cli import Parser, describe
    from herd.cli import posttrain as commands

    parser = Parser(prog="herd")
    commands.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    try:
        return args.func(args), ""
    except Exception as exc:
        return describe(exc)


def crash_once_at(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    """Fail the optimizer step after ``step`` steps, once (a kill -9 after the last checkpoint)."""
    original = Trainer.train_step
    crashed: list[int] = []

    def flaky(self: Trainer) -> tuple[float, float, float]:
        if self.step == step and not crashed:
            crashed.append(step)
            raise RuntimeError("simulated node failure")
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", flaky)
