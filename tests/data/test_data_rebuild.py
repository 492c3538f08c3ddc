"""Building into an existing output: changed recipes, inputs and tokenizers rebuild what they change; a
finished part is reused only when its fingerprint matches; temporary files and foreign outputs."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import byte_tokenizer, word_tokenizer
from herd.cli import main
from herd.data.document import Document
from herd.data.errors import DataInputError
from herd.data.io.jsonl import JsonlReader
from herd.data.pipeline import Pipeline
from herd.data.recipe.build import build
from herd.data.recipe.config import RecipeConfig, SourceConfig, StepConfig, load_recipe
from herd.data.step import Step
from herd.errors import HerdError
from herd.io.atomic import write_atomically

# Every word of the documents _inputs writes (at most 3 files), so word_tokenizer(WORDS, ...) has one id each.
WORDS = ["bad", *(f"w{f}x{k}" for f in range(3) for k in range(10))]


def _inputs(root: Path, files: int = 2) -> None:
    """``files`` JSONL files; document ``f-k`` has 20 words of which k are "bad" (k = 0..9)."""
    (root / "in").mkdir(exist_ok=True)
    for f in range(files):
        docs = [
            {"id": f"{f}-{k}", "text": " ".join(["bad"] * k + [f"w{f}x{k}"] * (20 - k))} for k in range(10)
        ]
        (root / "in" / f"{f}.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))


def _recipe(root: Path, max_fraction: float = 0.2, tasks: int = 2, extra: str = "") -> RecipeConfig:
    (root / "r.toml").write_text(
        "[recipe]\nexclusions = true\ntokens_per_shard = 200\n"
        f'[[source]]\nname = "web"\nreader = "jsonl"\ninputs = ["in/*.jsonl"]\ntasks = {tasks}\n'
        f'steps = [{{type = "dirty_words", words = ["bad"], max_fraction = {max_fraction}}}{extra}]\n'
    )
    return load_recipe(root / "r.toml")


def _kept(out: Path) -> list[str]:
    return sorted(
        d.id for d in JsonlReader().read_files(sorted((out / "documents" / "web").glob("*.jsonl.gz")))
    )


def _markers(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted((out / "documents" / "web" / ".done").glob("*"))}


def _expected(max_fraction: float, files: tuple[int, ...] = (0, 1)) -> list[str]:
    """Documents with a "bad" fraction k/20 at most ``max_fraction``, by hand."""
    return sorted(f"{f}-{k}" for f in files for k in range(10) if k / 20 <= max_fraction)


def test_a_changed_filter_threshold_rebuilds_the_shards(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _inputs(tmp_path)
    out = tmp_path / "out"
    first = build(_recipe(tmp_path, 0.2), out)
    assert _kept(out) == _expected(0.2) and first["sources"]["web"]["documents"] == 10
    markers = _markers(out)
    build(_recipe(tmp_path, 0.2), out)  # the same recipe: every shard reused, markers untouched
    assert _markers(out) == markers

    again = build(_recipe(tmp_path, 0.05), out)
    assert _kept(out) == _expected(0.05)  # not the old shards
    assert again["sources"]["web"]["documents"] == 4
    assert again["steps"]["web"][1]["dropped"] == {"dirty_word_fraction": 16}
    assert all(markers[name] != mtime for name, mtime in _markers(out).items())
    assert "00001.json: steps changed since it was made; building this part again" in caplog.text
    excluded = JsonlReader().read_files(sorted((out / "documents/web/excluded/dirty_words").glob("*")))
    assert sorted(d.id for d in excluded) == sorted(set(_expected(1.0)) - set(_expected(0.05)))


def test_a_changed_input_file_rebuilds_only_its_shard(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _inputs(tmp_path)
    out = tmp_path / "out"
    build(_recipe(tmp_path), out)
    markers = _markers(out)
    changed = tmp_path / "in" / "1.jsonl"
    changed.write_text(json.dumps({"id": "new", "text": "a new clean document"}) + "\n")
    os.utime(changed, ns=(1, 1))  # a different modification time even on a coarse clock
    build(_recipe(tmp_path), out)
    assert _kept(out) == sorted([*_expected(0.2, (0,)), "new"])
    now = _markers(out)
    assert now["00000.json"] == markers["00000.json"] and now["00001.json"] != markers["00001.json"]
    assert f"00001.json: inputs ({changed.resolve()}) changed since it was made" in caplog.text
    assert "00000.json" not in caplog.text


def test_fewer_tasks_and_steps_leave_no_old_shards(tmp_path: Path) -> None:
    _inputs(tmp_path, files=3)
    out = tmp_path / "out"
    build(_recipe(tmp_path, tasks=3, extra=', {type = "exact_dedup"}'), out)
    assert (out / "documents/web/00002.jsonl.gz").is_file()
    assert (out / "documents/web/excluded/exact_dedup").is_dir()
    manifest = build(_recipe(tmp_path, tasks=2), out)
    docs = out / "documents" / "web"
    assert sorted(p.name for p in docs.glob("*.jsonl.gz")) == ["00000.jsonl.gz", "00001.jsonl.gz"]
    assert sorted(p.name for p in (docs / ".done").iterdir()) == ["00000.json", "00001.json"]
    assert sorted(p.name for p in (docs / "excluded").iterdir()) == ["dirty_words"]
    assert _kept(out) == _expected(0.2, (0, 1, 2)) and manifest["sources"]["web"]["documents"] == 15


def _token_files(out: Path) -> set[str]:
    return {str(p.relative_to(out)) for p in (out / "tokens").rglob("*") if p.is_file()}


def _listed(manifest: dict[str, Any]) -> set[str]:
    shards = manifest["splits"]["train"]["web"]["shards"]
    return {s[key] for s in shards for key in ("tokens", "index")}


def test_a_changed_tokenizer_rewrites_every_token_shard(tmp_path: Path) -> None:
    _inputs(tmp_path)
    out = tmp_path / "out"
    bytes_manifest = build(_recipe(tmp_path), out, byte_tokenizer())  # ~98 tokens a document: 4 shards
    tokenizer = word_tokenizer(WORDS, 1000)
    manifest = build(_recipe(tmp_path), out, tokenizer)  # 21 tokens a document: 1 shard
    assert manifest["vocab_size"] == 1000 and manifest["sources"]["web"]["tokens"] == 10 * 21
    assert (len(_shards(bytes_manifest)), len(_shards(manifest))) == (4, 1)
    assert _token_files(out) == _listed(manifest)  # the byte tokenizer's extra shards are gone
    docs = sorted(JsonlReader().read_files(sorted((out / "documents/web").glob("*.jsonl.gz"))), key=_order)
    expected = [t for d in docs for t in tokenizer.encode(d.text, eos=True)]
    tokens = [np.fromfile(out / s["tokens"], dtype=manifest["dtype"]) for s in _shards(manifest)]
    assert np.concatenate(tokens).tolist() == expected

    back = build(_recipe(tmp_path), out, byte_tokenizer())
    tokens = [np.fromfile(out / s["tokens"], dtype=back["dtype"]) for s in _shards(back)]
    assert np.concatenate(tokens).tolist() == [
        t for d in docs for t in byte_tokenizer().encode(d.text, eos=True)
    ]


def _order(doc: Document) -> tuple[int, int]:
    """Stream order of the kept documents: shard by shard (file 0 then 1), then in file order."""
    f, k = doc.id.split("-")
    return int(f), int(k)


def _shards(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    return manifest["splits"]["train"]["web"]["shards"]


class Explodes(Step):
    """Fails on its third document, mid-shard."""

    name = "explodes"

    def __init__(self) -> None:
        super().__init__()
        self.seen = 0

    def process(self, doc: Document) -> Document | str:
        self.seen += 1
        if self.seen == 3:
            raise RuntimeError("step failed")
        return doc


def test_a_failed_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    _inputs(tmp_path, files=1)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="step failed"):
        Pipeline(JsonlReader(), [Explodes()], exclusions=True).run_task([tmp_path / "in/0.jsonl"], 0, out)
    assert [p for p in out.rglob("*") if p.is_file()] == []

    def half_then_fail(f: Any) -> None:
        f.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        write_atomically(out / "manifest.json", half_then_fail)
    assert [p for p in out.rglob("*") if p.is_file()] == []


def test_a_killed_runs_temporary_files_are_removed_by_the_next_build(tmp_path: Path) -> None:
    _inputs(tmp_path)
    out = tmp_path / "out"
    build(_recipe(tmp_path), out, byte_tokenizer())
    stale = [
        out / "documents/web/.00000.jsonl.gz.tmp",
        out / "documents/web/excluded/dirty_words/.00001.jsonl.gz.tmp",
        out / "tokens/web/.train-00000.bin.tmp",
        out / ".manifest.json.tmp",
    ]
    for path in stale:
        path.write_bytes(b"half written")
    (out / "notes.tmp").write_text("a user's file with a .tmp suffix is not a temporary of herd's\n")
    build(_recipe(tmp_path), out, byte_tokenizer())
    assert not any(p.exists() for p in stale)
    assert (out / "notes.tmp").is_file()
    assert sorted(p.name for p in out.rglob("*.tmp")) == ["notes.tmp"]


def test_an_output_that_is_not_a_build_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _inputs(tmp_path)
    recipe = _recipe(tmp_path)
    afile = tmp_path / "thesis.txt"
    afile.write_text("two years of work\n")
    with pytest.raises(DataInputError, match="is a file, not a directory"):
        build(recipe, afile)
    assert afile.read_text() == "two years of work\n"
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.txt").write_text("two years of work\n")
    with pytest.raises(DataInputError, match="holds no herd data build"):
        build(recipe, folder)
    assert [p.name for p in folder.iterdir()] == ["thesis.txt"]
    assert main(["data", "build", str(tmp_path / "r.toml"), "--output", str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("herd: error: output ") and "\n" not in err and str(folder) in err

    empty = tmp_path / "empty"
    empty.mkdir()
    build(recipe, empty)  # an empty directory is fine, and then it is a build
    build(recipe, empty)


@pytest.mark.parametrize("name", ["../victim.bin", "/tmp/victim.bin", "tokens/../../victim.bin"])
def test_a_manifest_naming_files_outside_the_build_is_refused(tmp_path: Path, name: str) -> None:
    _inputs(tmp_path)
    out = tmp_path / "out"
    build(_recipe(tmp_path), out, byte_tokenizer())
    manifest = json.loads((out / "manifest.json").read_text())
    victim = tmp_path / "victim.bin"
    victim.write_bytes(b"not herd's")
    _shards(manifest)[0]["tokens"] = name.replace("/tmp/victim.bin", str(victim))
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(HerdError, match=r"manifest\.json: path .* (leaves|is absolute)"):
        build(_recipe(tmp_path), out, byte_tokenizer())
    assert victim.read_bytes() == b"not herd's"


def test_a_source_name_cannot_leave_the_output(tmp_path: Path) -> None:
    _inputs(tmp_path)
    source = SourceConfig(
        name="../escaped", reader="jsonl", inputs=("in/*.jsonl",), steps=(StepConfig("exact_dedup"),)
    )
    with pytest.raises(HerdError, match="leaves"):
        build(RecipeConfig(name="t", sources=(source,), base_dir=tmp_path), tmp_path / "out")
    assert not (tmp_path / "escaped").exists()


def test_damaged_markers_rebuild_their_part(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _inputs(tmp_path)
    out = tmp_path / "out"
    clean = build(_recipe(tmp_path), out)
    done = out / "documents" / "web" / ".done"
    (done / "00000.json").write_text("{ not json")
    record = json.loads((done / "00001.json").read_text())
    record["stats"][0]["kept"] = "many"
    (done / "00001.json").write_text(json.dumps(record))
    again = build(_recipe(tmp_path), out)
    assert again["steps"] == {
        "web": [
            {**s, "seconds": again["steps"]["web"][i]["seconds"]} for i, s in enumerate(clean["steps"]["web"])
        ]
    }
    assert "00000.json: unreadable completion marker" in caplog.text
    assert (
        "00001.json: stats[0].kept: expected an integer, got 'many'; building this part again" in caplog.text
    )


def _stage_markers(out: Path) -> dict[str, int]:
    stages = out / "documents" / "web" / ".minhash"
    return {str(p.relative_to(stages)): p.stat().st_mtime_ns for p in sorted(stages.glob("*/.done/*.json"))}


def test_global_minhash_redoes_only_the_stages_a_change_reaches(tmp_path: Path) -> None:
    from test_data_global_minhash import STEPS, _corpus
    from test_data_global_minhash import _recipe as minhash_recipe

    _corpus(tmp_path)
    out = tmp_path / "out"
    build(minhash_recipe(tmp_path), out)
    assert {"u0", "u1", "u2"}.isdisjoint(_kept(out))  # dense in "forbidden", after minhash_dedup
    stages, final = _stage_markers(out), _markers(out)

    # A step after minhash_dedup changed: stages 1-4 are reused, stage 5 (the final shards) is redone.
    lenient = (*STEPS[:2], StepConfig("dirty_words", {"words": ["forbidden"], "max_fraction": 0.5}))
    build(minhash_recipe(tmp_path, steps=lenient), out)
    assert {"u0", "u1", "u2"} <= set(_kept(out))
    assert _stage_markers(out) == stages
    assert all(final[name] != mtime for name, mtime in _markers(out).items())

    # One input changed: its stage-1 task and signatures, and every band, the clusters and stage 5.
    changed = tmp_path / "in" / "2.jsonl"
    changed.write_text(
        changed.read_text() + json.dumps({"id": "late", "text": "a late unique document"}) + "\n"
    )
    os.utime(changed, ns=(1, 1))
    build(minhash_recipe(tmp_path, steps=lenient), out)
    assert "late" in _kept(out)
    now = _stage_markers(out)
    same = {name for name in stages if now[name] == stages[name]}
    assert same == {"before/.done/00000.json", "before/.done/00001.json", "signatures/.done/00000.json",
                    "signatures/.done/00001.json"}  # fmt: skip


def test_fingerprints_of_code_made_arguments_do_not_depend_on_the_process(tmp_path: Path) -> None:
    """A set argument (string hashing differs per process) has one fingerprint; markers can record it."""
    import subprocess
    import sys

    code = (
        "from herd.data.fingerprint import digest; print(digest({'words': frozenset(map(str, range(50)))}))"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
        ).stdout
        for seed in ("1", "2")
    }
    assert len(digests) == 1 and len(digests.pop().strip()) == 64

    _inputs(tmp_path, files=1)
    steps = (StepConfig("dirty_words", {"words": frozenset({"bad"}), "max_fraction": 0.2}),)
    source = SourceConfig(name="web", reader="jsonl", inputs=("in/*.jsonl",), steps=steps)
    recipe = RecipeConfig(name="t", sources=(source,), base_dir=tmp_path)
    build(recipe, tmp_path / "out")
    markers = _markers(tmp_path / "out")
    build(recipe, tmp_path / "out")
    assert _markers(tmp_path / "out") == markers and _kept(tmp_path / "out") == _expected(0.2, (0,))


def test_a_second_build_into_the_same_output_is_refused_while_the_first_runs(tmp_path: Path) -> None:
    import fcntl

    _inputs(tmp_path, files=1)
    out = tmp_path / "out"
    build(_recipe(tmp_path, tasks=1), out)
    (out / "documents/web/.00000.jsonl.gz.tmp").write_bytes(b"being written by the first build")
    with open(out / ".herd-build.lock", "a") as first:  # what a running build holds
        fcntl.flock(first, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(DataInputError, match="another herd data build is writing to it"):
            build(_recipe(tmp_path, tasks=1), out)
        assert (out / "documents/web/.00000.jsonl.gz.tmp").exists()  # the first build's file is left alone
    build(_recipe(tmp_path, tasks=1), out)
    assert not (out / "documents/web/.00000.jsonl.gz.tmp").exists()
