"""Word n-gram language model for CCNet's perplexity filter (Wenzek et al. 2019 §3.3; Llama 1 §2.1).

CCNet scores web text with a 5-gram KenLM model trained on Wikipedia. KenLM
has no wheel here, so herd estimates the model itself: **interpolated
Kneser-Ney** (Kneser & Ney 1995; Chen & Goodman 1998 §3.5) with one absolute
discount per order, ``D_n = n1 / (n1 + 2 n2)`` from the counts-of-counts of
that order's adjusted counts (KenLM's "modified" variant uses three discounts;
one is enough for a reference filter and is hand-checkable). Counts follow
KenLM: the highest order and n-grams starting with ``<s>`` use raw counts, every
other lower-order n-gram its number of distinct left extensions (continuation
count). The unigram distribution is interpolated with the uniform one over the
vocabulary plus ``<unk>``, so ``<unk>`` gets the leftover mass.

The model is written as a standard ARPA file (log10 probabilities; log10
backoff weights equal to the interpolation weights ``γ(h)``), so querying it
with the ARPA backoff rule reproduces the interpolated estimate exactly and
KenLM can read (and binarise) the same file. Each non-empty line is one
sentence, padded with one ``<s>`` and ``</s>`` as KenLM does.
"""

from __future__ import annotations

import math
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import regex

from herd.data.errors import DataInputError
from herd.io.atomic import write_atomically

SOS, EOS, UNK = "<s>", "</s>", "<unk>"
LOG10_ZERO = -99.0  # ARPA convention for "never predicted" (<s>)
FALLBACK_DISCOUNT = 0.5  # when an order has no count-1 or no count-2 n-grams (tiny corpora)

_TOKEN = regex.compile(r"\w+|[^\w\s]")
_DIGIT = regex.compile(r"\p{Nd}")

NGram = tuple[str, ...]


def lm_tokens(line: str) -> list[str]:
    """CCNet-style normalised tokens: lower-cased, accents folded, digits → 0, words and punctuation split."""
    line = unicodedata.normalize("NFD", line.lower())
    line = "".join(c for c in line if unicodedata.category(c) != "Mn")
    return _TOKEN.findall(_DIGIT.sub("0", line))


def sentences(text: str) -> Iterator[list[str]]:
    """The token lists of the non-empty lines of ``text`` (one sentence per line, as CCNet scores)."""
    for line in text.split("\n"):
        tokens = lm_tokens(line)
        if tokens:
            yield tokens


def _discount(adjusted: Iterable[int]) -> float:
    counts = Counter(c for c in adjusted if c <= 2)
    n1, n2 = counts[1], counts[2]
    return n1 / (n1 + 2 * n2) if n1 and n2 else FALLBACK_DISCOUNT


@dataclass
class NgramModel:
    """An ARPA-style back-off model: ``entries[ngram] = (log10 p, log10 backoff)``."""

    order: int
    entries: dict[NGram, tuple[float, float]]

    def __post_init__(self) -> None:
        if (UNK,) not in self.entries:
            self.entries[(UNK,)] = (LOG10_ZERO, 0.0)

    def logprob(self, context: NGram, word: str) -> float:
        """log10 p(word | context) by the ARPA back-off rule; words outside the vocabulary are ``<unk>``."""
        if (word,) not in self.entries:
            word = UNK
        penalty = 0.0
        for start in range(len(context) + 1):
            history = context[start:]
            entry = self.entries.get((*history, word))
            if entry is not None:
                return penalty + entry[0]
            if history:
                penalty += self.entries.get(history, (0.0, 0.0))[1]
        raise AssertionError("unreachable: every word maps to a unigram")

    def sentence_log10(self, tokens: list[str]) -> float:
        """log10 p(tokens </s> | <s>)."""
        vocab = self.entries
        words = [t if (t,) in vocab else UNK for t in tokens]
        keep = self.order - 1
        history: NGram = (SOS,)[:keep]
        total = 0.0
        for word in [*words, EOS]:
            total += self.logprob(history, word)
            history = (*history, word)[-keep:] if keep else ()
        return total

    def write_arpa(self, path: str | Path) -> None:
        """Write the model as an ARPA text file (n-grams sorted, so the bytes are reproducible)."""
        by_order: list[list[NGram]] = [[] for _ in range(self.order)]
        for ngram in self.entries:
            by_order[len(ngram) - 1].append(ngram)
        lines = ["", "\\data\\"]
        lines += [f"ngram {n + 1}={len(grams)}" for n, grams in enumerate(by_order)]
        for n, grams in enumerate(by_order):
            lines += ["", f"\\{n + 1}-grams:"]
            for ngram in sorted(grams):
                logp, backoff = self.entries[ngram]
                row = f"{logp:.7g}\t{' '.join(ngram)}"
                lines.append(row + (f"\t{backoff:.7g}" if backoff else ""))
        lines += ["", "\\end\\", ""]
        text = "\n".join(lines)
        write_atomically(Path(path), lambda f: f.write(text.encode("utf-8")))

    @classmethod
    def read_arpa(cls, path: str | Path) -> NgramModel:
        """Read an ARPA file (as written by herd, KenLM's ``lmplz`` or SRILM)."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DataInputError(f"{path}: cannot read the ARPA model ({exc})") from None
        entries: dict[NGram, tuple[float, float]] = {}
        order = 0
        section = 0
        for number, raw in enumerate(text.split("\n"), 1):
            line = raw.strip()
            if not line or line.startswith("ngram ") or line == "\\data\\":
                continue
            if line == "\\end\\":
                break
            if line.startswith("\\") and line.endswith("-grams:"):
                section = int(line[1 : -len("-grams:")])
                order = max(order, section)
                continue
            fields = line.split("\t")
            try:
                if not section or len(fields) not in (2, 3) or len(fields[1].split(" ")) != section:
                    raise ValueError(line)
                backoff = float(fields[2]) if len(fields) == 3 else 0.0
                entries[tuple(fields[1].split(" "))] = (float(fields[0]), backoff)
            except ValueError:
                raise DataInputError(f"{path}:{number}: not an ARPA {section}-gram line: {raw!r}") from None
        if not order or (SOS,) not in entries:
            raise DataInputError(f"{path}: not an ARPA model (no n-gram sections or no <s>)")
        return cls(order, entries)


def estimate_kneser_ney(corpus: Iterable[list[str]], order: int = 5) -> NgramModel:
    """Interpolated Kneser-Ney estimate of an ``order``-gram model from token lists (see module docstring)."""
    if order < 1:
        raise DataInputError(f"n-gram order must be at least 1, got {order}")
    raw: list[Counter[NGram]] = [Counter() for _ in range(order)]
    for tokens in corpus:
        padded = (SOS, *tokens, EOS)
        for n in range(1, order + 1):
            raw[n - 1].update(padded[i : i + n] for i in range(len(padded) - n + 1))
    if not raw[0]:
        raise DataInputError("n-gram estimation: the training corpus has no tokens")
    adjusted: list[dict[NGram, int]] = [dict(raw[-1])]
    for n in range(order - 1, 0, -1):
        left_extensions = Counter(ngram[1:] for ngram in raw[n])
        adjusted.insert(0, {g: (c if g[0] == SOS else left_extensions[g]) for g, c in raw[n - 1].items()})
    unigrams = {g: c for g, c in adjusted[0].items() if g != (SOS,)}
    discount = _discount(unigrams.values())
    total = sum(unigrams.values())
    uniform = discount * len(unigrams) / total / (len(unigrams) + ((UNK,) not in unigrams))
    probs: dict[NGram, float] = {g: (c - discount) / total + uniform for g, c in unigrams.items()}
    probs[(UNK,)] = probs.get((UNK,), uniform)
    backoffs: dict[NGram, float] = {}
    for n in range(2, order + 1):
        counts = adjusted[n - 1]
        discount = _discount(counts.values())
        context_total: Counter[NGram] = Counter()
        context_types: Counter[NGram] = Counter()
        for ngram, c in counts.items():
            context_total[ngram[:-1]] += c
            context_types[ngram[:-1]] += 1
        for history, c_total in context_total.items():
            backoffs[history] = discount * context_types[history] / c_total
        for ngram, c in counts.items():
            history = ngram[:-1]
            probs[ngram] = (c - discount) / context_total[history] + backoffs[history] * probs[ngram[1:]]
    entries = {
        g: (math.log10(p), math.log10(backoffs[g]) if g in backoffs else 0.0) for g, p in probs.items()
    }
    entries[(SOS,)] = (LOG10_ZERO, math.log10(backoffs[(SOS,)]) if (SOS,) in backoffs else 0.0)
    return NgramModel(order, entries)
