"""The "used as a reference in Wikipedia" fastText classifier (Llama 1 §2.1; Llama 3 §3.1.1).

Llama 1 trains a linear model to tell pages cited by Wikipedia articles from
random CommonCrawl pages and discards pages not classified as references;
RedPajama's reproduction keeps pages whose ``__label__wiki`` probability is at
least 0.25. :func:`train_fasttext_classifier` trains such a model with
``fasttext.train_supervised`` from positive and negative examples (herd's
defaults: word bigrams, 16-dimensional vectors and 2^18 hash buckets keep the
model file small; tune for real data), and :class:`WikiReferenceFilter`
applies it, storing the probability in ``metadata["wiki_ref_score"]``.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from herd.data.document import Document
from herd.data.errors import DataInputError
from herd.data.quality.fasttext_model import LABEL_PREFIX, fasttext_line, load_fasttext, predict_labels
from herd.data.quality.lazy import LazyModel
from herd.data.step import Filter
from herd.io.atomic import atomic_file


def train_fasttext_classifier(
    positive: Iterable[str],
    negative: Iterable[str],
    output: str | Path,
    labels: tuple[str, str] = ("wiki", "cc"),
    epoch: int = 10,
    lr: float = 0.5,
    dim: int = 16,
    word_ngrams: int = 2,
    bucket: int = 1 << 18,
    seed: int = 0,
) -> Any:
    """Train a two-label fastText classifier on shuffled examples, save it to ``output`` and return it."""
    import fasttext

    rows = [f"{LABEL_PREFIX}{labels[0]} {fasttext_line(t)}" for t in positive]
    n_positive = len(rows)
    rows += [f"{LABEL_PREFIX}{labels[1]} {fasttext_line(t)}" for t in negative]
    if not n_positive or len(rows) == n_positive:
        raise DataInputError(f"fastText classifier: need positive and negative examples for {output}")
    random.Random(seed).shuffle(rows)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8") as tmp:
        tmp.write("\n".join(rows) + "\n")
        tmp.flush()
        model = fasttext.train_supervised(
            tmp.name,
            epoch=epoch,
            lr=lr,
            dim=dim,
            wordNgrams=word_ngrams,
            bucket=bucket,
            thread=1,
            seed=seed,
            verbose=0,
        )
    with atomic_file(output) as tmp:
        model.save_model(str(tmp))
    return model


def label_probability(model: Any, text: str, label: str) -> float:
    """The classifier's probability of ``label`` for ``text`` (0 when the model lacks the label)."""
    scores = dict(predict_labels(model, fasttext_line(text)))
    return min(1.0, scores.get(label, 0.0))


class WikiReferenceFilter(LazyModel, Filter):
    """Drops documents whose ``label`` probability is below ``threshold`` (0.25, RedPajama) as ``not_wiki_reference``."""

    name = "wiki_reference"

    def __init__(self, model_path: str | Path, threshold: float = 0.25, label: str = "wiki") -> None:
        super().__init__()
        if not Path(model_path).is_file():
            raise DataInputError(f"{model_path}: no such fastText classifier")
        self.model_path = Path(model_path)
        self.threshold = threshold
        self.label = label
        self._model: Any = None

    def score(self, text: str) -> float:
        """The probability that ``text`` is a page Wikipedia would reference."""
        if self._model is None:
            self._model = load_fasttext(self.model_path)
        return label_probability(self._model, text, self.label)

    def check(self, doc: Document) -> str | None:
        score = self.score(doc.text)
        doc.metadata["wiki_ref_score"] = round(score, 4)
        return "not_wiki_reference" if score < self.threshold else None
