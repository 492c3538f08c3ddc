"""Fixtures for the trainer tests: a small synthetic token dataset and a tiny run config."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from herd.io.token_shards import write_dataset
from herd.train.config import PretrainConfig, config_from_dict
from herd.train.loop import pretrain
from herd.train.metrics import METRICS_FILE, read_metrics

VOCAB = 96


def _documents(rng: np.random.Generator, n: int, pattern: int) -> list[list[int]]:
    """Learnable documents: BOS, then a noisy arithmetic progression, then EOS."""
    docs = []
    for _ in range(n):
        length = int(rng.integers(8, 60))
        start, stride = int(rng.integers(2, VOCAB)), pattern + int(rng.integers(1, 3))
        body = [2 + (start + stride * i) % (VOCAB - 2) for i in range(length)]
        docs.append([0, *body, 1])
    return docs


@pytest.fixture(scope="session")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two sources (weights 3:1) with a held-out split and byte counts for bits per byte."""
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("data")
    splits = {
        "train": {"web": _documents(rng, 300, 1), "code": _documents(rng, 120, 5)},
        "val": {"web": _documents(rng, 20, 1), "code": _documents(rng, 10, 5)},
    }
    nbytes = {s: {k: 3 * sum(map(len, v)) for k, v in src.items()} for s, src in splits.items()}
    return write_dataset(root, splits, vocab_size=VOCAB, weights={"web": 3.0, "code": 1.0}, num_bytes=nbytes)


def tiny_config_dict(data: Path, out: Path, **sections: dict) -> dict:
    """A raw config for a ~40k-parameter model that takes a few ms per step."""
    base = {
        "out_dir": str(out),
        "model": {
            "preset": "llama3-tiny",
            "dim": 32,
            "n_layers": 2,
            "n_heads": 4,
            "n_kv_heads": 2,
            "vocab_size": VOCAB,
            "max_seq_len": 64,
            "multiple_of": 16,
        },
        "data": {"path": str(data), "seq_len": 32},
        "optim": {"lr": 1e-2},
        "schedule": {"warmup_steps": 3},
        "train": {"steps": 12, "batch_tokens": 256, "micro_batch_size": 4},
        "checkpoint": {"every": 4, "keep": 2, "export_hf": False},
        "log": {"progress": False, "tensorboard": False, "val_batches": 2},
    }
    for section, values in sections.items():
        if isinstance(values, dict):
            base.setdefault(section, {}).update(values)
        else:
            base[section] = values
    return base


@pytest.fixture
def tiny_config(dataset_dir: Path, tmp_path: Path) -> PretrainConfig:
    return config_from_dict(tiny_config_dict(dataset_dir, tmp_path / "run"))


@pytest.fixture(scope="session")
def finished_run(dataset_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The out_dir of a finished 4-step run (one checkpoint, step 4); copy it before changing it."""
    out = tmp_path_factory.mktemp("finished") / "run"
    pretrain(config_from_dict(tiny_config_dict(dataset_dir, out, train={"steps": 4})))
    return out


@pytest.fixture
def run_copy(finished_run: Path, tmp_path: Path) -> Path:
    """A private copy of ``finished_run`` at ``tmp_path / "run"`` (what tiny_config_dict(..., tmp_path / "run") uses)."""
    return Path(shutil.copytree(finished_run, tmp_path / "run"))


PYTHON = sys.executable


def write_toml(path: Path, config: dict) -> Path:
    """Serialise a raw config dict (scalars and one level of tables) as TOML."""
    lines = [f"{k} = {json.dumps(v)}" for k, v in config.items() if not isinstance(v, dict)]
    for section, values in config.items():
        if isinstance(values, dict):
            lines.append(f"\n[{section}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def run_cli(*args: str, env: dict | None = None, **kwargs) -> subprocess.Popen:
    """Start ``herd`` in a subprocess with one CPU thread (so runs are bit-reproducible)."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.Popen(
        [PYTHON, "-m", "herd.cli", *args],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def losses(out_dir: Path) -> dict[int, float]:
    """step → training loss from a run's metrics.jsonl."""
    return {r["step"]: r["loss"] for r in read_metrics(out_dir / METRICS_FILE) if "loss" in r}


def run_herd(*args: str, nproc: int = 1, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``herd`` to completion: directly, or under torchrun with ``nproc`` CPU processes (gloo)."""
    launcher = (
        ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"] if nproc > 1 else []
    )
    proc = subprocess.run(
        [PYTHON, *launcher, "-m", "herd.cli", *args],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc
