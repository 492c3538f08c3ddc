"""Atomic, resumable training checkpoints with torch.distributed.checkpoint (DCP).

A checkpoint ``<out_dir>/checkpoints/step_NNNNNNNN/`` holds everything needed
to continue bit-exactly: the model and AdamW state (DCP shards, written by every
process; DCP reshards on load, so an FSDP run resumes on a different world
size), ``trainer.json`` (step, the objective's data position, fault-detector
state, goodput counters, the data's fingerprint and the config) and
``rng-<rank>.json`` (each process's Python/NumPy/torch RNG state).

Nothing in a checkpoint is unpickled, so a checkpoint from elsewhere cannot run
code: the RNG states are JSON (torch's byte states in base64) and DCP's
metadata and values are read through :mod:`herd.train.dcp_io`. Every file is
checked before use, and a missing, truncated or corrupt one is a
:class:`CheckpointError` naming it.

A checkpoint is written into a staging directory and renamed when complete
(:func:`herd.io.atomic.atomic_dir`; every process writes its shard into the
same one, ``.step_NNNNNNNN.tmp``), so a crash, SIGKILL or full disk mid-save
leaves the previous checkpoint the latest valid one (Llama 3 §3.3.4 relies on
frequent, cheap checkpoints to bound the work an interruption loses); a failed
save removes its staging directory, and one left by a killed process is removed
when the next run starts (:func:`clean_temporaries`).
"""

from __future__ import annotations

import base64
import binascii
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
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from herd.errors import CheckpointError
from herd.io.atomic import Staging, atomic_dir, probe_write, remove_stale_temporaries, shared_staging_path
from herd.train import dcp_io
from herd.train.distributed import Runtime

TRAINER_STATE = "trainer.json"
_STEP_DIR = re.compile(r"^step_(\d{8})$")
# The trainer state's keys and the JSON types each must have (bool is not accepted as a number).
_STATE_TYPES: dict[str, tuple[type, ...]] = {
    "step": (int,),
    "data": (dict,),
    "fault": (dict,),
    "counted_s": (int, float),
    "wall_s": (int, float),
    "skipped": (int,),
    "rollbacks": (int,),
    "world_size": (int,),
    "config": (dict,),
    "data_fingerprint": (str,),
}


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


def clean_temporaries(out_dir: Path | str) -> None:
    """Remove what a killed save left in ``checkpoints/`` (the temporaries of ``step_*`` directories only).

    Called by the main process before a run starts, when no save is in
    progress. A moved-aside ``step_N`` without a ``step_N`` is the complete
    previous copy of a step whose re-save was killed between its two renames:
    it is put back.
    """
    remove_stale_temporaries(
        checkpoints_dir(out_dir), names=lambda name: _STEP_DIR.match(name) is not None, exclusive=True
    )


def rng_file(rank: int) -> str:
    return f"rng-{rank}.json"


def _encode_bytes(state: torch.Tensor) -> str:
    return base64.b64encode(state.numpy().tobytes()).decode("ascii")


def _decode_bytes(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text, validate=True)), dtype=torch.uint8)


def _rng_state() -> dict[str, Any]:
    """This process's RNG states as JSON-able data (exact: ints, repr-exact floats, base64 bytes)."""
    version, internal, gauss = random.getstate()
    key, mt, pos, has_gauss, cached_gaussian = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": version, "state": list(internal), "gauss": gauss},
        "numpy": {
            "key": key,
            "state": mt.tolist(),
            "pos": pos,
            "has_gauss": has_gauss,
            "cached_gaussian": cached_gaussian,
        },
        "torch": _encode_bytes(torch.get_rng_state()),
    }
    if torch.cuda.is_available():
        state["cuda"] = [_encode_bytes(s) for s in torch.cuda.get_rng_state_all()]
    return state


def _restore_rng(path: Path) -> None:
    """Set this process's RNGs from ``path``; the setters validate the values (sizes, ranges, types)."""
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        py, npy = state["python"], state["numpy"]
        random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
        np.random.set_state(
            (
                npy["key"],
                np.asarray(npy["state"], dtype=np.uint32),
                npy["pos"],
                npy["has_gauss"],
                npy["cached_gaussian"],
            )
        )
        torch.set_rng_state(_decode_bytes(state["torch"]))
        if torch.cuda.is_available() and "cuda" in state:
            for device, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
                torch.cuda.set_rng_state(_decode_bytes(cuda_state), device)
    except (
        json.JSONDecodeError,
        RecursionError,
        UnicodeDecodeError,
        KeyError,
        TypeError,
        ValueError,
        OverflowError,
        RuntimeError,
        binascii.Error,
    ) as exc:
        raise CheckpointError(f"{path}: corrupt RNG state ({type(exc).__name__}: {exc})") from None


def _rng_path(path: Path, rank: int) -> Path:
    """This process's RNG file in checkpoint ``path``; refused when only an old pickled one is there."""
    rng_path = path / rng_file(rank)
    legacy = path / f"rng-{rank}.pt"
    if not rng_path.is_file() and legacy.is_file():
        raise CheckpointError(
            f"{legacy}: RNG state pickled by an earlier herd; herd no longer unpickles checkpoint files "
            "(unpickling can run code), so this checkpoint cannot be resumed"
        )
    if not rng_path.is_file():
        raise CheckpointError(f"{path}: incomplete checkpoint (missing {rng_file(rank)})")
    return rng_path


def _write_shards(state: dict[str, Any], path: Path) -> None:
    """DCP save of the model/optimizer tensors (every process writes its own shard)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*assuming the intent is to")
        dcp.save(state, checkpoint_id=path)


def _save_failure_reason(cause: BaseException, final: Path) -> str:
    """Why the save of ``final`` failed, in words.

    torch.save reports a full disk as ``RuntimeError: [enforce fail at
    inline_container.cc] unexpected pos``; when the error is not an OSError
    the file system is asked (:func:`herd.io.atomic.probe_write`).
    """
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    problem = probe_write(final)
    if problem is not None and problem.strerror:
        return problem.strerror
    return dcp_io.brief(cause)


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

    On failure (e.g. ENOSPC, a read-only disk) the temporary is removed, the
    previous checkpoints are untouched, and a CheckpointError says so.
    """
    final = checkpoints_dir(out_dir) / f"step_{step:08d}"
    tmp = shared_staging_path(final)
    state = {"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, optimizer)}
    staging: Staging | None = None  # the main process's: it makes and renames the directory
    try:
        if runtime.is_main:
            staging = atomic_dir(final, shared=True)
            staging.create()
        runtime.barrier()
        _write_shards(state, tmp)
        (tmp / rng_file(runtime.rank)).write_text(json.dumps(_rng_state()) + "\n", encoding="utf-8")
        if runtime.is_main:
            (tmp / TRAINER_STATE).write_text(json.dumps(trainer_state, indent=1) + "\n", encoding="utf-8")
        runtime.barrier()
        if staging is not None:
            staging.commit()
    except (OSError, CheckpointException) as exc:  # DCP wraps its writers' errors in a BaseException
        cause = dcp_io.first_failure(exc) if isinstance(exc, CheckpointException) else exc
        reason = _save_failure_reason(cause, final)  # before the temporary's space is freed
        if staging is not None:
            staging.discard()
        previous = latest_checkpoint(out_dir)
        kept = f"the previous checkpoint {previous} is intact" if previous else "no earlier checkpoint exists"
        raise CheckpointError(f"saving checkpoint {final} failed: {reason}; {kept}") from cause
    runtime.barrier()
    if runtime.is_main:
        for _, old in list_checkpoints(out_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def _is_number(value: Any, types: tuple[type, ...]) -> bool:
    return isinstance(value, types) and not isinstance(value, bool)


def _validate_trainer_state(state: Any, state_path: Path) -> dict[str, Any]:
    """The trainer state, refused by name unless every key the trainer reads has the right type."""

    def bad(key: str, expected: str, value: Any) -> CheckpointError:
        return CheckpointError(
            f"{state_path}: corrupt trainer state ({key}: expected {expected}, got {value!r})"
        )

    if not isinstance(state, dict):
        raise bad("(top level)", "an object", state)
    for key, types in _STATE_TYPES.items():
        value = state.get(key)
        if not _is_number(value, types) or (types == (int,) and value < 0):
            raise bad(
                key, " or ".join(t.__name__ for t in types) + (" >= 0" if types == (int,) else ""), value
            )
    fault = state["fault"]
    if not (fault.get("ema") is None or _is_number(fault.get("ema"), (int, float))):
        raise bad("fault.ema", "a number or null", fault.get("ema"))
    if not _is_number(fault.get("count"), (int,)) or fault["count"] < 0:
        raise bad("fault.count", "an integer >= 0", fault.get("count"))
    return state


def read_trainer_state(path: Path) -> dict[str, Any]:
    """The JSON trainer state of a checkpoint, with a clear error when it is incomplete or corrupt."""
    state_path = Path(path) / TRAINER_STATE
    if not (Path(path) / dcp_io.METADATA_FILE).is_file() or not state_path.is_file():
        raise CheckpointError(f"{path}: incomplete checkpoint (missing .metadata or {TRAINER_STATE})")
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{state_path}: corrupt trainer state ({exc})") from None
    return _validate_trainer_state(state, state_path)


def lookup(config: dict[str, Any], dotted: str) -> Any:
    """The value at the dotted key ``dotted`` of a config dict (None when it is not there)."""
    node: Any = config
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Every leaf of a config dict by its dotted key (under ``prefix``), in sorted order."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key in sorted(value):
            out |= flatten(value[key], f"{prefix}.{key}" if prefix else key)
        return out
    return {prefix: value}


def check_compatible(
    saved: dict[str, Any], current: dict[str, Any], path: Path, must_match: tuple[str, ...]
) -> None:
    """Refuse to resume when a setting that shapes the model or the data order differs; name each.

    ``must_match`` are the dotted keys (sections or values) the run's objective
    cannot change mid-run (:attr:`herd.train.objective.Objective.resume_keys`);
    the rest (LR, logging, checkpoint cadence, ...) may change.
    """
    diffs = []
    for key in must_match:
        old, new = flatten(lookup(saved, key), key), flatten(lookup(current, key), key)
        for name in sorted(set(old) | set(new)):
            if old.get(name) != new.get(name):
                diffs.append(f"{name}: checkpoint {old.get(name)!r}, config {new.get(name)!r}")
    if diffs:
        raise CheckpointError(f"cannot resume from {path}: incompatible config: " + "; ".join(diffs))


def load_checkpoint(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, runtime: Runtime
) -> dict[str, Any]:
    """Restore model, optimizer and this process's RNG from ``path``; returns the trainer state.

    The RNG is restored when the world size is the one the checkpoint was
    written with (each process continues its own streams); on another world
    size the processes keep the seeded streams.
    """
    path = Path(path)
    trainer_state = read_trainer_state(path)
    same_world = trainer_state["world_size"] == runtime.world_size
    rng_path = _rng_path(path, runtime.rank) if same_world else None
    state = {"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, optimizer)}
    dcp_io.load(state, path)
    set_model_state_dict(model, state["model"])
    set_optimizer_state_dict(model, optimizer, state["optim"])
    if rng_path is not None:
        _restore_rng(rng_path)
    return trainer_state
