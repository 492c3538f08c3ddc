"""JSON Lines documents, plain or compressed (.gz, .zst, .bz2), one record per line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from herd.data.document import Document
from herd.data.errors import DataInputError
from herd.data.io.atomic_writer import AtomicWriter
from herd.data.io.reader import Reader
from herd.io.compression import open_read, open_write

CHUNK = 1 << 20


class JsonlReader(Reader):
    """Reads ``{"text": ..., "id": ..., "source": ..., "metadata": {...}}`` lines.

    ``text_key`` names the text field when it is not ``text``. Other top-level keys are folded into ``metadata``; a record without ``id``
    gets ``<file name>/<line number>``. Bad lines (invalid UTF-8 or JSON, no
    ``text``, oversized) are dropped under their reason and reading goes on.
    """

    name = "jsonl"

    def __init__(self, source: str = "", text_key: str = "text", **kwargs: int) -> None:
        super().__init__(source, **kwargs)
        self.text_key = text_key

    def read(self, path: Path) -> Iterator[Document]:
        with open_read(path) as f:
            for number, line in enumerate(self._lines(f, path)):
                if line is None:
                    continue
                where = f"{path.name}/{number}"
                try:
                    record = json.loads(line.decode("utf-8"))
                    if self.text_key != "text" and isinstance(record, dict):
                        record["text"] = record.pop(self.text_key, None)
                    doc = Document.from_dict(record, where)
                except UnicodeDecodeError as exc:
                    self.bad(path, self.offset, "invalid_utf8", str(exc))
                    continue
                except json.JSONDecodeError as exc:
                    self.bad(path, self.offset, "invalid_json", str(exc))
                    continue
                except DataInputError as exc:
                    self.bad(path, self.offset, "invalid_record", str(exc))
                    continue
                if (kept := self.emit(doc, path)) is not None:
                    yield kept

    def _lines(self, f, path: Path) -> Iterator[bytes | None]:  # type: ignore[no-untyped-def]
        """Lines of ``f`` (``None`` for a skipped oversized line), tracking the byte offset."""
        position = 0
        while True:
            self.offset = position
            line = f.readline(self.max_record_bytes + 1)
            if not line:
                return
            position += len(line)
            if len(line) > self.max_record_bytes and not line.endswith(b"\n"):
                while (rest := f.readline(CHUNK)) and not rest.endswith(b"\n"):
                    position += len(rest)
                position += len(rest)
                self.bad(path, self.offset, "record_too_long", f"over {self.max_record_bytes} bytes")
                yield None
                continue
            if line.strip():
                yield line


class JsonlWriter(AtomicWriter):
    """Writes one JSON record per line; compression by the destination suffix (gzip without timestamp)."""

    def _open(self) -> None:
        self._f = open_write(self.tmp, suffix_of=self.path)

    def write(self, doc: Document) -> None:
        line = json.dumps(doc.to_dict(), ensure_ascii=False) + "\n"
        self._f.write(line.encode("utf-8", "surrogatepass"))
        self.count += 1

    def _finish(self) -> None:
        self._f.close()
