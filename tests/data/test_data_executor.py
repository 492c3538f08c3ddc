"""Executors: sharding, completion markers, resume after SIGKILL byte-identical (docs/data.md)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from herd.data.executor.local import LocalExecutor
from herd.data.io.jsonl import JsonlReader
from herd.data.pipeline import Pipeline

SCRIPT = """
import sys, time
from herd.data.document import Document
from herd.data.executor.local import LocalExecutor
from herd.data.io.jsonl import JsonlReader
from herd.data.pipeline import Pipeline, expand_inputs
from herd.data.step import Step


class SlowUpper(Step):
    name = "slow_upper"

    def process(self, doc: Document) -> Document | str:
        time.sleep(0.002)
        if int(doc.id.rsplit("/", 1)[-1]) % 7 == 0:
            return "multiple_of_seven"
        doc.text = doc.text.upper()
        return doc


if __name__ == "__main__":
    pipeline = Pipeline(JsonlReader(), [SlowUpper()], exclusions=True)
    inputs = expand_inputs([sys.argv[1]])
    LocalExecutor(pipeline, inputs, sys.argv[2], tasks=8, workers=int(sys.argv[3])).run()
"""


def _inputs(root: Path) -> Path:
    src = root / "in"
    src.mkdir()
    for f in range(8):
        (src / f"{f}.jsonl").write_text(
            "".join(json.dumps({"text": f"doc {f} {i}"}) + "\n" for i in range(60))
        )
    return src


def _run(script: Path, src: Path, out: Path, workers: int = 1, kill_at_marker: int | None = None) -> int:
    """Run the job; with ``kill_at_marker=k``, SIGKILL it a moment after its k-th shard marker appears."""
    proc = subprocess.Popen(
        [sys.executable, str(script), str(src), str(out), str(workers)], start_new_session=True
    )
    if kill_at_marker is None:
        return proc.wait(timeout=120)
    while proc.poll() is None and len(list((out / ".done").glob("*.json"))) < kill_at_marker:
        time.sleep(0.005)
    time.sleep(0.003 * kill_at_marker)
    if proc.poll() is not None:
        return proc.returncode
    os.killpg(proc.pid, signal.SIGKILL)  # the run and any workers, mid-shard
    proc.wait()
    return -9


def _data_files(out: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and ".done" not in p.parts
    }


@pytest.mark.slow
def test_resume_after_kill_is_byte_identical(tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    src = _inputs(tmp_path)
    assert _run(script, src, tmp_path / "clean") == 0
    clean = _data_files(tmp_path / "clean")
    assert len(clean) == 16

    out = tmp_path / "killed"
    kills = [_run(script, src, out, kill_at_marker=k) for k in (1, 3, 5)]
    assert -9 in kills, "the job finished before it could be killed"
    assert _run(script, src, out, workers=2) == 0
    assert _data_files(out) == clean
    assert not list(out.rglob("*.tmp"))


def test_rerun_skips_finished_shards(tmp_path: Path) -> None:
    from herd.data.io.jsonl import JsonlReader
    from herd.data.pipeline import Pipeline, expand_inputs

    src = _inputs(tmp_path)
    inputs = expand_inputs([src])
    first = LocalExecutor(Pipeline(JsonlReader()), inputs, tmp_path / "o", tasks=3).run()
    assert first[0].kept == 480
    marker = tmp_path / "o" / ".done" / "00001.json"
    before = marker.stat().st_mtime_ns
    (tmp_path / "o" / ".done" / "00002.json").unlink()
    time.sleep(0.01)
    again = LocalExecutor(Pipeline(JsonlReader()), inputs, tmp_path / "o", tasks=3).run()
    assert marker.stat().st_mtime_ns == before
    assert again[0].kept == 480


UNIMPORTABLE_IN_WORKERS = """
import multiprocessing

if multiprocessing.parent_process() is not None:
    raise ImportError("this module refuses to load in a worker")


def job(n):
    return n
"""


@pytest.mark.parametrize("death", ["exit", "unpickle"])
def test_a_worker_that_dies_is_one_error_not_a_wait_for_ever(
    death: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker gone without an answer (a crash, the OOM killer, a job its process cannot load) ends the map
    with one error naming how it ended; multiprocessing.Pool would replace it and wait for its job for ever."""
    import threading

    from herd.errors import HerdError

    if death == "exit":
        fn, expected = os._exit, "a worker process of the local executor died (exit code 3)"
    else:
        (tmp_path / "refuses_workers.py").write_text(UNIMPORTABLE_IN_WORKERS)
        monkeypatch.syspath_prepend(str(tmp_path))
        import refuses_workers

        fn, expected = refuses_workers.job, "a worker process of the local executor died"
    executor = LocalExecutor(Pipeline(JsonlReader(), []), [], tmp_path / "out", workers=2)
    outcome: list[BaseException | list[object]] = []

    def run() -> None:
        try:
            outcome.append(executor.map(fn, [(3,), (3,)]))
        except BaseException as e:
            outcome.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(120)
    assert not thread.is_alive(), "the map is still waiting for a dead worker"
    assert isinstance(outcome[0], HerdError), outcome
    assert str(outcome[0]).startswith(expected), outcome[0]
    assert "run the same command again to resume" in str(outcome[0])
