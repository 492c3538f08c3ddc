"""Duplicated n-gram coverage ratio (Llama 3 §3.1.1, after Gopher).

Llama 3 uses it to remove repeated content such as logging or error messages
that is too varied for line dedup. A document is dropped when the characters
covered by word n-grams that occur more than once exceed ``max_fraction``.
"""

from __future__ import annotations

from herd.data.document import Document
from herd.data.filters.gopher import duplicated_ngram_fraction
from herd.data.step import Filter
from herd.data.text import words


class NgramCoverageFilter(Filter):
    """Drops documents whose duplicated ``n``-gram character coverage exceeds ``max_fraction``."""

    name = "ngram_coverage"

    def __init__(self, n: int = 5, max_fraction: float = 0.15) -> None:
        super().__init__()
        self.n = n
        self.max_fraction = max_fraction

    def check(self, doc: Document) -> str | None:
        coverage = duplicated_ngram_fraction(words(doc.text), self.n)
        doc.metadata["dup_ngram_coverage"] = round(coverage, 4)
        return "dup_ngram_coverage" if coverage > self.max_fraction else None
