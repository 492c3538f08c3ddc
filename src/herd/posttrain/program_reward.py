"""Rewards a program computes from a response's text, for PPO without a trained reward model.

Llama 2 §3.2.3 scores each response with its helpfulness and safety reward
models. A reward that a program checks (a length, a required word) has no
model error for the policy to exploit and a known optimum, so a run against it
shows whether PPO's machinery learns at all, in minutes and without training
a reward model first (beyond the papers). ``herd ppo`` takes one as
``reward_program`` (:class:`herd.posttrain.ppo.PPOConfig`), written
``KIND:ARGUMENT`` and read by :func:`parse_program_reward`:

- ``length:N`` — :class:`TargetLength`: 1 at N words, falling by 1/N per word away from it;
- ``word:W`` — :class:`RequiredWord`: +1 when W appears as a whole word (any case), else −1.

Each scorer is called with the prompt's messages and the decoded response
(without its end-of-turn token, stripped), as a reward model would read them.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from herd.errors import ConfigError
from herd.posttrain.data import Message

#: How words are counted: runs of anything but whitespace.
_WORD = re.compile(r"\S+")


class ProgramReward(Protocol):
    """A scorer: the prompt's ``messages`` and the decoded ``response`` in, one float out (higher is better)."""

    def __call__(self, messages: Sequence[Message], response: str) -> float: ...


@dataclass(frozen=True)
class TargetLength:
    """``1 − |n − words| / words`` for a response of ``n`` whitespace-separated words.

    1 at the target, 0 for an empty response or one twice as long, falling
    linearly on both sides, so every word nearer the target is worth the same.
    """

    words: int = 20

    def __post_init__(self) -> None:
        if self.words < 1:
            raise ConfigError(f"reward_program: length needs a target of at least 1 word, got {self.words}")

    def __call__(self, messages: Sequence[Message], response: str) -> float:
        return 1.0 - abs(len(_WORD.findall(response)) - self.words) / self.words


@dataclass(frozen=True)
class RequiredWord:
    """+1 when ``word`` appears in the response as a whole word (any case), else −1."""

    word: str = "please"

    def __post_init__(self) -> None:
        if _WORD.fullmatch(self.word) is None:
            raise ConfigError(f"reward_program: word:W needs W, one word without spaces, got {self.word!r}")

    def __call__(self, messages: Sequence[Message], response: str) -> float:
        found = re.search(rf"(?<!\w){re.escape(self.word)}(?!\w)", response, re.IGNORECASE)
        return 1.0 if found else -1.0


def _length(argument: str) -> TargetLength:
    """``length:N``: N must be a positive integer word count."""
    if not argument.isdigit():
        raise ConfigError(f"reward_program: length:N needs N, a positive number of words, got {argument!r}")
    return TargetLength(words=int(argument))


#: The kinds ``reward_program`` names, each with the parser of its argument.
KINDS: dict[str, Callable[[str], ProgramReward]] = {
    "length": _length,
    "word": lambda argument: RequiredWord(word=argument),
}


def parse_program_reward(spec: str) -> ProgramReward:
    """The scorer ``spec`` (``KIND:ARGUMENT``, e.g. ``length:20`` or ``word:please``) names.

    An unknown kind or a bad argument raises a one-line :class:`ConfigError`
    naming the key, with the nearest known kind when one is close.
    """
    kind, sep, argument = spec.partition(":")
    kind = kind.strip()
    if kind not in KINDS:
        close = difflib.get_close_matches(kind, KINDS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"reward_program: unknown kind {kind!r} in {spec!r} (expected {', '.join(KINDS)} as KIND:ARGUMENT){hint}"
        )
    if not sep:
        raise ConfigError(f"reward_program: {spec!r} needs an argument ({kind}:ARGUMENT)")
    return KINDS[kind](argument.strip())
