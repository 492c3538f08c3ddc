"""Ray executor: the same shards, tasks and markers as the local executor, on a Ray cluster.

``address=None`` starts (or joins) a local Ray instance, as the tests do; pass
a cluster address (``"auto"``, ``"ray://host:10001"``) for real runs. The output
directory must be visible to every node (shared or network file system).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from herd.data.errors import DataInputError
from herd.data.executor import Executor, T
from herd.data.pipeline import Pipeline


class RayExecutor(Executor):
    """Runs each shard (or job of :meth:`map`) as one Ray task with ``cpus_per_task`` CPUs."""

    def __init__(
        self,
        pipeline: Pipeline,
        inputs: Sequence[Path],
        output_dir: str | Path,
        tasks: int | None = None,
        address: str | None = None,
        cpus_per_task: float = 1.0,
    ) -> None:
        super().__init__(pipeline, inputs, output_dir, tasks)
        self.address = address
        self.cpus_per_task = cpus_per_task

    def map(self, fn: Callable[..., T], jobs: Sequence[tuple[Any, ...]]) -> list[T]:
        """``fn(*job)`` for every job as Ray tasks (``fn`` is put in the object store once); results in order."""
        try:
            import ray
        except ImportError:
            raise DataInputError("the Ray executor needs ray: pip install 'ray[default]'") from None
        if not ray.is_initialized():
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
        call = ray.remote(num_cpus=self.cpus_per_task)(_call)
        shared = ray.put(fn)
        return ray.get([call.remote(shared, *job) for job in jobs])


def _call(fn: Callable[..., T], *args: Any) -> T:
    return fn(*args)
