"""The base of every reader: bad records are counted, logged with file and offset, and skipped.

A reader never lets one bad record end a run (docs/data.md): a truncated or
corrupt compressed file (``truncated_file``, ``corrupt_file``; the same for
gzip, bz2, xz and zstd, see :mod:`herd.io.compression`), a truncated
record, invalid UTF-8, an oversized record or an empty document is counted
under a drop reason in the reader's stats, logged as ``file@offset: reason``,
and reading goes on with the next record or file. For a damaged file the
offset is the number of decompressed bytes read before the damage; the
documents completed before it are kept.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from herd.data.document import Document
from herd.data.errors import DataInputError
from herd.data.stats import StepStats
from herd.io.compression import COMPRESSION_ERRORS, CORRUPT, DamagedFileError

log = logging.getLogger("herd.data")

# Records above this size are dropped unread (a 100 MB single line is not a document).
MAX_RECORD_BYTES = 16 * 1024 * 1024


class Reader:
    """Turns files into documents; subclasses implement :meth:`read` and call :meth:`bad` / :meth:`emit`."""

    name: str = "reader"
    # The reader's recipe name and arguments, set by herd.data.recipe.registry (see Step.identity).
    identity: dict[str, Any] | None = None

    def __init__(self, source: str = "", max_record_bytes: int = MAX_RECORD_BYTES) -> None:
        self.source = source
        self.max_record_bytes = max_record_bytes
        self.stats = StepStats(f"read:{self.name}")
        self.offset = 0

    def read(self, path: Path) -> Iterator[Document]:
        """The documents of one file (calls :meth:`emit` for each, :meth:`bad` for bad records)."""
        raise NotImplementedError

    def read_files(self, paths: Iterable[str | Path]) -> Iterator[Document]:
        """Documents of every file in order; a file that cannot be read on is logged and left."""
        for path in paths:
            self.offset = 0
            try:
                yield from self.read(Path(path))
            except DamagedFileError as exc:
                self.bad(path, exc.offset, exc.reason, exc.detail)
            except (*COMPRESSION_ERRORS, DataInputError) as exc:
                self.bad(path, self.offset, CORRUPT, str(exc))

    def emit(self, doc: Document, path: str | Path) -> Document | None:
        """Count ``doc``; ``None`` (and a drop) when its text is empty."""
        if not doc.text.strip():
            self.bad(path, self.offset, "empty", doc.id)
            return None
        if not doc.source:
            doc.source = self.source
        self.stats.docs_in += 1
        self.stats.kept += 1
        size = len(doc.text.encode("utf-8", "surrogatepass"))
        self.stats.bytes_in += size
        self.stats.bytes_out += size
        return doc

    def bad(self, path: str | Path, offset: int, reason: str, detail: str = "") -> None:
        """Count and log one bad record; reading continues."""
        self.stats.docs_in += 1
        self.stats.dropped[reason] += 1
        log.warning("%s@%d: %s%s", path, offset, reason, f" ({detail})" if detail else "")
