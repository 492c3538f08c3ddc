"""The base of the document writers (JSONL, Parquet): output appears under its final name only when complete.

Each writer writes into a staging file beside its destination
(:func:`herd.io.atomic.atomic_file`) and renames it on :meth:`AtomicWriter.close`,
so a killed run never leaves a half-written shard that a resumed run would
mistake for a finished one. A write that fails, or a step that fails
(:meth:`AtomicWriter.discard`), removes the staging file; one a killed process
left behind is removed by the next ``herd data build``
(:func:`herd.io.atomic.remove_stale_temporaries`).
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

from herd.data.document import Document
from herd.io.atomic import atomic_file


class AtomicWriter:
    """Writes documents to ``path``: subclasses open :attr:`tmp` in :meth:`_open` and close it in :meth:`_finish`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.count = 0
        self._staging = atomic_file(self.path)
        try:
            self.tmp = self._staging.create()
            self._open()
        except BaseException as exc:
            self._staging.abort(exc)

    def _open(self) -> None:
        """Open the staging file :attr:`tmp` for writing."""
        raise NotImplementedError

    def write(self, doc: Document) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        """Flush and close the staging file."""
        raise NotImplementedError

    def close(self) -> None:
        """Finish the staging file and move it to its final name (on failure, remove it)."""
        try:
            self._finish()
        except BaseException as exc:
            self._staging.abort(exc)
        self._staging.commit()

    def discard(self) -> None:
        """Abandon the output (the step failed): nothing appears at the destination."""
        try:
            self._finish()
        finally:
            self._staging.discard()

    def __enter__(self) -> AtomicWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()
