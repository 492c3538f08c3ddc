"""A run's ``out_dir``: which files herd owns there, and how a run starts in it.

A run writes ``checkpoints/step_*``, ``metrics.jsonl``, ``summary.json``,
``loss.png``, TensorBoard event files and the exported ``hf/`` weights. How a
run starts (:func:`prepare`):

- ``new``: refused when ``out_dir`` already holds a run (a checkpoint,
  ``metrics.jsonl`` or ``summary.json``): it would truncate the old metrics,
  mix its checkpoints with the old ones, and retention could delete the new
  run's checkpoints because the old run went further;
- ``overwrite``: the old run's files listed above are removed first (only
  those: anything else in ``out_dir`` is left alone; ``hf/`` is replaced
  atomically when the new run exports);
- ``resume``: continue from the newest checkpoint, which must exist;
- ``restart`` (the crash restarts of ``fault.max_restarts``): continue from
  the newest checkpoint if the crashed attempt wrote one, else start at step 0.

In every mode, what a killed process left (the staging directories of
``checkpoints/step_*``, the temporaries of the run files' atomic writes; see
:mod:`herd.io.atomic`) is removed.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Literal

from herd.errors import CheckpointError, ConfigError
from herd.io.atomic import remove_stale_temporaries
from herd.train import checkpointing
from herd.train.distributed import Runtime
from herd.train.metrics import METRICS_FILE

StartMode = Literal["new", "overwrite", "resume", "restart"]

SUMMARY_FILE = "summary.json"
LOSS_PLOT = "loss.png"
TENSORBOARD_DIR = "tensorboard"
# The files a run writes at the top of out_dir; the first two mark that a run was there.
RUN_FILES = (METRICS_FILE, SUMMARY_FILE, LOSS_PLOT)
_TENSORBOARD_EVENTS = re.compile(r"^events\.out\.tfevents\.")


def existing_run(out_dir: Path) -> list[str]:
    """What in ``out_dir`` shows that a run already wrote there (empty when nothing does)."""
    found = [f"checkpoints/{p.name}" for _, p in checkpointing.list_checkpoints(out_dir)]
    return found + [name for name in RUN_FILES[:2] if (out_dir / name).exists()]


def remove_run(out_dir: Path) -> None:
    """Delete a previous run's own files from ``out_dir`` and nothing else."""
    for _, path in checkpointing.list_checkpoints(out_dir):
        shutil.rmtree(path)
    checkpointing.clean_temporaries(out_dir)
    for name in RUN_FILES:
        (out_dir / name).unlink(missing_ok=True)
    tensorboard = out_dir / TENSORBOARD_DIR
    if tensorboard.is_dir():
        for path in tensorboard.iterdir():
            if _TENSORBOARD_EVENTS.match(path.name) and path.is_file():
                path.unlink()
    for directory in (checkpointing.checkpoints_dir(out_dir), tensorboard):
        if directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()


def prepare(out_dir: Path, mode: StartMode, runtime: Runtime) -> Path | None:
    """Make ``out_dir`` ready for a run started in ``mode``; the checkpoint to resume from, if any.

    Every process looks before the main process changes anything, so all of
    them take the same decision.
    """
    found = existing_run(out_dir)
    if mode == "new" and found:
        raise ConfigError(
            f"out_dir {out_dir} already holds a run ({', '.join(found[:3])}"
            f"{', ...' if len(found) > 3 else ''}); pass --resume to continue it or --overwrite to "
            "replace it (or choose another out_dir)"
        )
    runtime.barrier()
    if runtime.is_main:
        if mode == "overwrite":
            remove_run(out_dir)
        checkpointing.clean_temporaries(out_dir)
        remove_stale_temporaries(out_dir, names=lambda name: name in RUN_FILES, exclusive=True)
    runtime.barrier()
    if mode not in ("resume", "restart"):
        return None
    latest = checkpointing.latest_checkpoint(out_dir)
    if latest is None and mode == "resume":
        hint = "pass --overwrite to start afresh" if found else "run without --resume to start a new run"
        raise CheckpointError(
            f"{checkpointing.checkpoints_dir(out_dir)}: no checkpoint to resume from; {hint}"
        )
    return latest
