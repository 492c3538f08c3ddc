"""CommonCrawl WARC (HTML responses → text) and WET (already extracted text) readers (Llama 1 §2.1).

Records are read with FastWARC from herd's decompressed stream
(:func:`herd.io.compression.open_read`), so a truncated or corrupt
compressed file is reported as for every other reader. Each document carries ``url``, ``date``
(WARC-Date) and ``warc_record_id`` metadata. A record whose payload is shorter
than its Content-Length (a truncated file) is dropped as ``truncated_record``;
pages that are not HTML, cannot be decoded or extract to nothing are dropped
under their reason, and reading continues.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from herd.data.document import Document
from herd.data.io.reader import Reader
from herd.data.sources.html import html_to_text
from herd.io.compression import open_read


def _decode(payload: bytes, declared: str | None) -> str | None:
    """``payload`` as text: the declared charset, else detected; ``None`` if it does not decode."""
    from resiliparse.parse.encoding import bytes_to_str, detect_encoding

    for encoding in filter(None, (declared, detect_encoding(payload))):
        try:
            return payload.decode(encoding)
        except (UnicodeDecodeError, LookupError):
            continue
    text = bytes_to_str(payload, "utf-8")
    return text if text else None


class WarcReader(Reader):
    """Reads ``response`` records of (gzipped) WARC files and extracts the HTML's text."""

    name = "warc"
    record_type = "response"

    def read(self, path: Path) -> Iterator[Document]:
        from fastwarc.warc import ArchiveIterator, WarcRecordType

        kind = getattr(WarcRecordType, self.record_type)
        # Decompressed by herd rather than FastWARC, which ends a truncated or corrupt stream silently.
        with open_read(path) as source:
            for record in ArchiveIterator(source, record_types=kind, parse_http=False, fsspec_args=False):
                self.offset = record.stream_pos
                block = record.reader.read()
                if len(block) < record.content_length:
                    self.bad(
                        path,
                        self.offset,
                        "truncated_record",
                        f"{len(block)} of {record.content_length} bytes",
                    )
                    continue
                if (doc := self.to_document(record, block, path)) is not None and (
                    kept := self.emit(doc, path)
                ) is not None:
                    yield kept

    def to_document(self, record, block: bytes, path: Path) -> Document | None:  # type: ignore[no-untyped-def]
        """The document of one response record (HTTP head and HTML body), or ``None`` after counting why not."""
        head, _, payload = block.partition(b"\r\n\r\n")
        content_type = ""
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-type":
                content_type = value.strip().decode("latin-1").lower()
        if content_type and "html" not in content_type:
            self.bad(path, self.offset, "not_html", content_type)
            return None
        charset = (
            content_type.split("charset=", 1)[1].split(";")[0].strip() if "charset=" in content_type else None
        )
        html = _decode(payload, charset)
        if html is None:
            self.bad(path, self.offset, "undecodable", record.record_id)
            return None
        return Document(text=html_to_text(html), id=record.record_id, metadata=self._metadata(record))

    @staticmethod
    def _metadata(record) -> dict[str, str]:  # type: ignore[no-untyped-def]
        return {"url": record.headers.get("WARC-Target-URI", ""), "date": record.headers.get("WARC-Date", "")}


class WetReader(WarcReader):
    """Reads ``conversion`` records of WET files: CommonCrawl's own text extraction."""

    name = "wet"
    record_type = "conversion"

    def to_document(self, record, block: bytes, path: Path) -> Document | None:  # type: ignore[no-untyped-def]
        try:
            text = block.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.bad(path, self.offset, "invalid_utf8", str(exc))
            return None
        return Document(text=text.strip(), id=record.record_id, metadata=self._metadata(record))
