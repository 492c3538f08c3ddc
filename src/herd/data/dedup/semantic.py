"""Semantic dedup, SemDeDup (Abbas et al. 2023; docs/spec.md §4; Llama 3 §3.1.1 quality filtering).

Documents are embedded (MiniLM, :mod:`herd.data.quality.embeddings`),
clustered by spherical k-means (k-means++ seeding, cosine similarity, torch),
one cluster per ``docs_per_cluster`` documents. Within each cluster the
documents are ordered by cosine similarity to the centroid, **least similar
first**, and a document is dropped as ``semantic_duplicate`` when its cosine
similarity to any earlier document of that order exceeds ``1 − eps``. So of a
group of near neighbours the one farthest from the centroid is kept (SemDeDup's
default: prototypical examples are the redundant ones). Like the paper, the
comparison is with every earlier document, dropped or not. ``eps = 0.05`` is
herd's choice (the paper sweeps it). Kept documents leave in input order.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from herd.data.document import Document
from herd.data.quality.embeddings import SentenceEmbedder
from herd.data.step import Step

Embed = Callable[[Sequence[str]], np.ndarray]


def spherical_kmeans(
    x: np.ndarray, k: int, iterations: int = 20, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Centroids (unit length) and the cluster of each row of the unit-length ``x``."""
    import torch

    points = torch.as_tensor(x, dtype=torch.float32)
    n = len(points)
    k = max(1, min(k, n))
    generator = torch.Generator().manual_seed(seed)
    chosen = [int(torch.randint(n, (1,), generator=generator))]
    distance = (1 - points @ points[chosen[0]]).clamp(min=0)
    for _ in range(1, k):  # k-means++: next centre with probability ∝ squared distance
        weights = distance.square()
        index = int(torch.multinomial(weights, 1, generator=generator)) if weights.sum() > 0 else len(chosen)
        chosen.append(index)
        distance = torch.minimum(distance, (1 - points @ points[index]).clamp(min=0))
    centroids = points[chosen].clone()
    assignment = torch.full((n,), -1, dtype=torch.long)
    for _ in range(iterations):
        new = (points @ centroids.T).argmax(dim=1)
        if torch.equal(new, assignment):
            break
        assignment = new
        sums = torch.zeros_like(centroids).index_add_(0, assignment, points)
        nonempty = sums.norm(dim=1) > 0
        centroids[nonempty] = torch.nn.functional.normalize(sums[nonempty], dim=1)
    return centroids.numpy(), assignment.numpy()


def semdedup_keep(
    embeddings: np.ndarray, eps: float = 0.05, docs_per_cluster: int = 2000, seed: int = 0
) -> np.ndarray:
    """Boolean mask of the rows SemDeDup keeps (see module docstring); rows must be unit length."""
    n = len(embeddings)
    keep = np.ones(n, dtype=bool)
    if n < 2:
        return keep
    centroids, assignment = spherical_kmeans(embeddings, math.ceil(n / docs_per_cluster), seed=seed)
    for cluster in range(len(centroids)):
        members = np.flatnonzero(assignment == cluster)
        if len(members) < 2:
            continue
        vectors = embeddings[members]
        order = np.argsort(vectors @ centroids[cluster], kind="stable")  # farthest from the centroid first
        similarity = np.triu(vectors[order] @ vectors[order].T, k=1)
        keep[members[order]] = similarity.max(axis=0) <= 1 - eps
    return keep


class SemanticDedup(Step):
    """SemDeDup over the documents one task sees (buffered, then embedded in one go)."""

    name = "semantic_dedup"

    def __init__(
        self,
        eps: float = 0.05,
        docs_per_cluster: int = 2000,
        model_path: str | Path | None = None,
        batch_size: int = 32,
        seed: int = 0,
        embed: Embed | None = None,
    ) -> None:
        super().__init__()
        self.eps = eps
        self.docs_per_cluster = docs_per_cluster
        self.seed = seed
        self.embed: Embed = embed or SentenceEmbedder(model_path, batch_size)

    def run(self, docs: Iterable[Document]) -> Iterator[Document]:
        buffered = list(docs)
        start = time.perf_counter()
        embeddings = np.asarray(self.embed([d.text for d in buffered]), dtype=np.float32)
        keep = semdedup_keep(embeddings, self.eps, self.docs_per_cluster, self.seed)
        self.stats.seconds += time.perf_counter() - start
        for doc, kept in zip(buffered, keep, strict=True):
            if kept:
                self.keep(doc)
                yield doc
            else:
                self.drop(doc, "semantic_duplicate")
