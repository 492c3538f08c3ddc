"""Executors run a :class:`~herd.data.pipeline.Pipeline` over shards: locally or on Ray.

Both also run arbitrary jobs (:meth:`Executor.map`), which is how the stages of
global MinHash dedup (:mod:`herd.data.dedup.global_minhash`) are spread over the
same workers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from herd.data.stats import StepStats

T = TypeVar("T")


class Executor(Protocol):
    """What :class:`~herd.data.executor.local.LocalExecutor` and the Ray executor have in common."""

    def run(self) -> list[StepStats]:
        """Run every unfinished shard of the pipeline; the merged stats of all shards."""

    def map(self, fn: Callable[..., T], jobs: Sequence[tuple[Any, ...]]) -> list[T]:
        """``fn(*job)`` for every job, results in job order (``fn`` must pickle: top level or bound)."""
