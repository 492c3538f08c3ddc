"""MiniLM embeddings, the embedding + linear-head quality classifier and SemDeDup."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from conftest import doc
from herd.data.dedup.semantic import SemanticDedup, semdedup_keep, spherical_kmeans
from herd.data.errors import DataInputError
from herd.data.quality.embedding_classifier import (
    EmbeddingQualityFilter,
    LinearHead,
    fit_logistic,
    train_embedding_classifier,
)
from herd.data.quality.embeddings import SentenceEmbedder

GOOD = [
    "Photosynthesis converts light energy into chemical energy stored in glucose molecules.",
    "The French Revolution began in 1789 and reshaped European political institutions.",
    "Prime numbers have exactly two distinct positive divisors: one and themselves.",
    "Mitochondria produce most of the chemical energy needed by a cell.",
    "The Roman Empire reached its greatest territorial extent under Trajan.",
    "A derivative measures how a function changes as its input changes.",
]
BAD = [
    "CLICK HERE!!! buy now cheap pills best price free shipping!!!",
    "lol ok whatever see u later bye bye",
    "Hot singles in your area, sign up free now, limited offer!!!",
    "win win win casino bonus jackpot click click",
    "subscribe like share follow me for more giveaways!!!",
    "asdf qwer zxcv login password click here",
]
HELD_OUT = (
    "Plate tectonics explains the movement of the continents over geological time.",
    "FREE iPhone!!! click this link now to claim your prize!!!",
)


@pytest.fixture(scope="module")
def embedder() -> SentenceEmbedder:
    return SentenceEmbedder(batch_size=8)


def test_embeddings_are_normalised_and_semantic(embedder: SentenceEmbedder) -> None:
    x = embedder(["A cat sits on the mat.", "A cat is sitting on the mat.", "Interest rates rose."])
    assert x.shape == (3, 384) and x.dtype == np.float32
    assert np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    assert x[0] @ x[1] > 0.8 > 0.3 > x[0] @ x[2]
    assert embedder([]).shape == (0, 384)
    pickle.dumps(embedder)  # the loaded model stays out of pickles
    with pytest.raises(DataInputError, match=r"config\.json"):
        SentenceEmbedder(model_path="/nonexistent")


def test_logistic_regression_fits_separable_data() -> None:
    x = np.array([[2.0, 0.0], [1.5, 0.5], [-2.0, 0.1], [-1.0, -0.5]])
    head = fit_logistic(x, np.array([1, 1, 0, 0]))
    p = head.probability(x)
    assert p[0] > 0.9 and p[1] > 0.9 and p[2] < 0.1 and p[3] < 0.1


def test_quality_classifier_trains_saves_and_filters(tmp_path: Path, embedder: SentenceEmbedder) -> None:
    train_embedding_classifier(GOOD, BAD, tmp_path / "head.json", embedder=embedder, l2=1e-4)
    step = EmbeddingQualityFilter(tmp_path / "head.json", batch_size=8)
    step.embedder = embedder
    docs = [doc(HELD_OUT[0], "good"), doc(HELD_OUT[1], "bad")]
    kept = list(step.run(docs))
    assert [d.id for d in kept] == ["good"]
    assert kept[0].metadata["quality_score"] > 0.5 > docs[1].metadata["quality_score"]
    assert step.stats.dropped == {"low_quality": 1}
    (tmp_path / "bad.json").write_text('{"weight": [1]}')
    with pytest.raises(DataInputError, match=r"bad\.json"):
        LinearHead.load(tmp_path / "bad.json")


def test_semdedup_hand_checkable_with_fixed_embeddings() -> None:
    # Two clusters around (1,0,0) and (0,1,0). In the first, b and c are within cosine 0.999 of a;
    # a is farthest from the centroid, so it comes first and is kept. e is distinct (cos 0.8).
    vectors = {
        "a": [1.0, 0.0, 0.06],
        "b": [1.0, 0.0, 0.0],
        "c": [1.0, 0.0, 0.02],
        "d": [0.0, 1.0, 0.0],
        "e": [0.0, 0.8, 0.6],
    }
    texts = list(vectors)
    x = np.array([vectors[t] for t in texts], dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    _, clusters = spherical_kmeans(x, 2)
    assert clusters[0] == clusters[1] == clusters[2] != clusters[3] == clusters[4]
    keep = semdedup_keep(x, eps=0.01, docs_per_cluster=3)
    assert [t for t, k in zip(texts, keep, strict=True) if k] == ["a", "d", "e"]
    # at cosine > 0.5, e (cos 0.8) duplicates d; two points are equidistant from their centroid and
    # the stable order keeps the earlier one
    assert semdedup_keep(x, eps=0.5, docs_per_cluster=3).tolist() == [True, False, False, True, False]

    def embed(batch: list[str]) -> np.ndarray:
        return x[[texts.index(t) for t in batch]]

    step = SemanticDedup(eps=0.01, docs_per_cluster=3, embed=embed)
    assert [d.text for d in step.run([doc(t) for t in texts])] == ["a", "d", "e"]
    assert step.stats.dropped == {"semantic_duplicate": 2}


def test_semdedup_removes_near_duplicate_text(embedder: SentenceEmbedder) -> None:
    texts = [
        "The Eiffel Tower is a wrought-iron lattice tower in Paris, France.",
        "Rust guarantees memory safety without a garbage collector.",
        "The Eiffel Tower is a wrought iron lattice tower in Paris, France!",
        "Bananas are rich in potassium and easy to digest.",
        "Rust guarantees memory safety without needing a garbage collector.",
    ]
    step = SemanticDedup(eps=0.05, embed=embedder)
    kept = [d.id for d in step.run([doc(t, str(i)) for i, t in enumerate(texts)])]
    assert len(kept) == 3 and "3" in kept
    assert len({"0", "2"} & set(kept)) == 1 and len({"1", "4"} & set(kept)) == 1
