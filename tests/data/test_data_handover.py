"""``herd data build`` hands over to the next stage and says what it does (docs/data.md).

The tokenizer travels with the token shards, a build without one says what it
made and how to get shards, the whole recipe is checked before a byte is read,
each source shows its progress, the table shows the validation split, KenLM's
loading banner stays quiet and ``--threads`` reaches the worker processes.
"""

from __future__ import annotations

import io
import json
import os
import typing
from pathlib import Path
from typing import Any

import pytest

import herd
from conftest import SAMPLES, byte_tokenizer, stand_in_tokenizer
from herd.cli import main
from herd.data.dedup.exact import ExactDedup
from herd.data.errors import DataInputError
from herd.data.executor.local import LocalExecutor
from herd.data.io.jsonl import JsonlReader
from herd.data.pipeline import Pipeline
from herd.data.progress import Counts, SourceProgress, quiet_native_stderr
from herd.data.recipe import registry
from herd.data.recipe.build import build, prepare, run_source
from herd.data.recipe.config import load_recipe
from herd.data.recipe.report import format_tables
from herd.data.recipe.tokenize import is_held_out

# Source "a": 3 documents of 17, 17 and 16 bytes (50 in all), the second a copy of the first.
A_TEXTS = ["one document here", "one document here", "another document"]
# Source "b": one document of ten two-byte characters (20 bytes).
B_TEXTS = ["é" * 10]


def _write(path: Path, texts: list[str], prefix: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "".join(json.dumps({"id": f"{prefix}{i}", "text": t}) + "\n" for i, t in enumerate(texts))
    )


def _recipe(root: Path, last_steps: str = '[{type = "exact_dedup"}]', head: str = "") -> Path:
    """Two sources: "a" (exact dedup) and "b" (``last_steps``), over the documents above."""
    _write(root / "a" / "0.jsonl", A_TEXTS, "a")
    _write(root / "b" / "0.jsonl", B_TEXTS, "b")
    (root / "r.toml").write_text(
        f'[recipe]\nname = "handover"\n{head}'
        '[[source]]\nname = "a"\nreader = "jsonl"\ninputs = ["a/*.jsonl"]\nsteps = [{type = "exact_dedup"}]\n'
        f'[[source]]\nname = "b"\nreader = "jsonl"\ninputs = ["b/*.jsonl"]\nsteps = {last_steps}\n'
    )
    return root / "r.toml"


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ---- 1. the dataset carries its tokenizer ----------------------------------------------------------


TEXTS = ["the quick brown fox", "héllo wörld 日本", "one document here\nand a second line", ""]


@pytest.mark.parametrize("make", [stand_in_tokenizer, byte_tokenizer])
def test_the_tokenizer_is_saved_with_the_shards_and_encodes_as_the_original(
    make: Any, tmp_path: Path
) -> None:
    tokenizer = make()
    out = tmp_path / "out"
    manifest = build(load_recipe(_recipe(tmp_path)), out, tokenizer)
    assert manifest["tokenizer"] == "tokenizer"
    assert json.loads((out / "manifest.json").read_text())["tokenizer"] == "tokenizer"
    saved = herd.load_tokenizer(out / manifest["tokenizer"])
    assert saved.vocab_size == manifest["vocab_size"] == tokenizer.vocab_size
    assert saved.eos_id == tokenizer.eos_id
    for text in TEXTS:
        assert saved.encode(text, eos=True) == tokenizer.encode(text, eos=True)
    assert not list(out.rglob("*.tmp"))  # written through a staging directory


def test_a_rebuild_replaces_the_tokenizer_and_one_without_a_tokenizer_removes_it(tmp_path: Path) -> None:
    recipe, out = load_recipe(_recipe(tmp_path)), tmp_path / "out"
    build(recipe, out, stand_in_tokenizer())
    build(recipe, out, byte_tokenizer())
    assert herd.load_tokenizer(out / "tokenizer").encode("é") == [0xC3, 0xA9]
    manifest = build(recipe, out)
    assert not (out / "tokenizer").exists() and "tokenizer" not in manifest
    assert sorted(p.name for p in out.iterdir()) == [".herd-build.json", "documents", "manifest.json"]


def test_the_documented_flow_documents_then_a_trained_tokenizer_then_token_shards(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/data.md: build the documents, train a llama3-style (tiktoken) tokenizer on them, pack shards."""
    recipe, out, tok = str(_recipe(tmp_path)), str(tmp_path / "data"), str(tmp_path / "tok")
    assert _cli(capsys, "data", "build", recipe, "-o", out, "--quiet")[0] == 0
    documents = [str(p) for p in sorted((tmp_path / "data" / "documents").glob("*/00000.jsonl.gz"))]
    assert len(documents) == 2
    train = ["tokenizer", "train", *documents, "--style", "llama3", "--vocab-size", "300", "-o", tok]
    assert _cli(capsys, *train, "--heldout", "0", "--quiet")[0] == 0
    assert _cli(capsys, "data", "build", recipe, "-o", out, "--tokenizer", tok, "--quiet")[0] == 0
    saved, trained = herd.load_tokenizer(tmp_path / "data" / "tokenizer"), herd.load_tokenizer(tok)
    assert type(saved).__name__ == "TiktokenTokenizer"
    for text in [*A_TEXTS, *B_TEXTS, "<|begin_of_text|> not special"]:
        assert saved.encode(text, bos=True, eos=True) == trained.encode(text, bos=True, eos=True)


# ---- 2. a build without a tokenizer says what it made -----------------------------------------------


def test_a_build_without_a_tokenizer_says_it_made_documents_only_and_how_to_get_shards(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe, out = _recipe(tmp_path), tmp_path / "out"
    code, text, _ = _cli(capsys, "data", "build", str(recipe), "-o", str(out), "--quiet")
    assert code == 0
    hint = f'herd data build {recipe} -o {out} --tokenizer PATH (or tokenizer = "PATH" under [recipe])'
    assert text.splitlines()[-2:] == [
        "documents only: documents/<source>/NNNNN.jsonl.gz; token shards: none (no tokenizer)",
        f"to pack token shards: {hint}",
    ]
    assert "tokens" not in text.splitlines()[2]  # no token columns of zeros
    assert not (out / "tokens").exists() and (out / "documents" / "a" / "00000.jsonl.gz").is_file()

    code, text, _ = _cli(capsys, "data", "build", str(recipe), "-o", str(out), "--quiet", "--json")
    assert json.loads(text)["documents_only"] == {
        "documents": "documents/<source>/NNNNN.jsonl.gz",
        "token_shards": "none (no tokenizer)",
        "next": hint,
    }
    code, text, _ = _cli(capsys, "data", "stats", str(out))
    assert f"to pack token shards: {hint}" in text


# ---- 3. the whole recipe is checked before a byte is read -------------------------------------------


@pytest.mark.parametrize(
    ("last_steps", "problem"),
    [
        (
            '[{type = "pii"}, {type = "exact_dedupe"}]',
            "source[1] 'b', steps[1] 'exact_dedupe': unknown step 'exact_dedupe' (did you mean 'exact_dedup'?",
        ),
        (
            '[{type = "pii"}, {type = "ccnet_perplexity", model_path = "models/missing.arpa"}]',
            "source[1] 'b', steps[1] 'ccnet_perplexity': model_path: {root}/models/missing.arpa: "
            "no such file or directory",
        ),
        (
            '[{type = "pii"}, {type = "ccnet_perplexity", model_path = "r.toml", keep = ["top"]}]',
            "source[1] 'b', steps[1] 'ccnet_perplexity': ccnet_perplexity: keep must name",
        ),
        (
            '[{type = "pii"}, {type = "wiki_reference", threshold = 2}]',
            "source[1] 'b', steps[1] 'wiki_reference': threshold: must be in [0, 1], got 2",
        ),
    ],
)
def test_a_mistake_in_the_last_sources_last_step_stops_the_build_before_anything_is_read(
    last_steps: str,
    problem: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    files_read: list[Path] = []
    read = JsonlReader.read
    monkeypatch.setattr(JsonlReader, "read", lambda self, path: files_read.append(path) or read(self, path))
    recipe = _recipe(tmp_path, last_steps)
    code, _, err = _cli(capsys, "data", "build", str(recipe), "-o", str(tmp_path / "out"))
    assert code == 2
    assert err.startswith(f"herd: error: {recipe}: {problem.format(root=tmp_path)}") and err.count("\n") == 1
    assert files_read == [] and not (tmp_path / "out").exists()


def test_inputs_that_match_nothing_in_the_last_source_stop_the_build_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = _recipe(tmp_path)
    recipe.write_text(recipe.read_text().replace('"b/*.jsonl"', '"b/*.jsnol"'))
    code, _, err = _cli(capsys, "data", "build", str(recipe), "-o", str(tmp_path / "out"))
    assert code == 2
    assert err.strip() == (
        f"herd: error: {recipe}: source[1] 'b': inputs: {tmp_path}/b/*.jsnol: no such input file, directory or "
        "pattern"
    )
    assert not (tmp_path / "out").exists()


def test_a_remap_that_removes_a_required_model_is_refused_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "wiki.bin").write_bytes(b"")
    recipe = _recipe(tmp_path, '[{type = "wiki_reference", model_path = "models/wiki.bin"}]')
    remap = f"--remap={tmp_path / 'models'}="
    code, _, err = _cli(capsys, "data", "build", str(recipe), "-o", str(tmp_path / "out"), remap)
    assert code == 2
    assert err.strip().endswith(
        "source[1] 'b', steps[0] 'wiki_reference': missing argument 'model_path' (str | Path)"
    )
    assert not (tmp_path / "out").exists()


def _is_number(hint: Any) -> bool:
    """Whether a parameter takes a number, or a table of numbers (``dict[int, float] | None``)."""
    return hint in (int, float) or any(_is_number(arg) for arg in typing.get_args(hint))


def test_every_numeric_argument_of_every_step_and_reader_has_a_range() -> None:
    """A new numeric argument must say which values it takes (registry.RANGES), or this fails."""
    unranged = [
        f"{name}.{key}"
        for table in (registry.STEPS, registry.READERS)
        for name, cls in table.items()
        for key, hint in registry.parameters(cls)[0].items()
        if _is_number(hint) and key not in registry.RANGES
    ]
    assert unranged == []


# ---- 4. progress per source ------------------------------------------------------------------------


def test_each_source_prints_its_line_once_when_stderr_is_not_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe, out = str(_recipe(tmp_path)), str(tmp_path / "out")
    code, _, err = _cli(capsys, "data", "build", recipe, "-o", out)
    assert code == 0
    lines = err.splitlines()
    assert [line.split(" [")[0] for line in lines] == [
        "a: 3 documents read, 2 kept, 50.0B",
        "b: 1 documents read, 1 kept, 20.0B",
    ]
    assert all(line.endswith(" docs/s]") for line in lines) and "\r" not in err

    code, _, err = _cli(capsys, "data", "build", recipe, "-o", out)  # every task's marker is reused
    assert [line.split(" [")[0] for line in err.splitlines()] == [
        "a: 0 documents read, 3 reused from an earlier build, 2 kept, 50.0B",
        "b: 0 documents read, 1 reused from an earlier build, 1 kept, 20.0B",
    ]
    assert _cli(capsys, "data", "build", recipe, "-o", out, "--quiet")[2] == ""


def test_tasks_in_worker_processes_add_to_their_sources_counters(tmp_path: Path) -> None:
    for f in range(2):  # two files: two tasks on two spawned workers
        _write(tmp_path / "in" / f"{f}.jsonl", ["same text", f"file {f}", "xyz"], f"{f}-")
    inputs = sorted((tmp_path / "in").glob("*.jsonl"))
    with SourceProgress("web", stream=io.StringIO()) as line:
        LocalExecutor(Pipeline(JsonlReader(), [ExactDedup()]), inputs, tmp_path / "out", 2, workers=2).run()
        counts = line.counts()
    # 6 documents of 9 + 6 + 3 bytes per file; each task dedups its own file only, so all 6 are kept
    assert counts == Counts(read=6, kept=6, num_bytes=36)
    with SourceProgress("web", stream=io.StringIO()) as line:
        LocalExecutor(Pipeline(JsonlReader(), [ExactDedup()]), inputs, tmp_path / "out", 2, workers=2).run()
        assert line.counts() == Counts(read=0, kept=6, num_bytes=36, reused=6)


def test_global_minhash_counts_each_document_read_once(tmp_path: Path) -> None:
    """Its last stage reads the first stage's output again; only the first counts."""
    for f in range(2):
        _write(
            tmp_path / "in" / f"{f}.jsonl", ["the same words in the same order here", f"file {f}"], f"{f}-"
        )
    (tmp_path / "r.toml").write_text(
        '[[source]]\nname = "web"\nreader = "jsonl"\ninputs = ["in/*.jsonl"]\ntasks = 2\n'
        'steps = [{type = "minhash_dedup", n = 2}]\n'
    )
    recipe = load_recipe(tmp_path / "r.toml")
    [source] = prepare(recipe, tmp_path / "out")
    assert source.minhash == 0  # global stages
    with SourceProgress("web", stream=io.StringIO()) as line:
        stats = run_source(recipe, source)
        counts = line.counts()
    assert stats[-1].kept == 3  # the copy in file 1 is a near duplicate of file 0's
    assert (counts.read, counts.num_bytes) == (4, 2 * 37 + 2 * 6)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_line_is_redrawn_and_ends_with_the_sources_totals(tmp_path: Path) -> None:
    stream = _Terminal()
    with SourceProgress("web", stream=stream) as line:
        Pipeline(JsonlReader()).run_task([_recipe(tmp_path).parent / "a" / "0.jsonl"], 0, tmp_path / "out")
        line.finish(read=3, kept=3, num_bytes=50)
    drawn = stream.getvalue()
    assert drawn.startswith("\rweb: 0 documents read, 0 kept, 0.00B [") and drawn.endswith("\n")
    assert drawn.rstrip("\n").split("\r")[-1].startswith("web: 3 documents read, 3 kept, 50.0B [")


def test_progress_off_counts_nothing(tmp_path: Path) -> None:
    stream = _Terminal()
    with SourceProgress("web", enabled=False, stream=stream) as line:
        Pipeline(JsonlReader()).run_task([_recipe(tmp_path).parent / "a" / "0.jsonl"], 0, tmp_path / "out")
        line.finish(read=3, kept=3, num_bytes=50)
    assert stream.getvalue() == ""


# ---- 5. the validation split in the table ----------------------------------------------------------


def test_the_table_shows_each_sources_validation_split(tmp_path: Path) -> None:
    texts = [f"document number {i}" for i in range(12)]
    _write(tmp_path / "in" / "0.jsonl", texts, "d")
    (tmp_path / "r.toml").write_text(
        '[recipe]\nval_fraction = 0.5\n[[source]]\nname = "web"\nreader = "jsonl"\ninputs = ["in/*.jsonl"]\n'
    )
    manifest = build(load_recipe(tmp_path / "r.toml"), tmp_path / "out", byte_tokenizer())
    held_out = [t for i, t in enumerate(texts) if is_held_out(f"d{i}", 0, 0.5)]
    assert 0 < len(held_out) < len(texts)  # the hash splits these ids both ways
    val_tokens = sum(len(t.encode()) + 1 for t in held_out)  # bytes, then end of text
    web = manifest["sources"]["web"]
    assert (web["val_documents"], web["val_tokens"]) == (len(held_out), val_tokens)
    assert web["sampled_documents"] == len(texts) - len(held_out)
    table = format_tables(manifest).splitlines()
    columns = ("weight", 8), ("epochs", 8), ("documents", 12), ("sampled", 12), ("tokens", 14), ("bytes", 14)
    columns += ("val docs", 10), ("val tokens", 12)
    assert table[2] == "source" + " " * 10 + "".join(f"{title:>{width}}" for title, width in columns)
    assert table[3].split()[-2:] == [str(len(held_out)), str(val_tokens)]


# ---- 6. KenLM's loading banner ---------------------------------------------------------------------


def test_kenlm_loads_without_its_banner_and_a_bad_model_is_one_error(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("kenlm")
    from herd.data.quality.perplexity import KenlmScorer

    KenlmScorer(SAMPLES / "models" / "enwiki-sample.5gram.arpa")
    assert capfd.readouterr().err == ""
    (tmp_path / "bad.arpa").write_text("not an arpa file\n")
    with pytest.raises(DataInputError, match=r"bad\.arpa: KenLM cannot read it \(.*not \\data\\"):
        KenlmScorer(tmp_path / "bad.arpa")
    assert capfd.readouterr().err == ""


def test_what_is_not_a_banner_still_reaches_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    from herd.data.quality.perplexity import KENLM_BANNER

    with pytest.raises(RuntimeError), quiet_native_stderr(KENLM_BANNER):
        os.write(2, b"Loading the LM will be faster if you build a binary file.\nReading /m.arpa\n")
        os.write(2, b"----5---10---15---20---25---30\n****\nwarning: 3 n-grams skipped\n")
        raise RuntimeError("the load failed")
    assert capfd.readouterr().err == "warning: 3 n-grams skipped\n"


# ---- 7. --threads ----------------------------------------------------------------------------------


# The step the workers run, in a module of its own: a spawned worker imports the step's module to
# unpickle its job, and this test module's ``from conftest import ...`` could find another folder's
# conftest.py first on the worker's sys.path.
OMP_THREADS_SEEN = """
import os

from herd.data.document import Document
from herd.data.step import Step


class OmpThreadsSeen(Step):
    \"\"\"Labels each document with the OMP_NUM_THREADS its process sees (PyTorch's thread count at start).\"\"\"

    name = "omp_threads_seen"

    def process(self, doc: Document) -> Document:
        doc.metadata["omp"] = os.environ.get("OMP_NUM_THREADS")
        return doc
"""


def test_threads_reach_the_worker_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    (tmp_path / "omp_threads_seen.py").write_text(OMP_THREADS_SEEN)
    monkeypatch.syspath_prepend(str(tmp_path))
    from omp_threads_seen import OmpThreadsSeen

    monkeypatch.setitem(registry.STEPS, OmpThreadsSeen.name, OmpThreadsSeen)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # restored after the test
    for f in range(2):  # two files: two tasks on two spawned workers
        _write(tmp_path / "in" / f"{f}.jsonl", [f"document {f}"], f"{f}-")
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        '[[source]]\nname = "web"\nreader = "jsonl"\ninputs = ["in/*.jsonl"]\ntasks = 2\n'
        'steps = [{type = "omp_threads_seen"}]\n'
    )
    before = torch.get_num_threads()
    try:
        argv = ["data", "build", str(recipe), "-o", str(tmp_path / "out"), "--workers", "2", "--threads", "1"]
        assert _cli(capsys, *argv, "--quiet")[0] == 0
        assert torch.get_num_threads() == 1 and os.environ["OMP_NUM_THREADS"] == "1"
    finally:
        torch.set_num_threads(before)
    kept = JsonlReader().read_files(sorted((tmp_path / "out" / "documents" / "web").glob("*.jsonl.gz")))
    assert [d.metadata["omp"] for d in kept] == ["1", "1"]


def test_the_help_tells_workers_from_threads(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["data", "build", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--workers WORKERS processes of the local executor, each running whole tasks" in text
    assert "--threads N PyTorch's CPU threads in each process" in text
