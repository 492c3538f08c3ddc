"""Replace a run's files atomically: a reader sees the old file or the new one, never half of one.

The temporary is ``.<name>.tmp`` beside the destination (one writer per file:
the main process), removed when the write fails; one left by a killed process
is removed when the next run starts (:func:`herd.train.outdir.prepare`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def temporary_name(dst: Path) -> Path:
    """Where the new content of ``dst`` is written before it replaces ``dst``."""
    return dst.with_name(f".{dst.name}.tmp")


@contextmanager
def atomic_file(dst: Path) -> Iterator[Path]:
    """A temporary path to write; it replaces ``dst`` when the block succeeds and is removed otherwise."""
    tmp = temporary_name(Path(dst))
    try:
        yield tmp
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
