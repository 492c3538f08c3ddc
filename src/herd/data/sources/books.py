"""Books: Project Gutenberg plain text with its licence header and footer removed (Llama 1 §2.1).

The body is what lies between the ``*** START OF THE PROJECT GUTENBERG EBOOK
...`` and ``*** END OF THE PROJECT GUTENBERG EBOOK ...`` lines (older files say
"THIS" and may lack the asterisks); without markers the whole file is the book.
Book-level near-duplicate removal is :class:`herd.data.dedup.minhash.BookDedup`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from herd.data.document import Document
from herd.data.io.reader import Reader
from herd.io.compression import open_read

_START = re.compile(r"^\s*\*{0,3}\s*START OF (?:THE|THIS) PROJECT GUTENBERG E-?BOOK.*$", re.I | re.M)
_END = re.compile(r"^\s*\*{0,3}\s*END OF (?:THE|THIS) PROJECT GUTENBERG E-?BOOK.*$", re.I | re.M)
_TITLE = re.compile(r"^Title:\s*(.+)$", re.M)


def strip_gutenberg(text: str) -> str:
    """The book between Project Gutenberg's start and end markers."""
    if start := _START.search(text):
        text = text[start.end() :]
    if end := _END.search(text):
        text = text[: end.start()]
    return text.strip()


class GutenbergReader(Reader):
    """One document per text file; ``metadata["title"]`` from the header when present."""

    name = "gutenberg"

    def __init__(self, **kwargs: int) -> None:
        super().__init__(source="books", **kwargs)

    def read(self, path: Path) -> Iterator[Document]:
        with open_read(path) as f:
            raw = f.read()
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            self.bad(path, exc.start, "invalid_utf8", str(exc))
            return
        title = _TITLE.search(text[:5000])
        doc = Document(
            text=strip_gutenberg(text).replace("\r\n", "\n"),
            id=path.name,
            metadata={"title": title.group(1).strip() if title else path.stem},
        )
        if (kept := self.emit(doc, path)) is not None:
            yield kept
