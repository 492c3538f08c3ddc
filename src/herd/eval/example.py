"""What an evaluation task hands the scorer: one multiple-choice question, already rendered to text.

A task (:mod:`herd.eval.tasks`) turns dataset rows into :class:`Choice` examples:
the few-shot prompt and the question as ``context`` (or one context per answer)
and every answer as a ``continuation``, exactly as lm-evaluation-harness builds its log-likelihood
requests (the answer starts with the target delimiter, " "). The scorer
(:mod:`herd.eval.loglikelihood`) needs nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Choice:
    """One multiple-choice question: the text before the answers, the answers (each starting with the
    target delimiter), the index of the correct one, and an id that names the dataset row."""

    id: str
    context: str
    continuations: tuple[str, ...]
    gold: int
    #: One context per answer, when the answers differ before the scored text (WinoGrande fills each
    #: option into the sentence and scores the rest of it: lm-eval's "multiple input" tasks); empty: the
    #: one ``context`` for every answer.
    contexts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.continuations:
            raise ValueError(f"{self.id}: a question needs at least one answer")
        if not 0 <= self.gold < len(self.continuations):
            raise ValueError(
                f"{self.id}: gold {self.gold} is not one of the {len(self.continuations)} answers"
            )
        if self.contexts and len(self.contexts) != len(self.continuations):
            raise ValueError(
                f"{self.id}: {len(self.contexts)} contexts for {len(self.continuations)} answers"
            )

    def context_of(self, answer: int) -> str:
        """The text before answer ``answer``: its own context when the question has one per answer."""
        return self.contexts[answer] if self.contexts else self.context
