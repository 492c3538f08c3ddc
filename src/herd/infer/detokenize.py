"""Incremental detokenization with stop strings, for streaming output.

Decoding one token at a time is wrong for two reasons: a character may span
several byte-level tokens (emoji, CJK), and SentencePiece drops the leading
space of the first piece it decodes. So each step decodes a short window of
recent ids twice, without and with the new token, and emits the difference;
the window starts a few tokens back (in the prompt, at first) so spaces
survive, and nothing is emitted while the text ends in an incomplete UTF-8
sequence (U+FFFD).

Stop strings: text that could still grow into a stop string is held back;
when one appears, the text before it is emitted and the stream stops, so a
stop string never reaches the output even when it spans several tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

from herd.tokenizer.base import Tokenizer

# Prompt ids kept as left context so the first generated piece decodes with its leading space.
CONTEXT_IDS = 4
REPLACEMENT = "\ufffd"


class TextStream:
    """Text deltas of a growing token sequence; ``text`` is everything emitted so far."""

    def __init__(self, tokenizer: Tokenizer, prompt_ids: Sequence[int], stop: Sequence[str] = ()) -> None:
        self.tokenizer = tokenizer
        self.stop = [s for s in stop if s]
        self.ids = list(prompt_ids[-CONTEXT_IDS:])
        self.prefix_offset = 0
        self.read_offset = len(self.ids)
        self.pending = ""
        self.text = ""
        self.stopped = False

    def _new_text(self) -> str:
        decode = self.tokenizer.decode
        before = decode(self.ids[self.prefix_offset : self.read_offset])
        after = decode(self.ids[self.prefix_offset :])
        if after.endswith(REPLACEMENT) or len(after) <= len(before):
            return ""
        self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
        return after[len(before) :]

    def push(self, token_id: int) -> str:
        """Add one token; return the text that is now certain. Sets ``stopped`` on a stop string."""
        self.ids.append(token_id)
        self.pending += self._new_text()
        return self._release(final=False)

    def finish(self) -> str:
        """Flush what was held back (an incomplete character decodes as U+FFFD)."""
        if not self.stopped and self.read_offset < len(self.ids):
            tail = self.tokenizer.decode(self.ids[self.prefix_offset :])
            before = self.tokenizer.decode(self.ids[self.prefix_offset : self.read_offset])
            self.pending += tail[len(before) :]
            self.read_offset = len(self.ids)
        return self._release(final=True)

    def _release(self, final: bool) -> str:
        if self.stopped:
            return ""
        cut = min((i for i in (self.pending.find(s) for s in self.stop) if i >= 0), default=-1)
        if cut >= 0:
            out, self.pending, self.stopped = self.pending[:cut], "", True
        else:
            keep = 0 if final else _held_back(self.pending, self.stop)
            out = self.pending[: len(self.pending) - keep]
            self.pending = self.pending[len(out) :]
        self.text += out
        return out


def _held_back(text: str, stops: Sequence[str]) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of some stop string."""
    best = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:n]):
                best = n
                break
    return best
