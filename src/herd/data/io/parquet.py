"""Parquet documents (columns id, text, source, metadata as a JSON string), via pyarrow."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from herd.data.document import Document
from herd.data.errors import DataInputError
from herd.data.io.atomic_writer import AtomicWriter
from herd.data.io.reader import Reader

ROW_GROUP = 10_000


def _pyarrow() -> Any:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise DataInputError("Parquet needs pyarrow: pip install 'herd[data]'") from None
    return pa, pq


class ParquetReader(Reader):
    """Reads Parquet files with a ``text`` column; ``id``, ``source`` and ``metadata`` are optional."""

    name = "parquet"

    def read(self, path: Path) -> Iterator[Document]:
        pa, pq = _pyarrow()
        try:
            table = pq.ParquetFile(path)
        except (pa.ArrowException, OSError) as exc:
            raise DataInputError(f"{path}: not a Parquet file ({exc})") from None
        if "text" not in table.schema_arrow.names:
            raise DataInputError(f"{path}: no 'text' column")
        row = 0
        for batch in table.iter_batches(batch_size=ROW_GROUP):
            for record in batch.to_pylist():
                self.offset = row
                row += 1
                where = f"{path.name}/{self.offset}"
                metadata = record.get("metadata")
                if isinstance(metadata, str):
                    try:
                        record["metadata"] = json.loads(metadata)
                    except json.JSONDecodeError as exc:
                        self.bad(path, self.offset, "invalid_json", str(exc))
                        continue
                try:
                    doc = Document.from_dict(record, where)
                except DataInputError as exc:
                    self.bad(path, self.offset, "invalid_record", str(exc))
                    continue
                if (kept := self.emit(doc, path)) is not None:
                    yield kept


class ParquetWriter(AtomicWriter):
    """Writes row groups of documents; metadata is stored as a JSON string column."""

    def _open(self) -> None:
        self._pa, pq = _pyarrow()
        schema = self._pa.schema([(name, self._pa.string()) for name in ("id", "text", "source", "metadata")])
        self._writer = pq.ParquetWriter(self.tmp, schema)
        self._rows: list[dict[str, str]] = []

    def write(self, doc: Document) -> None:
        self._rows.append(
            {
                "id": doc.id,
                "text": doc.text,
                "source": doc.source,
                "metadata": json.dumps(doc.metadata, ensure_ascii=False),
            }
        )
        self.count += 1
        if len(self._rows) >= ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        if self._rows:
            self._writer.write_table(self._pa.Table.from_pylist(self._rows, schema=self._writer.schema))
            self._rows = []

    def _finish(self) -> None:
        self._flush()
        self._writer.close()
