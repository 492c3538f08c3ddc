"""Exact document dedup by content hash (Llama 1 §2.1: GitHub files deduplicated exactly)."""

from __future__ import annotations

import hashlib

from herd.data.document import Document
from herd.data.step import Filter


class ExactDedup(Filter):
    """Keeps the first document with each exact text (SHA-1 of the UTF-8 bytes)."""

    name = "exact_dedup"

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[bytes] = set()

    def check(self, doc: Document) -> str | None:
        key = hashlib.sha1(doc.text.encode("utf-8", "surrogatepass")).digest()
        if key in self.seen:
            return "duplicate"
        self.seen.add(key)
        return None
