"""Executors run a :class:`~herd.data.pipeline.Pipeline` over shards: locally or on Ray.

Both also run arbitrary jobs (:meth:`Executor.map`), which is how the stages of
global MinHash dedup (:mod:`herd.data.dedup.global_minhash`) are spread over the
same workers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from herd.data.pipeline import Pipeline, shard
from herd.data.stats import StepStats, merge_stats
from herd.io.atomic import remove_stale_temporaries

T = TypeVar("T")
# Where ``herd data build --executor`` runs a source's tasks: this machine's processes, or a Ray cluster.
EXECUTORS = ("local", "ray")


class Executor:
    """Runs ``tasks`` shards of ``inputs`` (shard ``rank`` holds ``inputs[rank::tasks]``) through :meth:`map`.

    Finished shards (marker present) are skipped, so rerunning after a crash or
    a kill finishes the job with the same bytes as an uninterrupted run.
    Subclasses say where the jobs run by implementing :meth:`map`.
    """

    def __init__(
        self, pipeline: Pipeline, inputs: Sequence[Path], output_dir: str | Path, tasks: int | None = None
    ) -> None:
        self.pipeline = pipeline
        self.shards = shard(list(inputs), tasks or max(1, len(inputs)))
        # Absolute, so that workers started elsewhere (other processes, Ray nodes) write to the same place.
        self.output_dir = Path(output_dir).resolve()

    def run(self) -> list[StepStats]:
        """Run every unfinished shard; the merged stats of all shards.

        The staging files a killed run's processes left are removed first
        (those of processes still alive, or of other hosts, are left alone:
        another job may be writing there).
        """
        remove_stale_temporaries(self.output_dir, recursive=True)
        jobs = [(files, rank, self.output_dir) for rank, files in enumerate(self.shards)]
        return merge_stats(self.map(self.pipeline.run_task, jobs))

    def map(self, fn: Callable[..., T], jobs: Sequence[tuple[Any, ...]]) -> list[T]:
        """``fn(*job)`` for every job, results in job order (``fn`` must pickle: top level or bound)."""
        raise NotImplementedError
