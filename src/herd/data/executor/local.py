"""Local multiprocessing executor with per-shard completion markers (resumable).

Ctrl-C ends a multi-worker run cleanly: the workers ignore SIGINT (a terminal
sends it to the whole process group, and a worker would otherwise print its
own ``KeyboardInterrupt`` traceback), the parent, which does receive it, at
any moment, pool start-up included, terminates them, and a worker told to terminate discards the
shard it was writing (no temporary file is left) before it exits quietly.
The interrupt then reaches the command line as usual (exit 130). The workers
also share the build's progress counters (:mod:`herd.data.progress`), which
only the pool's initializer can hand to a spawned process.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from herd.data import progress
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
        """``fn(*job)`` for every job on up to ``workers`` spawned processes; results in job order.

        The first job that fails (or an interrupt) terminates the other workers and is raised here.
        """
        if self.workers <= 1 or len(jobs) <= 1:
            return [fn(*job) for job in jobs]
        context = multiprocessing.get_context("spawn")
        # SIGINT is blocked, not ignored, while the workers start: they inherit the mask, so an
        # interrupt before their setup waits and is then ignored there, while the parent's waits
        # and is raised here once the pool exists, which the handler below then terminates.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            pool = context.Pool(
                min(self.workers, len(jobs)), initializer=_worker_setup, initargs=(progress.shared(),)
            )
        except BaseException:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            raise
        try:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            pending = [pool.apply_async(fn, job) for job in jobs]
            results = [p.get() for p in pending]
        except BaseException:
            pool.terminate()
            raise
        finally:
            pool.close()
            pool.join()
        return results


def _worker_setup(counters: Any) -> None:
    """In each worker: ignore SIGINT (the parent decides), exit through cleanup on SIGTERM, count progress."""
    progress.share(counters)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # a pending Ctrl-C is now ignored
    signal.signal(signal.SIGTERM, _exit_on_terminate)


def _exit_on_terminate(signum: int, frame: FrameType | None) -> None:
    """``Pool.terminate``'s SIGTERM: unwind (writers discard their temporary files), then exit quietly."""
    raise SystemExit(1)
