"""Atomic, resumable training checkpoints with torch.distributed.checkpoint (DCP).

A checkpoint ``<out_dir>/checkpoints/step_NNNNNNNN/`` holds everything needed
to continue bit-exactly: the model and AdamW state (DCP shards, written by every
process; DCP reshards on load, so an FSDP run resumes on a different world
size), ``trainer.json`` (step, data-sampler position, fault-detector state,
goodput counters and the config) and ``rng-<rank>.pt`` (each process's
Python/NumPy/torch RNG state). It is written under a hidden temporary name and
renamed when complete, so a crash, SIGKILL or full disk mid-save leaves the
previous checkpoint the latest valid one (Llama 3 §3.3.4 relies on frequent,
cheap checkpoints to bound the work an interruption loses).
"""

from __future__ import annotations

import json
import random
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from herd.errors import CheckpointError
from herd.train.distributed import Runtime

TRAINER_STATE = "trainer.json"
_STEP_DIR = re.compile(r"^step_(\d{8})$")
# Config sections that must match to resume; the rest (LR, logging, checkpoint cadence, ...) may change.
RESUME_MUST_MATCH = ("model", "data.path", "data.seq_len", "data.weights", "train.seed", "train.batch_tokens")


def checkpoints_dir(out_dir: Path | str) -> Path:
    return Path(out_dir) / "checkpoints"


def list_checkpoints(out_dir: Path | str) -> list[tuple[int, Path]]:
    """Complete checkpoints as (step, path), oldest first (hidden temporaries are ignored)."""
    root = checkpoints_dir(out_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name))]
    return sorted(found)


def latest_checkpoint(out_dir: Path | str) -> Path | None:
    found = list_checkpoints(out_dir)
    return found[-1][1] if found else None


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _write_shards(state: dict[str, Any], path: Path) -> None:
    """DCP save of the model/optimizer tensors (every process writes its own shard)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*assuming the intent is to")
        dcp.save(state, checkpoint_id=path)


def save_checkpoint(
    out_dir: Path | str,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    trainer_state: dict[str, Any],
    runtime: Runtime,
    keep: int,
) -> Path:
    """Write checkpoint ``step`` atomically, then drop all but the newest ``keep``.

    On failure (e.g. ENOSPC) the temporary is removed, the previous checkpoints
    are untouched, and a CheckpointError says so.
    """
    root = checkpoints_dir(out_dir)
    final = root / f"step_{step:08d}"
    tmp = root / f".step_{step:08d}.tmp"
    state = {"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, optimizer)}
    try:
        if runtime.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        runtime.barrier()
        _write_shards(state, tmp)
        torch.save(_rng_state(), tmp / f"rng-{runtime.rank}.pt")
        if runtime.is_main:
            (tmp / TRAINER_STATE).write_text(json.dumps(trainer_state, indent=1) + "\n")
        runtime.barrier()
        if runtime.is_main:
            if final.exists():
                shutil.rmtree(final)
            tmp.rename(final)
    except OSError as exc:
        if runtime.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
        previous = latest_checkpoint(out_dir)
        kept = f"the previous checkpoint {previous} is intact" if previous else "no earlier checkpoint exists"
        raise CheckpointError(f"saving checkpoint {final} failed: {exc.strerror or exc}; {kept}") from exc
    runtime.barrier()
    if runtime.is_main:
        for _, old in list_checkpoints(out_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def read_trainer_state(path: Path) -> dict[str, Any]:
    """The JSON trainer state of a checkpoint, with a clear error when it is incomplete or corrupt."""
    state_path = Path(path) / TRAINER_STATE
    if not (Path(path) / ".metadata").is_file() or not state_path.is_file():
        raise CheckpointError(f"{path}: incomplete checkpoint (missing .metadata or {TRAINER_STATE})")
    try:
        return json.loads(state_path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{state_path}: corrupt trainer state ({exc})") from None


def _lookup(config: dict[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _flatten(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key in sorted(value):
            out |= _flatten(value[key], f"{prefix}.{key}")
        return out
    return {prefix: value}


def check_compatible(saved: dict[str, Any], current: dict[str, Any], path: Path) -> None:
    """Refuse to resume when a setting that shapes the model or the data order differs; name each."""
    diffs = []
    for key in RESUME_MUST_MATCH:
        old, new = _flatten(_lookup(saved, key), key), _flatten(_lookup(current, key), key)
        for name in sorted(set(old) | set(new)):
            if old.get(name) != new.get(name):
                diffs.append(f"{name}: checkpoint {old.get(name)!r}, config {new.get(name)!r}")
    if diffs:
        raise CheckpointError(f"cannot resume from {path}: incompatible config: " + "; ".join(diffs))


def load_checkpoint(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, runtime: Runtime
) -> dict[str, Any]:
    """Restore model, optimizer and this process's RNG from ``path``; returns the trainer state."""
    trainer_state = read_trainer_state(path)
    state = {"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, optimizer)}
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*assuming the intent is to")
            dcp.load(state, checkpoint_id=path)
    except Exception as exc:  # DCP wraps reader errors in its own types
        raise CheckpointError(f"{path}: cannot read checkpoint tensors ({exc})") from None
    set_model_state_dict(model, state["model"])
    set_optimizer_state_dict(model, optimizer, state["optim"])
    rng_path = Path(path) / f"rng-{runtime.rank}.pt"
    if rng_path.is_file() and trainer_state.get("world_size") == runtime.world_size:
        _set_rng_state(torch.load(rng_path, weights_only=False))
    return trainer_state
