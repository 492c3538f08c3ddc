"""Line-level dedup: CCNet's first-occurrence rule (Llama 1 §2.1) and Llama 3's bucket counts (§3.1.1)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator

from herd.data.document import Document
from herd.data.step import Step
from herd.data.text import line_hash


class CCNetLineDedup(Step):
    """Removes every line whose normalised SHA-1 was already seen in this group, then short documents.

    The key is CCNet's: the line lower-cased, digits replaced by 0, punctuation
    removed (:func:`herd.data.text.normalize_line`). The first occurrence in the
    group is kept. CCNet then drops documents left under 300 characters.
    """

    name = "ccnet_line_dedup"

    def __init__(self, min_doc_chars: int = 300) -> None:
        super().__init__()
        self.min_doc_chars = min_doc_chars
        self.seen: set[bytes] = set()

    def process(self, doc: Document) -> Document | str:
        kept = []
        for line in doc.text.split("\n"):
            key = line_hash(line)
            if key not in self.seen:
                self.seen.add(key)
                kept.append(line)
        doc.text = "\n".join(kept)
        return "too_short_after_dedup" if len(doc.text) < self.min_doc_chars else doc


class BucketLineDedup(Step):
    """Llama 3's line dedup: in each bucket of documents, remove lines seen more than ``max_occurrences`` times.

    Documents are buffered per bucket (30M documents in the paper), line keys
    counted, then every line whose key occurs more than 6 times in the bucket
    is removed from all documents; documents left empty are dropped.
    """

    name = "bucket_line_dedup"

    def __init__(self, bucket_size: int = 30_000_000, max_occurrences: int = 6) -> None:
        super().__init__()
        self.bucket_size = bucket_size
        self.max_occurrences = max_occurrences

    def run(self, docs: Iterable[Document]) -> Iterator[Document]:
        bucket: list[Document] = []
        for doc in docs:
            bucket.append(doc)
            if len(bucket) >= self.bucket_size:
                yield from self._flush(bucket)
                bucket = []
        yield from self._flush(bucket)

    def _flush(self, bucket: list[Document]) -> Iterator[Document]:
        counts: Counter[bytes] = Counter()
        for doc in bucket:
            counts.update(line_hash(line) for line in doc.text.split("\n") if line.strip())
        for doc in bucket:
            original = Document(doc.text, doc.id, doc.source, doc.metadata)
            doc.text = "\n".join(
                line
                for line in doc.text.split("\n")
                if not line.strip() or counts[line_hash(line)] <= self.max_occurrences
            )
            if doc.text.strip():
                self.keep(doc, original)
                yield doc
            else:
                self.drop(original, "empty_after_line_dedup")
