"""C4's cleaning rules (Raffel et al. 2020 §2.2), used for Llama 1's C4 share (Llama 1 §2.1).

Line rules: keep only lines ending in terminal punctuation, with at least 3
words, without "javascript" and without cookie/policy boilerplate. Page rules:
drop pages containing "lorem ipsum" or a curly bracket, and pages left with
fewer than 5 sentences.
"""

from __future__ import annotations

from herd.data.document import Document
from herd.data.step import Step
from herd.data.text import count_sentences, words

TERMINAL_PUNCTUATION = (".", "!", "?", '"', "'", "”", "’")
POLICY_PHRASES = (
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
)


class C4Filter(Step):
    """Removes lines that fail C4's line rules, then drops pages that fail its page rules."""

    name = "c4"

    def __init__(
        self,
        min_words_per_line: int = 3,
        min_sentences: int = 5,
        max_word_length: int = 1000,
        drop_javascript: bool = True,
        drop_policy: bool = True,
        drop_lorem_ipsum: bool = True,
        drop_curly_bracket: bool = True,
    ) -> None:
        super().__init__()
        self.min_words_per_line = min_words_per_line
        self.min_sentences = min_sentences
        self.max_word_length = max_word_length
        self.drop_javascript = drop_javascript
        self.drop_policy = drop_policy
        self.drop_lorem_ipsum = drop_lorem_ipsum
        self.drop_curly_bracket = drop_curly_bracket

    def keep_line(self, line: str) -> bool:
        """Whether one (stripped) line passes C4's line rules."""
        tokens = words(line)
        if not line.endswith(TERMINAL_PUNCTUATION) or len(tokens) < self.min_words_per_line:
            return False
        if any(len(t) > self.max_word_length for t in tokens):
            return False
        lower = line.lower()
        if self.drop_javascript and "javascript" in lower:
            return False
        return not (self.drop_policy and any(p in lower for p in POLICY_PHRASES))

    def process(self, doc: Document) -> Document | str:
        lower = doc.text.lower()
        if self.drop_lorem_ipsum and "lorem ipsum" in lower:
            return "lorem_ipsum"
        if self.drop_curly_bracket and "{" in doc.text:
            return "curly_bracket"
        lines = [s for line in doc.text.splitlines() if self.keep_line(s := line.strip())]
        text = "\n".join(lines)
        if count_sentences(text) < self.min_sentences:
            return "too_few_sentences"
        doc.text = text
        return doc
