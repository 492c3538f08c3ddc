"""Text helpers shared by the filters: words, lines, n-grams and CCNet line normalisation."""

from __future__ import annotations

import hashlib
import string
import unicodedata
from collections.abc import Sequence

import regex

_DIGIT = regex.compile(r"\p{Nd}")
_PUNCT = regex.compile(r"\p{P}")
_PUNCT_STRIP = string.punctuation + "“”‘’«»…–—"
_SENTENCE_END = regex.compile(r"[.!?]+(?:[\"'”’)\]]*)(?=\s|$)")


def words(text: str) -> list[str]:
    """Whitespace-separated tokens (Gopher and C4 count words this way)."""
    return text.split()


def strip_punctuation(word: str) -> str:
    """``word`` without leading and trailing punctuation."""
    return word.strip(_PUNCT_STRIP)


def count_sentences(text: str) -> int:
    """Sentences as runs of text ending in ``.``, ``!`` or ``?`` (optionally quoted) then space or end."""
    return len(_SENTENCE_END.findall(text))


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    """The ``n``-grams of ``tokens`` in order (empty when there are fewer than ``n`` tokens)."""
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def normalize_line(line: str) -> str:
    """CCNet's line key: lower-cased, digits → 0, punctuation removed, accents folded, whitespace squeezed."""
    line = unicodedata.normalize("NFD", line.strip().lower())
    line = "".join(c for c in line if unicodedata.category(c) != "Mn")
    line = _PUNCT.sub("", _DIGIT.sub("0", line))
    return " ".join(line.split())


def line_hash(line: str) -> bytes:
    """First 8 bytes of the SHA-1 of the normalised line (CCNet, Llama 1 §2.1)."""
    return hashlib.sha1(normalize_line(line).encode("utf-8")).digest()[:8]
