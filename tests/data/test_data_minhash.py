"""MinHash LSH: recall ≥ 0.9 at Jaccard 0.8, no false positive below 0.5, book dedup at 90% (docs/data.md)."""

from __future__ import annotations

import numpy as np

from conftest import SAMPLES, doc
from herd.data.dedup.minhash import BookDedup, MinhashDedup, jaccard, shingles
from herd.data.pipeline import expand_inputs
from herd.data.sources.books import GutenbergReader


def _pair(rng: np.random.Generator, common: int, unique: int) -> tuple[np.ndarray, np.ndarray]:
    ids = rng.choice(2**62, size=common + 2 * unique, replace=False).astype(np.uint64)
    a = np.unique(ids[: common + unique])
    b = np.unique(np.concatenate([ids[:common], ids[common + unique :]]))
    return a, b


def _detected(common: int, unique: int, pairs: int = 300) -> float:
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(pairs):
        a, b = _pair(rng, common, unique)
        dedup = MinhashDedup()
        dedup.is_duplicate(a)
        hits += dedup.is_duplicate(b)
    return hits / pairs


def test_recall_at_jaccard_08() -> None:
    a, b = _pair(np.random.default_rng(1), 800, 100)
    assert jaccard(a, b) == 0.8
    assert _detected(800, 100) >= 0.9


def test_no_false_positive_below_05() -> None:
    assert _detected(500, 250) == 0.0  # Jaccard 0.5
    assert _detected(400, 300, pairs=100) == 0.0  # Jaccard 0.4


def test_shingles_normalise_words() -> None:
    assert np.array_equal(shingles("The cat, sat on the mat."), shingles("the CAT sat on the mat"))
    assert len(shingles("a b c d e f")) == 2
    assert len(shingles("short")) == 1 and len(shingles("")) == 0


def test_minhash_step_drops_near_duplicates() -> None:
    base = " ".join(f"word{i}" for i in range(300))
    near = base.replace("word150", "changed")
    step = MinhashDedup()
    kept = list(step.run([doc(base, "a"), doc("something else entirely " * 20, "b"), doc(near, "c")]))
    assert [d.id for d in kept] == ["a", "b"]
    assert step.stats.dropped == {"near_duplicate": 1}


def test_book_dedup_on_samples() -> None:
    books = list(GutenbergReader().read_files(expand_inputs([SAMPLES / "books"])))
    step = BookDedup()
    assert [d.id for d in step.run(books)] == ["declaration-2nd-edition.txt", "high-pasture.txt"]
    text = " ".join(f"w{i}" for i in range(1000))
    edited = text.replace("w500 w501 w502 w503 w504 w505 w506 w507 w508 w509", "new")  # ~98% overlap
    assert BookDedup().is_duplicate(shingles(text)) is False
    dedup = BookDedup()
    dedup.is_duplicate(shingles(text))
    assert dedup.is_duplicate(shingles(edited))
    half = " ".join(f"w{i}" for i in range(500)) + " " + " ".join(f"v{i}" for i in range(500))
    assert not dedup.is_duplicate(shingles(half))  # ~33% overlap is not a duplicate
