"""Local multiprocessing executor with per-shard completion markers (resumable)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from herd.data.executor import T
from herd.data.pipeline import Pipeline, shard
from herd.data.stats import StepStats, merge_stats


class LocalExecutor:
    """Runs ``tasks`` shards of ``inputs`` on ``workers`` processes (1: in this process).

    Shard ``rank`` holds ``inputs[rank::tasks]``. Finished shards (marker
    present) are skipped, so rerunning after a crash or a kill finishes the job
    with the same bytes as an uninterrupted run.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        inputs: Sequence[Path],
        output_dir: str | Path,
        tasks: int | None = None,
        workers: int = 1,
    ) -> None:
        self.pipeline = pipeline
        self.shards = shard(list(inputs), tasks or max(1, len(inputs)))
        self.output_dir = Path(output_dir)
        self.workers = workers

    def run(self) -> list[StepStats]:
        """Run every unfinished shard; the merged stats of all shards."""
        jobs = [(files, rank, self.output_dir) for rank, files in enumerate(self.shards)]
        return merge_stats(self.map(self.pipeline.run_task, jobs))

    def map(self, fn: Callable[..., T], jobs: Sequence[tuple[Any, ...]]) -> list[T]:
        """``fn(*job)`` for every job on up to ``workers`` spawned processes; results in job order."""
        if self.workers <= 1 or len(jobs) <= 1:
            return [fn(*job) for job in jobs]
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(self.workers, len(jobs)), mp_context=context) as pool:
            futures = [pool.submit(fn, *job) for job in jobs]
            return [f.result() for f in futures]
