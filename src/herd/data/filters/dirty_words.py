""" "Dirty word" counting to drop adult content (Llama 3 §3.1.1).

Llama 3 does not publish its list or threshold. herd ships a short default
English list and drops a document when listed words make up more than
``max_fraction`` of its words (default 1%) or occur more than ``max_count``
times; pass ``words`` or ``words_file`` (one word or phrase per line) to use a
fuller list such as a per-language block list.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import regex

from herd.data.document import Document
from herd.data.errors import DataInputError
from herd.data.step import Filter

DEFAULT_WORDS = ("porn", "porno", "xxx", "sex", "nude", "nudes", "fuck", "fucking", "cunt", "pussy", "dick", "cock", "slut", "whore", "milf", "hentai", "camgirl", "blowjob")  # fmt: skip


class DirtyWordFilter(Filter):
    """Drops documents dense in listed words (whole-word, case-insensitive matches)."""

    name = "dirty_words"

    def __init__(
        self,
        words: Iterable[str] | None = None,
        words_file: str | Path | None = None,
        max_fraction: float = 0.01,
        max_count: int | None = None,
    ) -> None:
        super().__init__()
        vocabulary = list(words if words is not None else DEFAULT_WORDS)
        if words_file is not None:
            try:
                vocabulary += [
                    w.strip() for w in Path(words_file).read_text("utf-8").splitlines() if w.strip()
                ]
            except (OSError, UnicodeDecodeError) as exc:
                raise DataInputError(f"{words_file}: cannot read the dirty-word list ({exc})") from None
        alternatives = "|".join(
            regex.escape(w.lower()) for w in sorted(set(vocabulary), key=len, reverse=True)
        )
        self.pattern = regex.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", regex.I)
        self.max_fraction = max_fraction
        self.max_count = max_count

    def check(self, doc: Document) -> str | None:
        hits = len(self.pattern.findall(doc.text))
        total = len(doc.text.split())
        doc.metadata["dirty_words"] = hits
        if self.max_count is not None and hits > self.max_count:
            return "dirty_word_count"
        if total and hits / total > self.max_fraction:
            return "dirty_word_fraction"
        return None
