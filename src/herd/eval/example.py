"""What an evaluation task hands the scorer: one multiple-choice question, already rendered to text.

A task (:mod:`herd.eval.tasks`) turns dataset rows into :class:`Choice` examples:
the few-shot prompt and the question as ``context`` and every answer as a
``continuation``, exactly as lm-evaluation-harness builds its log-likelihood
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

    def __post_init__(self) -> None:
        if not self.continuations:
            raise ValueError(f"{self.id}: a question needs at least one answer")
        if not 0 <= self.gold < len(self.continuations):
            raise ValueError(f"{self.id}: gold {self.gold} is not one of the {len(self.continuations)} answers")
