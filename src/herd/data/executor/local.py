"""Local multiprocessing executor with per-shard completion markers (resumable)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from herd.data.executor import Executor, T
from herd.data.pipeline import Pipeline


class LocalExecutor(Executor):
    """Runs the shards (or the jobs of :meth:`map`) on ``workers`` spawned processes (1: in this process)."""

    def __init__(
        self,
        pipeline: Pipeline,
        inputs: Sequence[Path],
        output_dir: str | Path,
        tasks: int | None = None,
        workers: int = 1,
    ) -> None:
        super().__init__(pipeline, inputs, output_dir, tasks)
        self.workers = workers

    def map(self, fn: Callable[..., T], jobs: Sequence[tuple[Any, ...]]) -> list[T]:
        """``fn(*job)`` for every job on up to ``workers`` spawned processes; results in job order."""
        if self.workers <= 1 or len(jobs) <= 1:
            return [fn(*job) for job in jobs]
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(self.workers, len(jobs)), mp_context=context) as pool:
            futures = [pool.submit(fn, *job) for job in jobs]
            return [f.result() for f in futures]
