"""``herd gatt build`` and ``herd gatt eval`` (Ghost Attention, Llama 2 §3.3) through ``herd.cli.main``.

The chat model is a tiny random Llama over SmolLM2's tokenizer (ChatML),
saved as a Hugging Face directory, so each command runs in about a second;
its answers are noise, and what is checked is where the instruction goes,
the weights, resuming, the files and the refusals of bad input.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import pytest

from herd.checkpoint.base import CheckpointInfo
from herd.checkpoint.hf import write_hf
from herd.checkpoint.load import model_tensors
from herd.cli import main
from herd.cli.posttrain import GATT_BUILD_DEFAULTS, GATT_CATEGORIES, GATT_EVAL_DEFAULTS
from herd.errors import ConfigError
from herd.model.build import build_model
from herd.model.presets import get_preset
from herd.posttrain import gatt
from herd.posttrain.data import SkipCounts, read_conversations
from herd.tokenizer import load_tokenizer
from herd.tokenizer.save import save_tokenizer


def chat(*turns: str, system: str | None = None) -> dict[str, Any]:
    """A conversation row: ``system``, then ``turns`` as user and assistant messages in turn."""
    messages = [{"role": "system", "content": system}] if system else []
    roles = ("user", "assistant")
    messages += [{"role": roles[n % 2], "content": text} for n, text in enumerate(turns)]
    return {"messages": messages}


CONVERSATIONS = [
    chat("Name a colour.", "Blue.", "Another one?", "Red.", "And a third?", "Green."),
    chat("What is a parser?", "A reader.", "Why is it useful?", "It checks.", system="Be brief."),
    chat("One turn only.", "So it is left out."),
    chat("Tell me about help.", "It explains.", "Is it short?", "Yes."),
]
USERS = [("Name a colour.", "Another one?", "And a third?"), ("What is a parser?", "Why is it useful?")]
USERS.append(("Tell me about help.", "Is it short?"))
SYSTEMS = [None, "Be brief.", None]


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path) -> Path:
    """A tiny random chat model with SmolLM2's tokenizer and chat template (Hugging Face directory)."""
    tokenizer = load_tokenizer(smollm2_gguf)
    config = get_preset("llama2-tiny").replace(vocab_size=tokenizer.vocab_size, max_seq_len=512)
    out = tmp_path_factory.mktemp("gatt") / "policy"
    write_hf(out, CheckpointInfo(config), model_tensors(build_model(config, seed=0)))
    save_tokenizer(tokenizer, out)
    return out


@pytest.fixture(scope="module")
def dialogues(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gatt-data") / "chats.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in CONVERSATIONS), encoding="utf-8")
    return path


def build_args(out: Path, policy: Path, dialogues: Path, *more: str) -> list[str]:
    flags = ["--max-new-tokens", "6", "--batch-size", "2", "--seed", "1"]
    return ["gatt", "build", str(out), "--policy", str(policy), "--dialogues", str(dialogues), *flags, *more]


def read_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_build_keeps_the_instruction_in_the_first_turn_and_resumes(
    policy: Path,
    dialogues: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "out"
    assert main(build_args(out, policy, dialogues, "--json")) == 0
    printed = json.loads(capsys.readouterr().out)
    rows = read_rows(out / "gatt.jsonl")
    assert printed["rows"] == len(rows) == printed["dialogues"] == 3 and printed["skipped"] == {}
    assert sum(printed["categories"].values()) == 3
    for row, users, system in zip(rows, USERS, SYSTEMS, strict=True):
        messages, kept = row["messages"], row["kept_instruction"]
        assert messages[0] == {"role": "system", "content": f"{system}\n\n{kept}" if system else kept}
        assert tuple(m["content"] for m in messages if m["role"] == "user") == users
        answers = [m for m in messages if m["role"] == "assistant"]
        assert [m.get("weight") for m in answers] == [0] * (len(answers) - 1) + [None]  # the last: weight 1
    skipped = SkipCounts()
    assert (
        len(list(read_conversations(out / "gatt.jsonl", skipped))) == 3 and not skipped
    )  # herd sft reads it

    files = {name: (out / name).read_bytes() for name in ("gatt.jsonl", "progress.jsonl")}

    def no_sampling(*args: object, **kwargs: object) -> None:
        raise AssertionError("a finished run sampled again")

    monkeypatch.setattr(gatt, "generate_ids", no_sampling)
    assert main(build_args(out, policy, dialogues)) == 0  # again: every batch is in progress.jsonl
    assert {name: (out / name).read_bytes() for name in files} == files
    text = capsys.readouterr().out
    assert "rows written            3" in text and "skipped dialogues       none" in text
    assert "instruction categories  " in text

    # the same samples, the instruction now appended to the first user message
    assert main(build_args(out, policy, dialogues, "--placement", "user")) == 0
    capsys.readouterr()
    for row, before, users, system in zip(read_rows(out / "gatt.jsonl"), rows, USERS, SYSTEMS, strict=True):
        first, *rest = (m["content"] for m in row["messages"] if m["role"] == "user")
        assert first == f"{users[0]}\n\n{row['kept_instruction']}" and tuple(rest) == users[1:]
        assert row["messages"][0]["content"] == (system or first)
        assert [m for m in row["messages"] if m["role"] == "assistant"] == [
            m for m in before["messages"] if m["role"] == "assistant"
        ]


def test_eval_writes_the_shares_per_turn_their_plot_and_a_table(
    policy: Path, dialogues: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "eval"
    models = ["--model", f"first={policy}", "--model", f"same model={policy}"]
    args = ["gatt", "eval", str(out), *models, "--dialogues", str(dialogues), "--max-new-tokens", "6"]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    report = json.loads((out / "following.json").read_text(encoding="utf-8"))
    assert list(report["models"]) == ["first", "same model"] and report["dialogue_count"] == 3
    first, same = report["models"].values()
    assert first["model"] == str(policy) and first["counts"][0] == 3 and len(first["counts"]) == 3
    assert {k: v for k, v in first.items() if k != "model"} == {k: v for k, v in same.items() if k != "model"}
    assert len(first["shares"]) == len(first["counts"]) and all(0 <= s <= 1 for s in first["shares"])
    assert lines[0].split() == ["turn", "first", "same", "model"]
    for t, line in enumerate(lines[1:4]):
        share = f"{first['shares'][t]:.0%} of {first['counts'][t]}"
        assert line.split() == [str(t + 1), *share.split(), *share.split()]
    assert lines[4] == f"wrote {out / 'following.json'} and {out / 'following.png'}"
    assert (out / "following.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


# Each bad input and the start of its one line on stderr.
ERRORS = {
    "missing dialogues": "herd: error: {missing}: no such file or directory",
    "single turns only": "herd: error: {single}: no conversation with 2 or more user turns",
    "model without label": "herd gatt eval: error: argument --model: expected LABEL=MODEL, got '{policy}'",
    "label twice": "herd: error: --model: label(s) given more than once: a",
    "missing second model": "herd: error: {missing}: no such checkpoint file or directory",
    "unknown placement": "herd gatt build: error: argument --placement: invalid choice: 'assistant'",
}


def exit_code(argv: list[str]) -> int:
    """What ``herd ARGV`` exits with, argparse's one-line flag errors (raised as ``SystemExit``) included."""
    try:
        return main(argv)
    except SystemExit as exited:
        return int(exited.code or 0)


@pytest.mark.parametrize("case", ERRORS)
def test_bad_input_is_one_line_with_exit_2_and_writes_nothing(
    case: str, policy: Path, dialogues: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, missing, single = tmp_path / "out", tmp_path / "missing.jsonl", tmp_path / "single.jsonl"
    single.write_text(json.dumps(CONVERSATIONS[2]) + "\n", encoding="utf-8")
    eval_args = ["gatt", "eval", str(out), "--dialogues", str(dialogues)]
    argv = {
        "missing dialogues": build_args(out, policy, missing),
        "single turns only": build_args(out, policy, single),
        "model without label": [*eval_args, "--model", str(policy)],
        "label twice": [*eval_args, "--model", f"a={policy}", "--model", f"a={policy}"],
        "missing second model": [*eval_args, "--model", f"a={policy}", "--model", f"b={missing}"],
        "unknown placement": build_args(out, policy, dialogues, "--placement", "assistant"),
    }[case]
    assert exit_code(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(ERRORS[case].format(missing=missing, single=single, policy=policy)), err
    assert err.count("\n") == 1
    assert not out.exists()


def test_the_flag_defaults_are_the_librarys() -> None:
    """herd.cli.posttrain writes them out (its parser imports no PyTorch): herd.posttrain.gatt's."""
    for function, defaults in (
        (gatt.build_gatt_dialogues, GATT_BUILD_DEFAULTS),
        (gatt.instruction_following, GATT_EVAL_DEFAULTS),
    ):
        parameters = inspect.signature(function).parameters
        assert {key: parameters[key].default for key in defaults} == defaults, function.__name__
    assert GATT_CATEGORIES == gatt.CATEGORIES


def test_categories_narrow_the_instructions() -> None:
    """--categories language: the three languages alone; an empty list keeps the pool; a category with
    no instruction in the pool (hobbies cannot be checked) is one ConfigError."""
    languages = gatt.of_categories(gatt.CHECKABLE, ["language"])
    assert [i.short for i in languages] == ["Language: French.", "Language: Spanish.", "Language: German."]
    assert gatt.of_categories(gatt.INSTRUCTIONS, []) == gatt.INSTRUCTIONS
    with pytest.raises(ConfigError, match="no instruction of the pool is in the categories"):
        gatt.of_categories(gatt.CHECKABLE, ["hobby"])
    with pytest.raises(ConfigError, match="unknown instruction categories"):
        gatt.of_categories(gatt.CHECKABLE, ["colour"])


@pytest.mark.parametrize("action", ["build", "eval"])
def test_help_shows_examples(action: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["gatt", action, "--help"])
    assert exited.value.code == 0
    assert f"herd gatt {action} runs/gatt " in capsys.readouterr().out
