"""Global MinHash dedup across tasks (Llama 3 §3.1.1): clusters, recall, resume, executors, exclusions."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from herd.data.dedup.global_minhash import GlobalMinhash
from herd.data.dedup.minhash import jaccard, shingles
from herd.data.errors import DataInputError
from herd.data.io.jsonl import JsonlReader
from herd.data.recipe.build import build
from herd.data.recipe.config import RecipeConfig, SourceConfig, StepConfig

FILES = 3
CLUSTERS = 20
STEPS = (
    StepConfig("exact_dedup"),
    StepConfig("minhash_dedup"),
    StepConfig("dirty_words", {"words": ["forbidden"]}),
)


def _words(rng: np.random.Generator, count: int) -> list[str]:
    return [f"w{x}" for x in rng.integers(0, 10**12, size=count)]


def _edit(words: list[str], rng: np.random.Generator, positions: range | np.ndarray) -> str:
    """``words`` with the words at ``positions`` replaced by fresh ones, as text."""
    edited = list(words)
    for p, new in zip(positions, _words(rng, len(positions)), strict=True):
        edited[p] = new
    return " ".join(edited)


def _corpus(root: Path, seed: int = 0) -> dict[str, Any]:
    """Three JSONL files (one per task) in ``root/in``: 20 planted 3-member clusters (Jaccard ≥ 0.9; one
    member per file, or two in one file for every fourth), 20 pairs at Jaccard 0.5 across files, unique
    documents, three of them dense in "forbidden", and an exact copy of one inside its file."""
    rng = np.random.default_rng(seed)
    files: list[list[dict]] = [[] for _ in range(FILES)]
    clusters = []
    for c in range(CLUSTERS):
        base = _words(rng, 400)
        members = [f"c{c}m{m}" for m in range(3)]
        for m, name in enumerate(members):
            # two words edited per member, 10 apart or more: every pair of members stays above 0.9
            positions = rng.choice(np.arange(10, 390, 10), 2, replace=False)
            text = _edit(base, rng, positions) if m else " ".join(base)
            files[(c + m) % FILES if m < 2 or c % 4 else c % FILES].append({"id": name, "text": text})
        clusters.append(members)
    low = []
    for p in range(20):  # 60 words replaced 15 apart: 300 of 900 shingles differ, Jaccard 0.5
        words = _words(rng, 904)
        files[p % FILES].append({"id": f"p{p}a", "text": " ".join(words)})
        files[(p + 1) % FILES].append({"id": f"p{p}b", "text": _edit(words, rng, range(7, 900, 15))})
        low.append((f"p{p}a", f"p{p}b"))
    for u in range(30):
        words = _words(rng, 300) + (["forbidden"] * 10 if u < 3 else [])
        files[u % FILES].append({"id": f"u{u}", "text": " ".join(words)})
    (root / "in").mkdir()
    for number, records in enumerate(files):
        records = [records[i] for i in rng.permutation(len(records))]
        if number == 0:  # u27 is in file 0
            records.append({"id": "copy", "text": next(r["text"] for r in records if r["id"] == "u27")})
        (root / "in" / f"{number}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return {"clusters": clusters, "low": low}


def _recipe(
    root: Path, tasks: int = 3, workers: int = 1, steps: tuple[StepConfig, ...] = STEPS
) -> RecipeConfig:
    source = SourceConfig(name="web", reader="jsonl", inputs=("in/*.jsonl",), tasks=tasks, steps=steps)
    return RecipeConfig(name="t", sources=(source,), workers=workers, exclusions=True, base_dir=root)


def _ids(folder: Path) -> list[str]:
    return [d.id for d in JsonlReader().read_files(sorted(folder.glob("*.jsonl.gz")))]


def _stats(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """A manifest's per-step stats without the timings."""
    return [{k: v for k, v in s.items() if k != "seconds"} for s in manifest["steps"]["web"]]


def _files(out: Path) -> dict[str, bytes]:
    """Every data file of a build (markers and the manifest hold timings and are compared apart)."""
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and ".done" not in p.parts and p.name != "manifest.json"
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], Path, dict[str, Any]]:
    """The corpus, and its uninterrupted three-task build (directory and manifest)."""
    root = tmp_path_factory.mktemp("global_minhash")
    planted = _corpus(root)
    manifest = build(_recipe(root), root / "clean")
    return root, planted, root / "clean", manifest


def test_clusters_keep_one_member_and_match_one_task(corpus: tuple) -> None:
    root, planted, clean, manifest = corpus
    docs = clean / "documents" / "web"
    kept = set(_ids(docs))
    for members in planted["clusters"]:
        assert len(kept & set(members)) == 1, members
    assert all(a in kept and b in kept for a, b in planted["low"])  # nothing at Jaccard 0.5 removed
    assert {f"u{u}" for u in range(3, 30)} <= kept and "copy" not in kept
    assert kept.isdisjoint({"u0", "u1", "u2"})  # the step after minhash still ran

    # One task sees the whole source in stream order (file 0, 1, 2), which is the stages' (task, index)
    # order: without chains the in-stream filter keeps the same documents, and every count agrees.
    one = build(_recipe(root, tasks=1), root / "one")
    assert set(_ids(root / "one" / "documents" / "web")) == kept
    assert _stats(one) == _stats(manifest)
    names = [s["name"] for s in manifest["steps"]["web"]]
    assert names == ["read:jsonl", "exact_dedup", "minhash_dedup", "dirty_words"]
    minhash = manifest["steps"]["web"][2]
    assert minhash["dropped"] == {"near_duplicate": 2 * CLUSTERS}
    assert minhash["docs_in"] == manifest["steps"]["web"][1]["kept"] and minhash["seconds"] > 0
    assert sorted(docs.glob("*.jsonl.gz")) == [docs / f"{r:05d}.jsonl.gz" for r in range(3)]


def test_exclusions_record_every_step(corpus: tuple) -> None:
    _, planted, clean, _ = corpus
    excluded = clean / "documents" / "web" / "excluded"

    def dropped(step: str) -> dict[str, str]:
        files = sorted((excluded / step).glob("*.jsonl.gz"))
        return {d.id: d.metadata["dropped_by"] for d in JsonlReader().read_files(files)}

    near = dropped("minhash_dedup")
    assert len(near) == 2 * CLUSTERS and set(near.values()) == {"minhash_dedup:near_duplicate"}
    assert all(len(set(members) - set(near)) == 1 for members in planted["clusters"])
    assert dropped("exact_dedup") == {"copy": "exact_dedup:duplicate"}
    assert set(dropped("dirty_words")) == {"u0", "u1", "u2"}


def test_recall_at_jaccard_08_across_tasks(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    files: list[list[str]] = [[] for _ in range(FILES)]
    pairs = 150
    for p in range(pairs):  # 20 words replaced 45 apart: 100 of 900 shingles differ, Jaccard 0.8
        words = _words(rng, 904)
        a, b = " ".join(words), _edit(words, rng, range(22, 900, 45))
        if p == 0:
            assert jaccard(shingles(a), shingles(b)) == 0.8
        files[p % FILES].append(json.dumps({"id": f"{p}a", "text": a}))
        files[(p + 1) % FILES].append(json.dumps({"id": f"{p}b", "text": b}))
    (tmp_path / "in").mkdir()
    for number, lines in enumerate(files):
        (tmp_path / "in" / f"{number}.jsonl").write_text("\n".join(lines) + "\n")
    build(_recipe(tmp_path, steps=(StepConfig("minhash_dedup"),)), tmp_path / "out")
    kept = set(_ids(tmp_path / "out" / "documents" / "web"))
    found = [len(kept & {f"{p}a", f"{p}b"}) for p in range(pairs)]
    assert min(found) == 1  # a pair never loses both
    assert found.count(1) / pairs >= 0.9


@pytest.mark.parametrize(
    ("stage", "job"), [("signatures", (1,)), ("buckets", (7,)), ("clusters", ()), ("filter", (1,))]
)
def test_resume_after_interruption_is_byte_identical(
    corpus: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stage: str, job: tuple
) -> None:
    root, _, clean, manifest = corpus
    original = getattr(GlobalMinhash, stage)

    def interrupted(self: GlobalMinhash, *args: int) -> Any:
        if args == job:
            raise KeyboardInterrupt
        return original(self, *args)

    monkeypatch.setattr(GlobalMinhash, stage, interrupted)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        build(_recipe(root), out)
    assert not (out / "manifest.json").exists()
    monkeypatch.undo()
    again = build(_recipe(root), out)
    assert _files(out) == _files(clean)
    assert _stats(again) == _stats(manifest)
    assert not list(out.rglob("*.tmp"))


KILLED_BUILD = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from test_data_global_minhash import _recipe
from herd.data.recipe.build import build
build(_recipe(Path(sys.argv[2])), sys.argv[3])
"""


@pytest.mark.slow
def test_resume_after_sigkill_is_byte_identical(corpus: tuple, tmp_path: Path) -> None:
    root, _, clean, manifest = corpus
    out = tmp_path / "out"
    stages = out / "documents" / "web" / ".minhash"
    script = [sys.executable, "-c", KILLED_BUILD, str(Path(__file__).parent), str(root), str(out)]
    kills = 0
    for stage, markers in (("before", 2), ("signatures", 1), ("buckets", 5), ("clusters", 1)):
        proc = subprocess.Popen(script, start_new_session=True)
        while proc.poll() is None and len(list((stages / stage / ".done").glob("*.json"))) < markers:
            time.sleep(0.002)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills, "the build finished before it could be killed"
    again = build(_recipe(root), out)
    assert _files(out) == _files(clean)
    assert _stats(again) == _stats(manifest)


def test_worker_processes_give_the_same_bytes(corpus: tuple, tmp_path: Path) -> None:
    root, _, clean, manifest = corpus
    again = build(_recipe(root, workers=2), tmp_path / "out")
    assert _files(tmp_path / "out") == _files(clean)
    assert _stats(again) == _stats(manifest)


@pytest.mark.slow
def test_ray_matches_local(corpus: tuple, tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    root, _, clean, manifest = corpus
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = build(_recipe(root), tmp_path / "out", executor="ray")
    finally:
        ray.shutdown()
    assert _files(tmp_path / "out") == _files(clean)
    assert _stats(remote) == _stats(manifest)


def test_task_scope_and_bad_arguments(corpus: tuple, tmp_path: Path) -> None:
    root, _, _, _ = corpus
    local = (StepConfig("minhash_dedup", {"scope": "task"}),)
    manifest = build(_recipe(root, steps=local), tmp_path / "task")
    # per task: only the five clusters with two members in one file, and the exact copy
    assert manifest["steps"]["web"][1]["dropped"] == {"near_duplicate": 6}
    assert not (tmp_path / "task" / "documents" / "web" / ".minhash").exists()

    def bad(args: dict[str, Any]) -> RecipeConfig:
        return _recipe(root, steps=(StepConfig("minhash_dedup", args),))

    with pytest.raises(DataInputError, match="scope must be one of global, task"):
        build(bad({"scope": "everywhere"}), tmp_path / "bad")
    with pytest.raises(DataInputError, match="exact = true cannot run across tasks"):
        build(bad({"exact": True}), tmp_path / "bad")
