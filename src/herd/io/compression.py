"""Open plain, gzip, bz2, xz and zstd files by suffix, with deterministic output and uniform damage reports.

Gzip output carries no timestamp or file name (``mtime=0``), so writing the same
documents twice gives the same bytes; this is what makes a resumed run
byte-identical to an uninterrupted one. Zstandard output carries a content
checksum, so damage inside a frame herd wrote is detected on reading.

Every compressed format reports damage the same way: reading raises
:class:`DamagedFileError` with reason ``truncated_file`` (the stream ends
before its end marker) or ``corrupt_file`` (the bytes are not a valid stream:
not compressed at all, a bad block, a checksum mismatch) and the number of
decompressed bytes delivered before the failure (a file of 0 bytes is
truncated: it does not even hold a stream header). The bytes before that point
are delivered first, so a reader keeps the records that were complete before
the damage and loses the one it was in. Each library signals this differently
(gzip, bz2 and xz raise ``EOFError`` at a truncation, zstandard's stream
reader silently stops there, and the corruption errors are ``OSError``,
``zlib.error``, ``lzma.LZMAError`` or ``zstandard.ZstdError``); the wrapper
here turns all of them into the one error. A zstandard frame written without
a checksum (not herd's) cannot reveal damage inside it.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from herd.errors import InputError

TRUNCATED = "truncated_file"
CORRUPT = "corrupt_file"
# Bytes asked of a decompressor (or, for zstd, read from the file) per step.
CHUNK = 1 << 16


class DamagedFileError(InputError):
    """A file is truncated or corrupt; ``reason`` is ``truncated_file`` or ``corrupt_file``.

    ``offset`` is how many (decompressed) bytes were read before the failure.
    """

    def __init__(self, path: str | Path, reason: str, offset: int, detail: str) -> None:
        super().__init__(f"{path}: {reason.replace('_', ' ')} after {offset} bytes ({detail})")
        self.path, self.reason, self.offset, self.detail = str(path), reason, offset, detail


# Everything a read through this module may raise for a damaged or unreadable file, for callers to catch together.
COMPRESSION_ERRORS: tuple[type[BaseException], ...] = (DamagedFileError, OSError, EOFError, ValueError)
_CORRUPTION: tuple[type[BaseException], ...] = (OSError, zlib.error, lzma.LZMAError, ValueError)


# File name suffix → the compression it names; any other file is plain.
SUFFIXES = {".gz": "gzip", ".tgz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd"}


def _format(path: str) -> str | None:
    """The compression named by ``path``'s suffix, or ``None`` for a plain file."""
    return next((name for suffix, name in SUFFIXES.items() if path.endswith(suffix)), None)


def open_read(path: str | Path) -> BinaryIO:
    """A binary stream of ``path``'s decompressed bytes (suffix .gz/.tgz, .bz2, .xz, .zst or none).

    Reading a damaged compressed file raises :class:`DamagedFileError` (see the module).
    """
    name = str(path)
    kind = _format(name)
    raw = open(name, "rb")  # noqa: SIM115 - returned to the caller, who closes it
    if kind is None:
        return raw
    empty = os.fstat(raw.fileno()).st_size == 0
    if kind == "zstd":
        chunks = _zstd_chunks(raw)
        return _DecompressedStream(lambda: next(chunks, b""), raw.close, name, kind, empty)  # type: ignore[return-value]
    stream: BinaryIO
    if kind == "gzip":
        stream = gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[assignment]
    else:
        stream = (bz2.BZ2File if kind == "bz2" else lzma.LZMAFile)(raw, "rb")  # type: ignore[assignment]

    def close() -> None:
        try:
            stream.close()
        finally:
            raw.close()

    # read1 returns what one decompression step produced: a failure never takes decoded bytes with it.
    return _DecompressedStream(lambda: stream.read1(CHUNK), close, name, kind, empty)  # type: ignore[return-value,attr-defined]


def _zstd_chunks(raw: BinaryIO) -> Iterator[bytes]:
    """Decompressed pieces of a zstd file, frame after frame; a frame cut short raises ``EOFError``.

    ``zstandard``'s stream reader returns end-of-file at a truncation; a
    decompression object knows whether its frame reached its end (``eof``).
    """
    import zstandard

    decompressor = zstandard.ZstdDecompressor()
    frame = None
    pending = b""
    while True:
        if not pending:
            pending = raw.read(CHUNK)
            if not pending:
                if frame is not None:
                    raise EOFError("the last zstd frame ends before its end marker")
                return
        frame = frame or decompressor.decompressobj()
        try:
            out = frame.decompress(pending)
        except zstandard.ZstdError as exc:
            raise ValueError(str(exc)) from None
        pending = b""
        if frame.eof:
            pending, frame = frame.unused_data, None
        if out:
            yield out


class _DecompressedStream(io.BufferedIOBase):
    """A decompressor's output as a read-only stream that delivers every decoded byte before a failure.

    ``chunk()`` returns the next decompressed piece (``b""`` at the end). A
    failure is remembered and raised, as a :class:`DamagedFileError`, once the
    bytes decoded before it have been handed out; only a call that needs
    bytes past the failure raises. ``readline`` raises rather than return the
    incomplete line the failure cut, and ``read()`` (everything) raises rather
    than return an incomplete whole.
    """

    def __init__(
        self, chunk: Callable[[], bytes], close: Callable[[], None], name: str, kind: str, empty: bool
    ) -> None:
        super().__init__()
        self._chunk, self._close, self._name, self._kind = chunk, close, name, kind
        self._buffer = bytearray()
        self._position = 0  # bytes handed out
        self._ended = False
        self._failure: DamagedFileError | None = None
        if empty:  # a file of 0 bytes holds no stream at all: truncated in every format
            self._failure = DamagedFileError(name, TRUNCATED, 0, f"{kind}: the file is empty")

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        """Decompressed bytes handed out so far (FastWARC asks for the position before reading)."""
        return self._position

    def _fill(self) -> bool:
        """Append the next decompressed piece; ``False`` at the end or at a failure (remembered)."""
        if self._ended or self._failure is not None:
            return False
        where = self._position + len(self._buffer)
        try:
            piece = self._chunk()
        except EOFError as exc:
            self._failure = DamagedFileError(self._name, TRUNCATED, where, f"{self._kind}: {exc}")
            return False
        except _CORRUPTION as exc:
            self._failure = DamagedFileError(self._name, CORRUPT, where, f"{self._kind}: {exc}")
            return False
        if not piece:
            self._ended = True
            return False
        self._buffer += piece
        return True

    def _take(self, size: int) -> bytes:
        out = bytes(self._buffer[:size])
        del self._buffer[:size]
        self._position += len(out)
        return out

    def _check(self) -> None:
        if self._failure is not None:
            raise self._failure

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            while self._fill():
                pass
            self._check()
            return self._take(len(self._buffer))
        while len(self._buffer) < size and self._fill():
            pass
        if not self._buffer and size:
            self._check()
        return self._take(size)

    def read1(self, size: int = -1) -> bytes:
        if not self._buffer:
            self._fill()
        if not self._buffer and size:
            self._check()
        return self._take(len(self._buffer) if size < 0 else size)

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readline(self, size: int | None = -1) -> bytes:
        limit = size if size is not None and size >= 0 else None
        scanned = 0
        while True:
            end = self._buffer.find(b"\n", scanned)
            if end >= 0 and (limit is None or end < limit):
                return self._take(end + 1)
            if limit is not None and len(self._buffer) >= limit:
                return self._take(limit)
            scanned = len(self._buffer)
            if not self._fill():
                break
        self._check()
        return self._take(len(self._buffer))

    def close(self) -> None:
        if not self.closed:
            try:
                self._close()
            finally:
                super().close()


def open_write(path: str | Path, suffix_of: str | Path | None = None) -> BinaryIO:
    """A binary stream that compresses into ``path`` by the suffix of ``suffix_of`` (default ``path``)."""
    kind = _format(str(suffix_of or path))
    if kind == "bz2":
        return bz2.BZ2File(path, "wb")  # type: ignore[return-value]
    if kind == "xz":
        return lzma.LZMAFile(path, "wb")  # type: ignore[return-value]
    raw = open(path, "wb")  # noqa: SIM115 - returned to the caller, who closes it
    if kind == "gzip":
        return _ClosingGzip(raw)  # type: ignore[return-value]
    if kind == "zstd":
        import zstandard

        compressor = zstandard.ZstdCompressor(level=3, write_checksum=True)
        return compressor.stream_writer(raw, closefd=True)  # type: ignore[return-value]
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
