"""CCNet perplexity buckets (Wenzek et al. 2019 §3.3; Llama 1 §2.1; docs/spec.md §4).

Each document is scored by a 5-gram model trained on Wikipedia: herd's own
ARPA scorer (:mod:`herd.data.quality.ngram_lm`), or KenLM when the ``kenlm``
module is importable (it also reads KenLM binaries). As in CCNet the score is
**per document**: every non-empty line is a sentence (``<s> … </s>``) and the
perplexity is ``10 ** (-Σ log10 p / Σ tokens)`` over all lines, ``</s>``
counted as a token. English thresholds: head < 340 ≤ middle < 520 ≤ tail.
The step labels ``perplexity`` and ``perplexity_bucket`` and keeps the
buckets in ``keep`` (all three by default; RedPajama kept head and middle).
"""

from __future__ import annotations

import importlib.util
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from herd.data.document import Document
from herd.data.errors import DataInputError
from herd.data.progress import quiet_native_stderr
from herd.data.quality.lazy import LazyModel
from herd.data.quality.ngram_lm import NgramModel, sentences
from herd.data.step import Filter

BUCKETS = ("head", "middle", "tail")


class SentenceScorer(Protocol):
    """Anything that gives log10 p(tokens </s> | <s>)."""

    def sentence_log10(self, tokens: list[str]) -> float: ...


# What KenLM prints on stderr while it reads a model (from C++, so only fd 2 can catch it): a hint to
# build a binary, the file's name and a progress ruler with its stars. Anything else it prints passes.
KENLM_BANNER = re.compile(
    r"Loading the LM will be faster if you build a binary file\.|Reading .*|-+5-+10-[-0-9]*|\*+"
)


class KenlmScorer:
    """KenLM's model behind the :class:`SentenceScorer` interface (same tokens, same ``<s>``/``</s>``).

    The model loads without KenLM's loading banner (:data:`KENLM_BANNER`),
    which every worker would otherwise print; a file KenLM cannot read is one
    :class:`DataInputError` with KenLM's reason.
    """

    def __init__(self, path: str | Path) -> None:
        import kenlm

        with quiet_native_stderr(KENLM_BANNER):
            try:
                self.model = kenlm.Model(str(path))
            except OSError as exc:  # KenLM reports an unreadable model so, whatever the cause
                raise DataInputError(f"{path}: KenLM cannot read it ({exc})") from None

    def sentence_log10(self, tokens: list[str]) -> float:
        return float(self.model.score(" ".join(tokens), bos=True, eos=True))


def load_scorer(path: str | Path) -> SentenceScorer:
    """KenLM when importable, else herd's ARPA reader (binaries need KenLM)."""
    path = Path(path)
    if not path.is_file():
        raise DataInputError(f"{path}: no such language model file")
    if importlib.util.find_spec("kenlm") is not None:
        return KenlmScorer(path)
    if path.suffix != ".arpa":
        raise DataInputError(f"{path}: not an .arpa file, and reading KenLM binaries needs the kenlm module")
    return NgramModel.read_arpa(path)


def perplexity(scorer: SentenceScorer, text: str) -> float:
    """Document perplexity over its lines (``inf`` for a document without tokens)."""
    log10_total, count = 0.0, 0
    for tokens in sentences(text):
        log10_total += scorer.sentence_log10(tokens)
        count += len(tokens) + 1
    return 10 ** (-log10_total / count) if count else math.inf


def bucket(value: float, head: float = 340.0, tail: float = 520.0) -> str:
    """CCNet's bucket: ``head`` below ``head``, ``tail`` at or above ``tail``, ``middle`` between."""
    if value < head:
        return "head"
    return "tail" if value >= tail else "middle"


class PerplexityFilter(LazyModel, Filter):
    """Labels each document's perplexity and bucket; drops buckets not in ``keep`` as ``perplexity_<bucket>``.

    Only documents in ``language`` (``metadata["language"]`` from
    :class:`~herd.data.quality.langid.LanguageIdFilter`, or unlabelled ones)
    are scored, since the model and thresholds are per language; others pass.
    """

    name = "ccnet_perplexity"

    def __init__(
        self,
        model_path: str | Path,
        head: float = 340.0,
        tail: float = 520.0,
        keep: Sequence[str] = BUCKETS,
        language: str | None = "en",
    ) -> None:
        super().__init__()
        unknown = sorted(set(keep) - set(BUCKETS))
        if unknown or head > tail:
            raise DataInputError(f"ccnet_perplexity: keep must name {BUCKETS} (got {unknown}), head ≤ tail")
        if not Path(model_path).is_file():
            raise DataInputError(f"{model_path}: no such language model file")
        self.model_path = Path(model_path)
        self.head, self.tail = head, tail
        self.keep_buckets = frozenset(keep)
        self.language = language
        self._model: Any = None

    @property
    def model(self) -> SentenceScorer:
        if self._model is None:
            self._model = load_scorer(self.model_path)
        return self._model

    def check(self, doc: Document) -> str | None:
        if self.language and doc.metadata.get("language", self.language) != self.language:
            return None
        value = perplexity(self.model, doc.text)
        label = bucket(value, self.head, self.tail)
        doc.metadata["perplexity"] = round(value, 1) if math.isfinite(value) else None
        doc.metadata["perplexity_bucket"] = label
        return None if label in self.keep_buckets else f"perplexity_{label}"
