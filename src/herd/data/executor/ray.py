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
from herd.data.executor import T
from herd.data.pipeline import Pipeline, shard
from herd.data.stats import StepStats, merge_stats


class RayExecutor:
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
        self.pipeline = pipeline
        self.shards = shard(list(inputs), tasks or max(1, len(inputs)))
        self.output_dir = Path(output_dir).resolve()
        self.address = address
        self.cpus_per_task = cpus_per_task

    def run(self) -> list[StepStats]:
        """Run every unfinished shard on Ray; the merged stats of all shards."""
        jobs = [
            ([str(f) for f in files], rank, str(self.output_dir)) for rank, files in enumerate(self.shards)
        ]
        return merge_stats(self.map(self.pipeline.run_task, jobs))

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
