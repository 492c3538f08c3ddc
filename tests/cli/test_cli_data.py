"""``herd data``: bad flags and recipes are one line naming the flag or key (exit 2); Ctrl-C is exit 130."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from herd.cli import main

GOOD_SOURCE = '[[source]]\nname = "web"\nreader = "jsonl"\ninputs = ["in.jsonl"]\n'


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse exits from inside main, as it does for the console script
        code = exc.code
    return code, capsys.readouterr().err.strip()


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (
            ["build", "r.toml", "--output", "o", "--workers", "0"],
            "argument --workers: must be at least 1, got 0",
        ),
        (["build", "r.toml", "--output", "o", "--workers", "-2"], "argument --workers: must be at least 1"),
        (
            ["build", "r.toml", "--output", "o", "--workers", "two"],
            "argument --workers: 'two' is not an integer",
        ),
        (
            ["train-lm", "in.jsonl", "--order", "0", "--output", "m.arpa"],
            "argument --order: must be at least 1",
        ),
    ],
)
def test_bad_flags_are_one_line(
    flags: list[str],
    named: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r.toml").write_text(GOOD_SOURCE)
    code, err = _run(["data", *flags], capsys)
    assert code == 2
    assert f"error: {named}" in err.splitlines()[-1], err
    assert not (tmp_path / "o").exists() and not (tmp_path / "m.arpa").exists()


@pytest.mark.parametrize(
    ("recipe", "named"),
    [
        ('[recipe]\nworkers = "4"\n' + GOOD_SOURCE, "recipe.workers: expected an integer, got '4'"),
        (
            "[recipe]\ntokens_per_shard = 0\n" + GOOD_SOURCE,
            "recipe.tokens_per_shard: must be more than 0, got 0",
        ),
        ("[recipe]\nexclusions = 1\n" + GOOD_SOURCE, "recipe.exclusions: expected true or false, got 1"),
        ("recipe = [1, 2]\n" + GOOD_SOURCE, "recipe: expected a table, got [1, 2]"),
        (GOOD_SOURCE + 'weight = "0.5"\n', "source[0].weight: expected a number, got '0.5'"),
        (GOOD_SOURCE + "reader_args = [1]\n", "source[0].reader_args: expected a table, got [1]"),
        (GOOD_SOURCE + "tasks = 2.5\n", "source[0].tasks: expected an integer, got 2.5"),
        (GOOD_SOURCE + "wieght = 1\n", "source[0]: unknown key(s) wieght (did you mean 'weight'? known: "),
        (GOOD_SOURCE + 'steps = "c4"\n', "source[0].steps: expected a list, got 'c4'"),
        (
            GOOD_SOURCE + 'steps = [{type = "c5"}]\n',
            "source[0] 'web', steps[0] 'c5': unknown step 'c5' (known: book_dedup, bucket_line_dedup, c4, ",
        ),
        (
            GOOD_SOURCE + 'steps = [{type = "c4"}, {type = "gopher_qualty"}]\n',
            "steps[1] 'gopher_qualty': unknown step 'gopher_qualty' (did you mean 'gopher_quality'? known: ",
        ),
        (
            GOOD_SOURCE + 'steps = [{type = "c4", min_sentence = 3}]\n',
            "source[0] 'web', steps[0] 'c4': min_sentence: unknown argument (did you mean 'min_sentences'? "
            "known: drop_curly_bracket, ",
        ),
        (
            GOOD_SOURCE + 'steps = [{type = "gopher_quality", min_words = "50"}]\n',
            "source[0] 'web', steps[0] 'gopher_quality': min_words: expected int, got '50'",
        ),
        (
            GOOD_SOURCE + 'steps = [{type = "dirty_words", words = "sex"}]\n',
            "steps[0] 'dirty_words': words: expected Iterable[str] | None, got 'sex'",
        ),
        (
            GOOD_SOURCE + 'steps = [{type = "c4"}, {type = "minhash_dedup", threshold = 1.5}]\n',
            "source[0] 'web', steps[1] 'minhash_dedup': threshold: must be in [0, 1], got 1.5",
        ),
        (
            GOOD_SOURCE + 'steps = [{type = "gopher_quality", max_words = nan}]\n',
            "steps[0] 'gopher_quality': max_words: expected int, got nan",
        ),
        (
            GOOD_SOURCE + 'steps = [{type = "semantic_dedup", eps = nan}]\n',
            "steps[0] 'semantic_dedup': eps: must be in [0, 2], got nan",
        ),
        (
            GOOD_SOURCE + 'steps = [{type = "gopher_repetition", top_ngrams = {"2" = 0.2, "3" = 1.5}}]\n',
            "steps[0] 'gopher_repetition': top_ngrams.3: must be in [0, 1], got 1.5",
        ),
        (
            GOOD_SOURCE + 'steps = [{type = "c4", min_sentences = -1}]\n',
            "steps[0] 'c4': min_sentences: must be at least 0, got -1",
        ),
        (
            GOOD_SOURCE + 'steps = [{type = "ngram_coverage", n = 0}]\n',
            "steps[0] 'ngram_coverage': n: must be at least 1, got 0",
        ),
        (
            GOOD_SOURCE + 'steps = [{type = "wiki_reference", threshold = 0.3}]\n',
            "source[0] 'web', steps[0] 'wiki_reference': missing argument 'model_path' (str | Path)",
        ),
        (
            GOOD_SOURCE.replace('"jsonl"', '"jsnol"'),
            "source[0] 'web', reader 'jsnol': unknown reader 'jsnol' (did you mean 'jsonl'? known: arxiv, ",
        ),
        (GOOD_SOURCE.replace('"web"', '"../web"'), "source[0].name: '../web' is not a plain name"),
        (
            GOOD_SOURCE + 'reader_args = {max_record_bytes = "1MB"}\n',
            "source[0] 'web', reader 'jsonl': max_record_bytes: expected int, got '1MB'",
        ),
        (
            GOOD_SOURCE.replace('"jsonl"', '"gutenberg"') + "reader_args = {max_record_byte = 5}\n",
            "reader 'gutenberg': max_record_byte: unknown argument (did you mean 'max_record_bytes'? known: "
            "max_record_bytes, source)",
        ),
        (
            GOOD_SOURCE.replace('"jsonl"', '"gutenberg"') + "reader_args = {max_record_bytes = 0}\n",
            "reader 'gutenberg': max_record_bytes: must be at least 1, got 0",
        ),
    ],
)
def test_recipe_values_of_the_wrong_type_are_one_line_naming_the_key(
    recipe: str, named: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "r.toml").write_text(recipe)
    (tmp_path / "in.jsonl").write_text('{"text": "a document"}\n')
    code, err = _run(["data", "build", str(tmp_path / "r.toml"), "--output", str(tmp_path / "o")], capsys)
    assert code == 2
    assert err.startswith(f"herd: error: {tmp_path / 'r.toml'}: ") and "\n" not in err, err
    assert named in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("manifest", "named"),
    [
        ([1], "manifest.json: expected a table, got [1]"),
        (
            {"sources": {"web": {"weight": "1", "epochs": 1, "documents": 3}}},
            "sources.web.weight: expected a number",
        ),
        ({"sources": {"web": {"weight": 1, "epochs": 1}}}, "sources.web: missing key 'documents'"),
        ({"steps": {"web": [{"name": "read:jsonl"}]}}, "steps.web[0]: missing key 'docs_in'"),
        (
            {"sources": {"web": {"weight": 1, "epochs": 1, "documents": 3, "val_tokens": "7"}}},
            "sources.web.val_tokens: expected an integer, got '7'",
        ),
        ({"tokenizer": 3}, "manifest.json: tokenizer: expected a string, got 3"),
        ({"documents_only": {"next": 1}}, "manifest.json: documents_only.next: expected a string, got 1"),
        (
            {"splits": {"train": {"web": {"shards": [{"tokens": 3}]}}}},
            "splits.train.web.shards[0].tokens: expected a",
        ),
    ],
)
def test_stats_of_a_damaged_manifest_is_one_line_naming_the_key(
    manifest: object, named: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    code, err = _run(["data", "stats", str(tmp_path)], capsys)
    assert code == 2 and "\n" not in err and named in err, err
    assert not (tmp_path / "stats.png").exists()


def test_a_recipe_table_key_spelling_an_integer_reaches_the_step(tmp_path: Path) -> None:
    """``top_ngrams = {"2" = 0.5}``: TOML keys are strings; the step gets the integer 2."""
    from herd.data.recipe.config import load_recipe
    from herd.data.recipe.registry import make_step

    (tmp_path / "r.toml").write_text(
        GOOD_SOURCE + 'steps = [{type = "gopher_repetition", top_ngrams = {"2" = 0.5}}]\n'
    )
    step = load_recipe(tmp_path / "r.toml").sources[0].steps[0]
    assert make_step(step.type, step.args, "here").top_ngrams == {2: 0.5}  # type: ignore[attr-defined]


def _group_ends(group: int, seconds: float = 10) -> bool:
    """Whether every process of ``group`` is gone within ``seconds`` (the resource tracker exits last)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


SLOW_STEP = """
import time
from herd.data.recipe import registry
from herd.data.step import Step


class Slow(Step):
    name = "slow"

    def process(self, doc):
        time.sleep(0.01)
        return doc


registry.STEPS["slow"] = Slow
"""
HERD_WITH_SLOW_STEP = "import sys, slowstep\nfrom herd.cli import main\nsys.exit(main(sys.argv[1:]))\n"


def test_ctrl_c_during_a_multi_worker_build_is_exit_130_without_tracebacks(
    tmp_path: Path, default_sigint: Callable[[], None]
) -> None:
    """SIGINT to the whole process group (a terminal's Ctrl-C) while two workers write shards."""
    (tmp_path / "slowstep.py").write_text(SLOW_STEP)
    for f in range(4):
        (tmp_path / f"{f}.jsonl").write_text(
            "".join(json.dumps({"text": f"doc {f} {i}"}) + "\n" for i in range(500))
        )
    (tmp_path / "r.toml").write_text(
        '[[source]]\nname = "web"\nreader = "jsonl"\ninputs = ["*.jsonl"]\ntasks = 4\nsteps = [{type = "slow"}]\n'
    )
    out = tmp_path / "out"
    argv = ["data", "build", "r.toml", "--output", "out", "--workers", "2"]
    process = subprocess.Popen(
        [sys.executable, "-c", HERD_WITH_SLOW_STEP, *argv],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=default_sigint,
    )
    deadline = time.monotonic() + 60
    while process.poll() is None and not list(out.rglob("*.tmp")) and time.monotonic() < deadline:
        time.sleep(0.01)  # until a worker is writing a shard
    assert process.poll() is None, process.communicate()[1].decode()
    os.killpg(process.pid, signal.SIGINT)
    out_text, err = process.communicate(timeout=60)
    assert process.returncode == 130, (out_text + err).decode()
    assert err.decode().strip() == "herd: error: interrupted"
    assert _group_ends(process.pid), "a worker outlived the build"
    assert not list(out.rglob("*.tmp"))  # the interrupted workers discarded their shards
    assert not (out / "manifest.json").exists()
