"""Open a document writer by the destination's suffix: JSONL (plain or compressed) or Parquet."""

from __future__ import annotations

from pathlib import Path

from herd.data.io.atomic_writer import AtomicWriter
from herd.data.io.jsonl import JsonlWriter
from herd.data.io.parquet import ParquetWriter


def open_writer(path: str | Path) -> AtomicWriter:
    """A JSONL (``.jsonl``, ``.jsonl.gz``, ``.jsonl.zst``) or Parquet (``.parquet``) writer by suffix."""
    if str(path).endswith(".parquet"):
        return ParquetWriter(path)
    return JsonlWriter(path)
