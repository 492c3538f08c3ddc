"""What every evaluation task returns: its metrics, with their 95% intervals, and one record per example.

All task kinds (multiple choice, generation, code, perplexity, key retrieval)
hand :class:`TaskResult` to the reporting code (:mod:`herd.eval.report`), so the
JSON file, the markdown table and the bar chart need no knowledge of the kind.
A metric that is a proportion over examples (accuracy, exact match, pass@k)
carries the Llama 3 paper's 95% confidence interval (§5.1.1)
``1.96·sqrt(S(1−S)/N)``; one that is not (perplexity, bits per byte) carries
none. The per-example records (log-likelihoods, the gold answer's normalised
NLL, generations, test outcomes) are saved beside the scores, because the
scaling-law prediction (Llama 3 §3.2.1) fits the correct answer's NLL per
example.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from herd.errors import HerdError


def confidence_interval(score: float, n: int) -> float:
    """Half-width of the Llama 3 paper's 95% CI of a score ``S`` in [0, 1] over ``n`` examples: 1.96·sqrt(S(1−S)/N)."""
    if n < 1:
        raise HerdError(f"a confidence interval needs at least one example, got n={n}")
    if not 0.0 <= score <= 1.0:
        raise HerdError(f"score {score} is not in [0, 1]")
    return 1.96 * math.sqrt(score * (1.0 - score) / n)


@dataclass(frozen=True)
class Metric:
    """One score of a task: its value and its 95% CI half-width (None when the metric is not a proportion)."""

    name: str
    value: float
    ci: float | None = None

    @classmethod
    def proportion(cls, name: str, hits: Sequence[bool | float]) -> Metric:
        """The mean of per-example outcomes in [0, 1] (a hit, or an estimated pass@k), with its 95% CI."""
        if not hits:
            raise HerdError(f"metric {name!r} has no examples")
        value = sum(float(h) for h in hits) / len(hits)
        return cls(name, value, confidence_interval(value, len(hits)))


@dataclass(frozen=True)
class TaskResult:
    """A task's scores over ``n`` examples, the first metric being the one tables and charts show.

    ``examples`` are JSON-ready dicts, one per example, in the task's order;
    each has at least an ``id``.
    """

    task: str
    kind: str
    n: int
    metrics: tuple[Metric, ...]
    examples: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if not self.metrics:
            raise HerdError(f"task {self.task!r}: a result needs at least one metric")
        names = [m.name for m in self.metrics]
        if len(set(names)) != len(names):
            raise HerdError(f"task {self.task!r}: metric names repeat: {names}")

    @property
    def primary(self) -> Metric:
        """The headline metric (the first)."""
        return self.metrics[0]

    def metric(self, name: str) -> Metric:
        """The metric called ``name``."""
        for m in self.metrics:
            if m.name == name:
                return m
        raise HerdError(
            f"task {self.task!r} has no metric {name!r} (it has {[m.name for m in self.metrics]})"
        )

    def scores(self) -> dict[str, Any]:
        """The JSON form without the examples: task, kind, n and every metric with its CI."""
        return {
            "task": self.task,
            "kind": self.kind,
            "n": self.n,
            "metrics": {m.name: {"value": m.value, "ci95": m.ci} for m in self.metrics},
        }
