"""``herd plan``: the parser registered by herd.cli.plan, run on presets; and herd model info's pointer to it."""

from __future__ import annotations

import argparse
import json

import pytest

from herd.cli import model, plan
from herd.errors import ConfigError, InputError


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    plan.register(parser.add_subparsers())
    args = parser.parse_args(["plan", *argv])
    return args.func(args)


def test_table4_prints_the_papers_rows_beside_herds(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["--table4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    row = {line.split("  ")[0]: line for line in lines}
    assert "430 / 425.3" in row["TFLOPs / GPU"] and "380 / 375.8" in row["TFLOPs / GPU"]
    assert row["DP"].split()[1:] == ["64", "/", "64", "128", "/", "128", "8", "/", "8"]
    assert row["memory / GPU (selective)"].count(": fits") == 3
    assert row["tokens / batch"].count("16,777,216") == 3


def test_table4_json_pairs_paper_and_herd(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["--table4", "--json", "--recompute", "none"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["paper"]["dp"] for r in rows] == [r["herd"]["dp"] for r in rows] == [64, 128, 8]
    assert all(r["herd"]["recompute"] == "none" for r in rows)
    assert rows[0]["herd"]["memory"]["total"] == sum(
        rows[0]["herd"]["memory"][k] for k in ("parameters", "gradients", "optimizer", "activations")
    )


def test_one_plan_as_text_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["llama2-7b", "--gpus", "8", "--seq", "4096", "--batch-tokens", "4194304"]
    assert _run(argv) == 0
    text = capsys.readouterr().out
    assert "8 GPUs = TP 1 · PP 1 · CP 1 · DP 8" in text and "38.72 GB of 80 GB: fits" in text
    assert _run([*argv, "--json", "--gpu-memory-gb", "24"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["sequences_per_replica"] == 128 and report["fits"] is False
    assert report["memory"]["total"] == 38_723_403_776


def test_seq_defaults_to_the_context_length(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["llama2-7b", "--gpus", "8", "--batch-tokens", "4194304", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["seq"] == 4096


@pytest.mark.parametrize(
    ("argv", "error", "message"),
    [
        (["llama2-7b", "--batch-tokens", "4096"], InputError, "--gpus required"),
        (["--gpus", "8", "--batch-tokens", "4096"], InputError, "PRESET_OR_PATH required"),
        (["llama2-7b", "--gpus", "12", "--tp", "8", "--batch-tokens", "4096"], ConfigError, "not divisible"),
        (["llama2-7b", "--gpus", "8", "--batch-tokens", "1000"], ConfigError, "batch tokens (1,000)"),
        (["llama2-7b", "--gpus", "64", "--tp", "64", "--batch-tokens", "262144"], ConfigError, "tp (64)"),
    ],
)
def test_bad_plans_are_one_line(argv: list[str], error: type[Exception], message: str) -> None:
    with pytest.raises(error) as raised:
        _run(argv)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_model_info_points_to_plan(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    model.register(parser.add_subparsers())
    with pytest.raises(SystemExit):
        parser.parse_args(["model", "info", "--help"])
    assert "see also: herd plan PRESET" in capsys.readouterr().out
