"""Token-distribution KL divergence against the corpus (Llama 3 §3.1.1).

Llama 3 drops documents "containing excessive numbers of outlier tokens
compared to the training corpus distribution". herd scores
``KL(p_doc || q_corpus)`` over lower-cased word tokens, with the corpus
distribution add-one smoothed, and drops documents above ``max_kl`` nats. The
paper gives no threshold; the default 6.0 is herd's choice (tune on held-out data).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

from herd.data.document import Document
from herd.data.step import Filter


def _tokens(text: str) -> list[str]:
    return text.lower().split()


class TokenKLFilter(Filter):
    """Drops documents whose token distribution diverges from the reference corpus."""

    name = "token_kl"

    def __init__(self, reference: Counter[str] | None = None, max_kl: float = 6.0) -> None:
        super().__init__()
        self.reference: Counter[str] = Counter(reference or {})
        self.max_kl = max_kl

    def fit(self, texts: Iterable[str]) -> TokenKLFilter:
        """Add ``texts`` to the reference distribution and return self."""
        for text in texts:
            self.reference.update(_tokens(text))
        return self

    def divergence(self, text: str) -> float:
        """``KL(p_text || q)`` in nats, q add-one smoothed over the reference vocabulary plus unseen tokens."""
        counts = Counter(_tokens(text))
        n = sum(counts.values())
        if not n:
            return 0.0
        vocabulary = len(self.reference) + len(set(counts) - set(self.reference))
        denominator = sum(self.reference.values()) + vocabulary
        return sum(
            c / n * math.log((c / n) / ((self.reference[t] + 1) / denominator)) for t, c in counts.items()
        )

    def check(self, doc: Document) -> str | None:
        kl = self.divergence(doc.text)
        doc.metadata["token_kl"] = round(kl, 4)
        return "token_kl" if kl > self.max_kl else None
