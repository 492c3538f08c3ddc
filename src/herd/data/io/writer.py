"""Atomic document writers: output appears under its final name only when complete.

Each writer writes to a hidden temporary file beside the destination and
renames it on :meth:`AtomicWriter.close`, so a killed run never leaves a
half-written shard that a resumed run would mistake for a finished one. A
write that fails removes its temporary file; one a killed process left behind
(``.NAME.tmp``) is removed by :func:`remove_stale_temporaries`, which
``herd data build`` runs over its output directory before it starts.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from herd.data.document import Document


def temporary_name(path: Path) -> Path:
    """The hidden name ``path`` is written under until complete (fixed, so a rerun after a kill reuses it)."""
    return path.with_name(f".{path.name}.tmp")


def is_temporary(path: Path) -> bool:
    """Whether ``path`` has the form of a :func:`temporary_name`."""
    return path.name.startswith(".") and path.name.endswith(".tmp") and len(path.name) > len("..tmp")


def remove_stale_temporaries(root: Path) -> list[Path]:
    """Delete the temporary files writers left under ``root`` when their process was killed; those removed.

    Only call this on a directory herd writes and while no other process writes there.
    """
    stale = sorted(p for p in root.rglob(".*.tmp") if is_temporary(p) and p.is_file() and not p.is_symlink())
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def save_atomically(path: str | Path, save: Callable[[Path], None]) -> None:
    """Create ``path`` by ``save(temporary path)``, then rename: it exists only when whole.

    For writers that take a file name (fastText's ``save_model``). On any
    failure (the interrupt included) the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        save(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomically(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Create ``path`` with ``write(file)`` under its temporary name, then rename (see :func:`save_atomically`)."""

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            write(f)

    save_atomically(path, save)


class AtomicWriter:
    """Base of the JSONL and Parquet writers: temporary name, rename on close, discard on error."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = temporary_name(self.path)
        self.count = 0

    def write(self, doc: Document) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        """Flush and close the temporary file."""
        raise NotImplementedError

    def close(self) -> None:
        """Finish the temporary file and move it to its final name (on failure, remove it)."""
        try:
            self._finish()
            os.replace(self.tmp, self.path)
        except BaseException:
            self.tmp.unlink(missing_ok=True)
            raise

    def discard(self) -> None:
        """Abandon the output (the step failed): nothing appears at the destination."""
        try:
            self._finish()
        finally:
            self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> AtomicWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()


def open_writer(path: str | Path) -> AtomicWriter:
    """A JSONL (``.jsonl``, ``.jsonl.gz``, ``.jsonl.zst``) or Parquet (``.parquet``) writer by suffix."""
    if str(path).endswith(".parquet"):
        from herd.data.io.parquet import ParquetWriter

        return ParquetWriter(path)
    from herd.data.io.jsonl import JsonlWriter

    return JsonlWriter(path)
