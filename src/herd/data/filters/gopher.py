"""Gopher's quality and repetition rules (Rae et al. 2021 App. A), as Llama 3 §3.1.1 uses them.

Defaults are the published thresholds (docs/spec.md §4, datatrove's defaults):
50–100,000 words, mean word length 3–10, symbol-to-word ratio ≤ 0.1 for ``#``
and ``...``, ≤ 90% bullet lines, ≤ 30% lines ending in an ellipsis, ≥ 80% of
words containing a letter, ≥ 2 stop words; duplicate line / paragraph
fraction 0.3, duplicate line / paragraph character fraction 0.2, top 2/3/4-gram
character fractions 0.20/0.18/0.16, duplicated 5..10-gram character fractions
0.15..0.10.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from herd.data.document import Document
from herd.data.step import Filter
from herd.data.text import ngrams, strip_punctuation, words

STOP_WORDS = frozenset(("the", "be", "to", "of", "and", "that", "have", "with"))
BULLETS = ("•", "●", "○", "▪", "‣", "-", "*", "·")
ELLIPSES = ("...", "…")
TOP_NGRAMS = {2: 0.20, 3: 0.18, 4: 0.16}
DUP_NGRAMS = {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}


class GopherQualityFilter(Filter):
    """Drops documents whose length, word shape or symbol use is unlike natural prose."""

    name = "gopher_quality"

    def __init__(
        self,
        min_words: int = 50,
        max_words: int = 100_000,
        min_mean_word_length: float = 3.0,
        max_mean_word_length: float = 10.0,
        max_symbol_word_ratio: float = 0.1,
        max_bullet_lines_ratio: float = 0.9,
        max_ellipsis_lines_ratio: float = 0.3,
        min_alpha_words_ratio: float = 0.8,
        min_stop_words: int = 2,
    ) -> None:
        super().__init__()
        self.min_words, self.max_words = min_words, max_words
        self.min_mean_word_length = min_mean_word_length
        self.max_mean_word_length = max_mean_word_length
        self.max_symbol_word_ratio = max_symbol_word_ratio
        self.max_bullet_lines_ratio = max_bullet_lines_ratio
        self.max_ellipsis_lines_ratio = max_ellipsis_lines_ratio
        self.min_alpha_words_ratio = min_alpha_words_ratio
        self.min_stop_words = min_stop_words

    def check(self, doc: Document) -> str | None:
        tokens = words(doc.text)
        bare = [w for w in (strip_punctuation(t) for t in tokens) if w]
        if len(bare) < self.min_words:
            return "too_few_words"
        if len(bare) > self.max_words:
            return "too_many_words"
        mean = sum(map(len, bare)) / len(bare)
        if mean < self.min_mean_word_length:
            return "short_mean_word_length"
        if mean > self.max_mean_word_length:
            return "long_mean_word_length"
        symbols = doc.text.count("#") + sum(doc.text.count(e) for e in ELLIPSES)
        if symbols / len(tokens) > self.max_symbol_word_ratio:
            return "symbol_word_ratio"
        lines = [line.strip() for line in doc.text.splitlines() if line.strip()]
        if sum(line.startswith(BULLETS) for line in lines) / len(lines) > self.max_bullet_lines_ratio:
            return "bullet_lines"
        if sum(line.endswith(ELLIPSES) for line in lines) / len(lines) > self.max_ellipsis_lines_ratio:
            return "ellipsis_lines"
        if sum(any(c.isalpha() for c in t) for t in tokens) / len(tokens) < self.min_alpha_words_ratio:
            return "non_alpha_words"
        if sum(w.lower() in STOP_WORDS for w in bare) < self.min_stop_words:
            return "too_few_stop_words"
        return None


def duplicate_fractions(items: Sequence[str]) -> tuple[float, float]:
    """(fraction of items that repeat an earlier one, fraction of characters in those repeats)."""
    seen: set[str] = set()
    dup_items = dup_chars = 0
    for item in items:
        if item in seen:
            dup_items += 1
            dup_chars += len(item)
        seen.add(item)
    total_chars = sum(map(len, items))
    return (dup_items / len(items) if items else 0.0, dup_chars / total_chars if total_chars else 0.0)


def top_ngram_fraction(tokens: Sequence[str], n: int) -> float:
    """Characters in all occurrences of the most frequent repeated n-gram / characters in all words."""
    counts = Counter(ngrams(tokens, n))
    total = sum(map(len, tokens))
    if not counts or not total:
        return 0.0
    gram, count = counts.most_common(1)[0]
    return sum(map(len, gram)) * count / total if count > 1 else 0.0


def duplicated_ngram_fraction(tokens: Sequence[str], n: int) -> float:
    """Characters of words covered by any n-gram occurring more than once / characters in all words.

    Overlapping occurrences cover each word once, so the fraction is at most 1.
    """
    total = sum(map(len, tokens))
    if len(tokens) < n or not total:
        return 0.0
    grams = ngrams(tokens, n)
    counts = Counter(grams)
    covered = [False] * len(tokens)
    for i, gram in enumerate(grams):
        if counts[gram] > 1:
            covered[i : i + n] = [True] * n
    return sum(len(t) for t, c in zip(tokens, covered, strict=True) if c) / total


class GopherRepetitionFilter(Filter):
    """Drops documents with repeated lines, paragraphs or n-grams (boilerplate, spam, logs)."""

    name = "gopher_repetition"

    def __init__(
        self,
        max_dup_line_fraction: float = 0.3,
        max_dup_para_fraction: float = 0.3,
        max_dup_line_char_fraction: float = 0.2,
        max_dup_para_char_fraction: float = 0.2,
        top_ngrams: dict[int, float] | None = None,
        dup_ngrams: dict[int, float] | None = None,
    ) -> None:
        super().__init__()
        self.max_dup_line_fraction = max_dup_line_fraction
        self.max_dup_para_fraction = max_dup_para_fraction
        self.max_dup_line_char_fraction = max_dup_line_char_fraction
        self.max_dup_para_char_fraction = max_dup_para_char_fraction
        # n → limit; a recipe's TOML table spells n as a string key ({"2" = 0.2})
        self.top_ngrams = TOP_NGRAMS if top_ngrams is None else {int(n): v for n, v in top_ngrams.items()}
        self.dup_ngrams = DUP_NGRAMS if dup_ngrams is None else {int(n): v for n, v in dup_ngrams.items()}

    def check(self, doc: Document) -> str | None:
        paragraphs = [p.strip() for p in re.split(r"\n{2,}", doc.text) if p.strip()]
        frac, chars = duplicate_fractions(paragraphs)
        if frac > self.max_dup_para_fraction:
            return "dup_para_fraction"
        if chars > self.max_dup_para_char_fraction:
            return "dup_para_char_fraction"
        lines = [line.strip() for line in doc.text.splitlines() if line.strip()]
        frac, chars = duplicate_fractions(lines)
        if frac > self.max_dup_line_fraction:
            return "dup_line_fraction"
        if chars > self.max_dup_line_char_fraction:
            return "dup_line_char_fraction"
        tokens = words(doc.text)
        for n, limit in sorted(self.top_ngrams.items()):
            if top_ngram_fraction(tokens, n) > limit:
                return f"top_{n}gram_fraction"
        for n, limit in sorted(self.dup_ngrams.items()):
            if duplicated_ngram_fraction(tokens, n) > limit:
                return f"dup_{n}gram_fraction"
        return None
