"""Local multiprocessing executor with per-shard completion markers (resumable).

Ctrl-C ends a multi-worker run cleanly: the workers ignore SIGINT (a terminal
sends it to the whole process group, and a worker would otherwise print its
own ``KeyboardInterrupt`` traceback), the parent, which does receive it, at
any moment, pool start-up included, terminates them, and a worker told to terminate discards the
shard it was writing (no temporary file is left) before it exits quietly.
The interrupt then reaches the command line as usual (exit 130). The workers
also share the build's progress counters (:mod:`herd.data.progress`), which
only the pool's initializer can hand to a spawned process.

A worker that dies without an answer (killed by the kernel's out-of-memory
killer, a crash in native code, a job its process cannot even unpickle) ends
the build with one error naming the exit, never a wait for ever: the pool is
:class:`concurrent.futures.ProcessPoolExecutor`, which notices a vanished
worker, where :class:`multiprocessing.pool.Pool` quietly replaces it and loses
its job. Finished shards keep their markers, so running the command again
resumes.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.process
import signal
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from types import FrameType
from typing import Any

from herd.data import progress
from herd.data.executor import Executor, T
from herd.data.pipeline import Pipeline
from herd.errors import HerdError


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
        # SIGINT is blocked, not ignored, while the workers start (on the first submissions): they
        # inherit the mask, so an interrupt before their setup waits and is then ignored there,
        # while the parent's waits and is raised here once the pool exists, which terminates it.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            pool = ProcessPoolExecutor(
                min(self.workers, len(jobs)),
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_setup,
                initargs=(progress.shared(),),
            )
        except BaseException:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            raise
        workers: list[multiprocessing.process.BaseProcess] = []
        try:
            try:
                pending = [pool.submit(fn, *job) for job in jobs]
                workers = _processes(pool)  # all started by now; the pool forgets them once one dies
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            results = [p.result() for p in pending]
        except BrokenProcessPool:
            _terminate(pool, workers)
            raise HerdError(f"{_dead_workers(workers)}; {RESUME_HINT}") from None
        except BaseException:
            _terminate(pool, workers)
            raise
        pool.shutdown(wait=True)
        return results


TERMINATED = 128 + signal.SIGTERM
RESUME_HINT = "the shards finished so far are kept: run the same command again to resume"


def _dead_workers(workers: list[multiprocessing.process.BaseProcess]) -> str:
    """How the workers that died ended: exit codes and signals (SIGTERM is the pool stopping the others)."""
    stopped = (None, 0, -signal.SIGTERM, TERMINATED)
    ends = sorted({_ending(w.exitcode) for w in workers if w.exitcode not in stopped})
    return "a worker process of the local executor died" + (f" ({', '.join(ends)})" if ends else "")


def _ending(exitcode: int) -> str:
    """``exit code 3`` or ``killed by SIGKILL`` (SIGKILL: often the kernel's out-of-memory killer)."""
    if exitcode < 0:
        name = signal.Signals(-exitcode).name
        return f"killed by {name}" + (": out of memory?" if name == "SIGKILL" else "")
    return f"exit code {exitcode}"


def _processes(pool: ProcessPoolExecutor) -> list[multiprocessing.process.BaseProcess]:
    """The pool's worker processes (``_processes`` is the only handle the standard library gives)."""
    return list((getattr(pool, "_processes", None) or {}).values())


def _terminate(pool: ProcessPoolExecutor, workers: list[multiprocessing.process.BaseProcess]) -> None:
    """Stop the workers (SIGTERM: each discards the shard it was writing) and wait for them to go."""
    for worker in workers:
        if worker.is_alive():
            worker.terminate()
    pool.shutdown(wait=True, cancel_futures=True)
    for worker in workers:
        worker.join()


def _worker_setup(counters: Any) -> None:
    """In each worker: ignore SIGINT (the parent decides), exit through cleanup on SIGTERM, count progress."""
    progress.share(counters)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # a pending Ctrl-C is now ignored
    signal.signal(signal.SIGTERM, _exit_on_terminate)


def _exit_on_terminate(signum: int, frame: FrameType | None) -> None:
    """``Pool.terminate``'s SIGTERM: unwind (writers discard their temporary files), then exit quietly
    with the shell's code for it, which tells a stopped worker from one that failed on its own."""
    raise SystemExit(TERMINATED)
