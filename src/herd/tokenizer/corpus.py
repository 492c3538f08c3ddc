"""Streaming training text for the tokenizer trainer: plain text, JSONL and Parquet.

Text and JSONL may be compressed (``.gz``, ``.bz2``, ``.xz``, ``.zst``), as the data
pipeline writes them (``herd data build``).

Files are read lazily, one document at a time, so corpora larger than memory
can be used. Plain text is split into documents at blank lines; JSONL and
Parquet take one field (``text`` by default) per record. Parquet needs
``pyarrow``, which herd does not require; without it the error says so.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

from herd.io.compression import COMPRESSION_ERRORS, SUFFIXES, open_read
from herd.tokenizer.base import TokenizerError


def _text_documents(path: Path) -> Iterator[str]:
    block: list[str] = []
    with open_read(path) as f:
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise TokenizerError(
                    f"{path}:{number}: invalid UTF-8 at byte {exc.start} of the line"
                ) from None
            if line.strip():
                block.append(line)
            elif block:
                yield "".join(block).rstrip("\n")
                block = []
    if block:
        yield "".join(block).rstrip("\n")


def _jsonl_documents(path: Path, field: str) -> Iterator[str]:
    with open_read(path) as f:
        for number, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except ValueError as exc:
                raise TokenizerError(f"{path}:{number}: not a JSON line ({exc})") from None
            text = record.get(field) if isinstance(record, dict) else None
            if not isinstance(text, str):
                raise TokenizerError(f"{path}:{number}: no string field {field!r}")
            yield text


def _parquet_documents(path: Path, field: str) -> Iterator[str]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise TokenizerError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow)") from None
    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises its own ArrowInvalid / OSError family
        raise TokenizerError(f"{path}: not a readable Parquet file ({exc})") from None
    if field not in parquet.schema_arrow.names:
        raise TokenizerError(
            f"{path}: no column {field!r} (columns: {', '.join(parquet.schema_arrow.names)})"
        )
    for batch in parquet.iter_batches(columns=[field], batch_size=1024):
        for text in batch.column(0).to_pylist():
            if isinstance(text, str):
                yield text


def _kind(path: Path) -> tuple[str, bool]:
    """The suffix naming ``path``'s format (``.jsonl``; ``""`` for none) and whether it is compressed."""
    suffixes = [x.lower() for x in path.suffixes]
    compressed = bool(suffixes) and suffixes[-1] in SUFFIXES
    if compressed:
        suffixes.pop()
    return (suffixes[-1] if suffixes else ""), compressed


def iter_documents(paths: Sequence[str | Path], field: str = "text") -> Iterator[str]:
    """Every document of every file, in order; ``.jsonl``/``.json``, ``.parquet``, else plain text."""
    for name in paths:
        path = Path(name)
        if not path.is_file():
            raise TokenizerError(f"{path}: training file not found")
        suffix, _ = _kind(path)
        try:
            if suffix in (".jsonl", ".json"):
                yield from _jsonl_documents(path, field)
            elif suffix == ".parquet":
                yield from _parquet_documents(path, field)
            else:
                yield from _text_documents(path)
        except COMPRESSION_ERRORS as exc:
            raise TokenizerError(f"{path}: cannot decompress ({exc})") from None


def total_bytes(paths: Sequence[str | Path]) -> int | None:
    """The progress bar's total, in the unit its progress counts: UTF-8 bytes of the documents read.

    For plain text and JSONL that is at most the files' size on disk, the total
    given (blank lines and JSON syntax are not document text). A compressed or
    Parquet file holds more text than its size, and how much is unknown until it
    is read: then None, no total (the bar shows the bytes read so far).
    """
    size = 0
    for name in paths:
        path = Path(name)
        if not path.is_file():
            continue
        suffix, compressed = _kind(path)
        if compressed or suffix == ".parquet":
            return None
        size += path.stat().st_size
    return size
