"""The Ray executor produces the same bytes as the local one (docs/data.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from herd.data.executor.local import LocalExecutor
from herd.data.filters.gopher import GopherRepetitionFilter
from herd.data.io.jsonl import JsonlReader
from herd.data.pipeline import Pipeline, expand_inputs


@pytest.mark.slow
def test_ray_matches_local(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    from herd.data.executor.ray import RayExecutor

    src = tmp_path / "in"
    src.mkdir()
    for f in range(4):
        lines = [json.dumps({"text": f"line {i % (f + 2)}\n" * 3 + f"unique {f} {i}"}) for i in range(30)]
        (src / f"{f}.jsonl").write_text("\n".join(lines) + "\n")
    inputs = expand_inputs([src])
    pipeline = Pipeline(JsonlReader(), [GopherRepetitionFilter()], exclusions=True)
    local = LocalExecutor(pipeline, inputs, tmp_path / "local", tasks=4).run()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = RayExecutor(pipeline, inputs, tmp_path / "ray", tasks=4).run()
    finally:
        ray.shutdown()

    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.gz"))}

    assert files(tmp_path / "local") == files(tmp_path / "ray") and len(files(tmp_path / "local")) == 8
    assert [s.dropped for s in local] == [s.dropped for s in remote]
