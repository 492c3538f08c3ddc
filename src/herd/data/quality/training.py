"""Training the models the quality steps load: CCNet's n-gram model and the reference classifiers.

The recipes name these model files (``ccnet_perplexity``'s ARPA model,
``wiki_reference``'s fastText model, ``embedding_quality``'s linear head); this
module makes them from example files, for ``herd data train-lm`` and ``herd
data train-classifier`` or any script.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from herd.data.pipeline import expand_inputs
from herd.data.quality import ClassifierKind
from herd.data.quality.examples import read_examples
from herd.data.quality.ngram_lm import NgramModel, estimate_kneser_ney, sentences
from herd.data.recipe.registry import make_reader


def train_ngram_lm(inputs: Iterable[str | Path], reader: str = "wikipedia", order: int = 5) -> NgramModel:
    """A Kneser-Ney ``order``-gram model of the sentences of the documents ``reader`` reads from ``inputs``.

    ``inputs`` are files, directories or globs; CCNet trains on Wikipedia, hence the default reader.
    """
    documents = make_reader(reader, {}, "train-lm").read_files(expand_inputs(inputs))
    return estimate_kneser_ney((s for doc in documents for s in sentences(doc.text)), order)


def train_classifier(
    kind: ClassifierKind, positive: Iterable[str | Path], negative: Iterable[str | Path], output: str | Path
) -> tuple[int, int]:
    """Train a ``fasttext`` (wiki_reference) or ``embedding`` (embedding_quality) classifier into ``output``.

    ``positive`` and ``negative`` are example files (JSONL documents or one text per line).
    Returns the number of positive and negative examples it was trained on.
    """
    positives, negatives = list(read_examples(positive)), list(read_examples(negative))
    if kind == "fasttext":
        from herd.data.quality.wiki_classifier import train_fasttext_classifier

        train_fasttext_classifier(positives, negatives, output)
    else:
        from herd.data.quality.embedding_classifier import train_embedding_classifier

        train_embedding_classifier(positives, negatives, output)
    return len(positives), len(negatives)
