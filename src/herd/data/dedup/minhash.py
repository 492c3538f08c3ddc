"""MinHash LSH near-duplicate removal (Llama 3 §3.1.1 global document dedup; Llama 1 §2.1 book dedup).

Documents are shingled into word 5-grams (lower-cased, punctuation stripped),
each shingle hashed to 64 bits; 112 multiply-shift hash functions give the
signature, split into 14 bands of 8 rows (docs/spec.md §4). Two documents sharing a
band are candidates; a candidate is confirmed when the fraction of equal
signature values (an unbiased Jaccard estimate) reaches ``threshold``, or,
with ``exact=True``, when the exact Jaccard of the shingle sets does (what
book dedup uses at 0.9). Confirmation keeps pairs below 0.5 from ever being
removed, which bands alone would do ~5% of the time. The first document of a
duplicate group is kept.

:class:`MinhashDedup` filters the stream one task sees. Its ``scope`` says
what a recipe means by it: ``"global"`` (the default) dedups across every task
of the source — with ``tasks > 1`` the recipe builder splits the pipeline at
the step and runs the stages of :mod:`herd.data.dedup.global_minhash` instead
of the in-stream filter — while ``"task"`` keeps it per task (CCNet-style
groups). Book dedup is always in-stream.
"""

from __future__ import annotations

import zlib

import numpy as np

from herd.data.document import Document
from herd.data.errors import DataInputError
from herd.data.step import Filter
from herd.data.text import strip_punctuation

_MIX = np.uint64(0x9E3779B97F4A7C15)


def shingles(text: str, n: int = 5) -> np.ndarray:
    """Sorted unique 64-bit ids of the word ``n``-grams of ``text`` (the whole text if shorter)."""
    tokens = [t for t in (strip_punctuation(w).lower() for w in text.split()) if t]
    if not tokens:
        return np.zeros(0, dtype=np.uint64)
    ids = np.fromiter((zlib.crc32(t.encode("utf-8", "surrogatepass")) for t in tokens), dtype=np.uint64)
    n = min(n, len(ids))
    grams = np.zeros(len(ids) - n + 1, dtype=np.uint64)
    for j in range(n):
        grams = grams * _MIX + ids[j : len(ids) - n + 1 + j]
    return np.unique(grams)


class MinHasher:
    """``bands × rows`` multiply-shift hash functions with a fixed seed (same signatures in every process)."""

    def __init__(self, bands: int = 14, rows: int = 8, seed: int = 1) -> None:
        self.bands, self.rows = bands, rows
        rng = np.random.default_rng(seed)
        k = bands * rows
        self.a = rng.integers(1, 2**63, size=k, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self.b = rng.integers(0, 2**63, size=k, dtype=np.uint64)

    def signature(self, shingle_ids: np.ndarray) -> np.ndarray:
        """The ``bands*rows`` minimum hash values (uint32) of a shingle set."""
        if len(shingle_ids) == 0:
            return np.full(self.bands * self.rows, np.iinfo(np.uint32).max, dtype=np.uint32)
        hashed = (shingle_ids[:, None] * self.a[None, :] + self.b[None, :]) >> np.uint64(32)
        return hashed.min(axis=0).astype(np.uint32)

    def band_keys(self, signature: np.ndarray) -> list[bytes]:
        """One hashable key per band."""
        return [signature[i * self.rows : (i + 1) * self.rows].tobytes() for i in range(self.bands)]


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard similarity of two sorted unique id arrays."""
    union = len(np.union1d(a, b))
    return len(np.intersect1d(a, b, assume_unique=True)) / union if union else 1.0


SCOPES = ("global", "task")


class MinhashDedup(Filter):
    """Drops documents that near-duplicate an earlier one in this task's stream (see module docstring)."""

    name = "minhash_dedup"

    def __init__(
        self,
        n: int = 5,
        bands: int = 14,
        rows: int = 8,
        threshold: float = 0.7,
        exact: bool = False,
        seed: int = 1,
        scope: str = "global",
    ) -> None:
        super().__init__()
        if scope not in SCOPES:
            raise DataInputError(f"{self.name}: scope must be one of {', '.join(SCOPES)}, got {scope!r}")
        self.scope = scope
        self.n = n
        self.threshold = threshold
        self.exact = exact
        self.hasher = MinHasher(bands, rows, seed)
        self.buckets: list[dict[bytes, list[int]]] = [{} for _ in range(bands)]
        self.kept: list[np.ndarray] = []

    def is_duplicate(self, shingle_ids: np.ndarray) -> bool:
        """Whether ``shingle_ids`` duplicates a kept document; if not, it is indexed as kept."""
        signature = self.hasher.signature(shingle_ids)
        keys = self.hasher.band_keys(signature)
        candidates = {c for band, key in zip(self.buckets, keys, strict=True) for c in band.get(key, ())}
        for c in sorted(candidates):
            other = self.kept[c]
            similarity = jaccard(shingle_ids, other) if self.exact else float(np.mean(signature == other))
            if similarity >= self.threshold:
                return True
        index = len(self.kept)
        self.kept.append(shingle_ids if self.exact else signature)
        for band, key in zip(self.buckets, keys, strict=True):
            band.setdefault(key, []).append(index)
        return False

    def check(self, doc: Document) -> str | None:
        return "near_duplicate" if self.is_duplicate(shingles(doc.text, self.n)) else None


class BookDedup(MinhashDedup):
    """Book-level dedup (Llama 1 §2.1): drop books with more than 90% content overlap, confirmed exactly."""

    name = "book_dedup"

    def __init__(
        self, threshold: float = 0.9, n: int = 5, bands: int = 14, rows: int = 8, seed: int = 1
    ) -> None:
        super().__init__(n, bands, rows, threshold, exact=True, seed=seed, scope="task")

    def check(self, doc: Document) -> str | None:
        return "duplicate_book" if self.is_duplicate(shingles(doc.text, self.n)) else None
