"""Open plain, gzip, bz2 and zstd files by suffix, with deterministic output.

Gzip output carries no timestamp or file name (``mtime=0``), so writing the same
documents twice gives the same bytes; this is what makes a resumed run
byte-identical to an uninterrupted one.
"""

from __future__ import annotations

import bz2
import gzip
import io
from pathlib import Path
from typing import BinaryIO

COMPRESSION_ERRORS: tuple[type[BaseException], ...] = (OSError, EOFError, ValueError)


def open_read(path: str | Path) -> BinaryIO:
    """A binary stream of ``path``'s decompressed bytes (suffix .gz, .bz2, .zst or none)."""
    path = str(path)
    raw = open(path, "rb")  # noqa: SIM115 - returned to the caller, who closes it
    if path.endswith(".gz"):
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    if path.endswith(".bz2"):
        return bz2.BZ2File(raw, "rb")  # type: ignore[return-value]
    if path.endswith(".zst"):
        import zstandard

        reader = zstandard.ZstdDecompressor().stream_reader(raw, closefd=True)
        return io.BufferedReader(reader)  # type: ignore[arg-type,return-value]
    return raw


def open_write(path: str | Path, suffix_of: str | Path | None = None) -> BinaryIO:
    """A binary stream that compresses into ``path`` by the suffix of ``suffix_of`` (default ``path``)."""
    name = str(suffix_of or path)
    raw = open(path, "wb")  # noqa: SIM115 - returned to the caller, who closes it
    if name.endswith(".gz"):
        return _ClosingGzip(raw)  # type: ignore[return-value]
    if name.endswith(".zst"):
        import zstandard

        return zstandard.ZstdCompressor(level=3).stream_writer(raw, closefd=True)  # type: ignore[return-value]
    if name.endswith(".bz2"):
        return bz2.BZ2File(raw, "wb")  # type: ignore[return-value]
    return raw


class _ClosingGzip(gzip.GzipFile):
    """A timestamp-free gzip writer that also closes the file it wraps."""

    def __init__(self, raw: BinaryIO) -> None:
        super().__init__(filename="", mode="wb", fileobj=raw, mtime=0)
        self._raw = raw

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._raw.close()
