"""``herd eval`` end to end on a random model and a local task: the files it writes, their agreement with
the library's scores, reuse of finished tasks, and the published-score column for known presets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from infer_helpers import tiny_model
from PIL import Image

from herd.checkpoint.base import CheckpointInfo
from herd.checkpoint.hf import write_hf
from herd.checkpoint.load import model_tensors
from herd.cli import main
from herd.eval.multiple_choice import evaluate_multiple_choice
from herd.eval.report import REFERENCE, known_preset, markdown_table, reference_score
from herd.eval.result import Metric, TaskResult
from herd.eval.tasks import load_task
from herd.infer.engine import Engine
from herd.infer.loading import load_for_inference
from herd.model.presets import get_preset, preset_names
from herd.tokenizer import load_tokenizer

QUESTIONS = [
    {"q": "The sky is", "options": ["blue", "green", "made of cheese"], "label": 0},
    {"q": "Two and two make", "options": ["three", "four"], "label": 1},
    {"q": "Water is", "options": ["wet", "dry", "loud", "square"], "label": 0},
    {"q": "Fire is", "options": ["cold", "hot"], "label": 1},
    {"q": "Ice is", "options": ["hot", "cold"], "label": 1},
]


@pytest.fixture
def tasks(tmp_path: Path) -> Path:
    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "facts.jsonl").write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    (folder / "facts.toml").write_text(
        f'name = "facts"\npath = "{folder / "facts.jsonl"}"\ntext = "Question: {{q}}\\nAnswer:"\n'
        'choices = "options"\ngold = "label"\n'
    )
    return folder


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_eval_writes_scores_the_library_computes(
    tasks: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    argv = ("eval", "llama2-tiny", "--random", "--tasks", "facts", "--tasks-dir", str(tasks), "-o", str(out))
    code, stdout, err = run(capsys, *argv, "--batch-size", "3", "--quiet")
    assert code == 0, err
    model, tokenizer = load_for_inference("llama2-tiny", random=True)
    expected = evaluate_multiple_choice(load_task(tasks / "facts.toml"), Engine(model), tokenizer)
    summary = json.loads((out / "results.json").read_text())
    (row,) = summary["tasks"]
    assert row["task"] == "facts" and row["n"] == 5 and row["kind"] == "multiple_choice"
    for metric in expected.metrics:
        assert row["metrics"][metric.name] == {"value": metric.value, "ci95": metric.ci}
    assert summary["preset"] == "llama2-tiny" and row["reference"] is None
    examples = [json.loads(line) for line in (out / "examples" / "facts.jsonl").read_text().splitlines()]
    assert [e["id"] for e in examples] == [f"facts/{i}" for i in range(5)]
    assert [len(e["logprobs"]) for e in examples] == [len(q["options"]) for q in QUESTIONS]
    for got, want in zip(examples, expected.examples, strict=True):
        assert got["logprobs"] == pytest.approx(want["logprobs"], abs=1e-5)  # batch 3 == batch 16
    assert stdout == (out / "results.md").read_text() and "| facts | 5 | acc " in stdout
    with Image.open(out / "results.png") as image:
        assert image.format == "PNG"

    # Run again: the finished task is kept, not scored again; other settings score it again.
    code, _, err = run(capsys, *argv)
    assert code == 0 and "facts: kept from" in err
    code, _, err = run(capsys, *argv, "--limit", "2")
    assert code == 0 and "kept" not in err
    assert json.loads((out / "results.json").read_text())["tasks"][0]["n"] == 2
    code, _, err = run(capsys, *argv, "--limit", "2", "--rerun")
    assert code == 0 and "kept" not in err


def test_json_prints_the_results_file(
    tasks: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o"
    code, stdout, _ = run(
        capsys,
        "eval",
        "llama2-tiny",
        "--random",
        "--tasks",
        str(tasks / "facts.toml"),
        "-o",
        str(out),
        "--json",
    )
    assert code == 0 and json.loads(stdout) == json.loads((out / "results.json").read_text())


def test_a_run_directory_is_evaluated_through_its_hf_export(
    tasks: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], llama3_tokenizer_dir: Path
) -> None:
    vocab = load_tokenizer(llama3_tokenizer_dir).vocab_size
    model = tiny_model(get_preset("llama3-tiny").replace(vocab_size=vocab))
    run_dir = tmp_path / "run"
    write_hf(run_dir / "hf", CheckpointInfo(model.config), model_tensors(model))
    code, _, err = run(
        capsys,
        "eval",
        str(run_dir),
        "--tokenizer",
        str(llama3_tokenizer_dir),
        "--tasks",
        "facts",
        "--tasks-dir",
        str(tasks),
        "-o",
        str(tmp_path / "o"),
        "--quiet",
    )
    assert code == 0, err
    assert json.loads((tmp_path / "o" / "results.json").read_text())["model"] == str(run_dir / "hf")


def test_known_presets_get_the_published_scores() -> None:
    assert known_preset(get_preset("llama2-7b").replace(max_seq_len=2048)) == "llama2-7b"
    assert known_preset(get_preset("llama2-7b").replace(dim=1024)) is None
    assert reference_score("llama2-7b", "mmlu") == pytest.approx(0.453)
    assert reference_score("llama3.1-8b", "gsm8k") == pytest.approx(0.572)
    assert reference_score("llama2-7b", "boolq") is None and reference_score(None, "mmlu") is None
    assert set(REFERENCE) <= set(preset_names())
    result = TaskResult(
        "mmlu", "multiple_choice", 100, (Metric("acc", 0.5, 0.098), Metric("acc_norm", 0.4, 0.096))
    )
    table = markdown_table([result], "llama2-7b")
    assert "| mmlu | 100 | acc 50.0 ± 9.8 | acc_norm 40.0 ± 9.6 | 45.3 |" in table
    assert "llama2-7b published" in table.splitlines()[0]
