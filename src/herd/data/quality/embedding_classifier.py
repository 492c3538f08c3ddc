"""Embedding + linear-head quality classifier (Llama 3 §3.1.1, "DistilRoBERTa-style" stand-in).

Llama 3 distils Llama 2 quality judgements into fast classifiers, among them
one on DistilRoBERTa features. herd's stand-in is logistic regression on
frozen MiniLM sentence embeddings (:mod:`herd.data.quality.embeddings`),
fitted full-batch with L-BFGS and an L2 penalty in torch, saved as a small
JSON file. :class:`EmbeddingQualityFilter` embeds documents in batches,
stores ``metadata["quality_score"]`` and drops documents below ``threshold``
(0.5, herd's choice: the paper gives none).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from herd.data.document import Document
from herd.data.errors import DataInputError
from herd.data.quality.embeddings import SentenceEmbedder
from herd.data.step import Step
from herd.io.atomic import write_atomically

FORMAT = "herd-linear-head-v1"


@dataclass
class LinearHead:
    """``p(good | x) = sigmoid(x · weight + bias)`` over an embedding ``x``."""

    weight: np.ndarray
    bias: float

    def probability(self, embeddings: np.ndarray) -> np.ndarray:
        """Probabilities for a ``n × dim`` embedding matrix."""
        return 1.0 / (1.0 + np.exp(-(embeddings @ self.weight + self.bias)))

    def save(self, path: str | Path) -> None:
        record = {"format": FORMAT, "weight": self.weight.tolist(), "bias": self.bias}
        text = json.dumps(record) + "\n"
        write_atomically(Path(path), lambda f: f.write(text.encode()))

    @classmethod
    def load(cls, path: str | Path) -> LinearHead:
        try:
            record = json.loads(Path(path).read_text("utf-8"))
            if record.get("format") != FORMAT:
                raise ValueError(f"format is not {FORMAT}")
            return cls(np.asarray(record["weight"], dtype=np.float32), float(record["bias"]))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DataInputError(f"{path}: not a herd linear-head classifier ({exc})") from None


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-3, steps: int = 100) -> LinearHead:
    """Logistic regression of labels ``y`` (0/1) on ``x`` by full-batch L-BFGS (deterministic)."""
    import torch

    if len(x) != len(y) or len(set(y.tolist())) != 2:
        raise DataInputError("logistic regression: need as many labels as rows, with both classes present")
    features = torch.as_tensor(x, dtype=torch.float64)
    labels = torch.as_tensor(y, dtype=torch.float64)
    weight = torch.zeros(features.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        logits = features @ weight + bias
        loss = (
            torch.nn.functional.binary_cross_entropy_with_logits(logits, labels) + l2 * weight.square().sum()
        )
        loss.backward()
        return loss

    optimizer.step(closure)
    return LinearHead(weight.detach().float().numpy(), float(bias.detach()))


def train_embedding_classifier(
    positive: Iterable[str],
    negative: Iterable[str],
    output: str | Path,
    embedder: SentenceEmbedder | None = None,
    l2: float = 1e-3,
) -> LinearHead:
    """Embed positive (high-quality) and negative examples, fit the head, save it to ``output``."""
    positive, negative = list(positive), list(negative)
    embedder = embedder or SentenceEmbedder()
    x = embedder(positive + negative)
    y = np.array([1] * len(positive) + [0] * len(negative))
    head = fit_logistic(x, y, l2)
    head.save(output)
    return head


class EmbeddingQualityFilter(Step):
    """Drops documents whose quality probability is below ``threshold`` as ``low_quality``; batched."""

    name = "embedding_quality"

    def __init__(
        self,
        classifier_path: str | Path,
        threshold: float = 0.5,
        model_path: str | Path | None = None,
        batch_size: int = 32,
    ) -> None:
        super().__init__()
        self.head = LinearHead.load(classifier_path)
        self.threshold = threshold
        self.embedder = SentenceEmbedder(model_path, batch_size)

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        """Quality probabilities of ``texts``."""
        return self.head.probability(self.embedder(texts))

    def run(self, docs: Iterable[Document]) -> Iterator[Document]:
        batch: list[Document] = []
        for doc in docs:
            batch.append(doc)
            if len(batch) == self.embedder.batch_size:
                yield from self._flush(batch)
                batch = []
        yield from self._flush(batch)

    def _flush(self, batch: list[Document]) -> Iterator[Document]:
        if not batch:
            return
        start = time.perf_counter()
        scores = self.scores([d.text for d in batch])
        self.stats.seconds += time.perf_counter() - start
        for doc, score in zip(batch, scores, strict=True):
            doc.metadata["quality_score"] = round(float(score), 4)
            if score < self.threshold:
                self.drop(doc, "low_quality")
            else:
                self.keep(doc)
                yield doc
