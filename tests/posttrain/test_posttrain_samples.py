"""The committed post-training samples (data/samples/posttrain): schema, splits, counts.

Reads only the committed files (no installed dataset packages), so it runs anywhere in well under
a second. ``data/samples/posttrain/build.py`` rebuilds the files; its README documents them.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from functools import cache
from pathlib import Path

import pytest

FOLDER = Path(__file__).resolve().parents[2] / "data" / "samples" / "posttrain"
PREFERENCES = ("preferences-train.jsonl", "preferences-val.jsonl")
SFT = ("sft-train.jsonl", "sft-val.jsonl")
FILES = (*PREFERENCES, *SFT, "rs-prompts.jsonl")
RATINGS = {"significantly_better", "better", "slightly_better", "negligibly_better"}
BENCHMARKS = {"openbookqa", "commonsense_qa", "social_i_qa", "piqa", "hellaswag", "winogrande", "boolq"}

REQUIRED = {
    "preferences": {"prompt", "chosen", "rejected", "rating", "source"},
    "sft": {"messages", "source"},
    "rs": {"prompt", "source"},
}
OPTIONAL = {"preferences": {"origin", "safety"}, "sft": {"origin", "system"}, "rs": set()}


def kind(name: str) -> str:
    return name.split("-")[0]


@cache
def rows(name: str) -> tuple[dict, ...]:
    lines = (FOLDER / name).read_text(encoding="utf-8").splitlines()
    assert lines, f"{name} is empty"
    return tuple(json.loads(line) for line in lines)


def nonempty(text: object) -> bool:
    return isinstance(text, str) and text.strip() != ""


def context(row: dict) -> tuple[str, ...]:
    """What a model is shown before it answers: the prompt, or every message but the last."""
    if "prompt" in row:
        return (row["prompt"],)
    return tuple(m["content"] for m in row["messages"][:-1])


@pytest.mark.parametrize("name", FILES)
def test_rows_have_the_documented_keys_and_no_empty_text(name: str) -> None:
    required, optional = REQUIRED[kind(name)], OPTIONAL[kind(name)]
    for i, row in enumerate(rows(name)):
        where = f"{name}:{i + 1}"
        assert required <= row.keys() <= required | optional, f"{where}: keys {sorted(row)}"
        assert nonempty(row["source"]), where
        for key in ("prompt", "chosen", "rejected", "origin", "system"):
            if key in row:
                assert nonempty(row[key]), f"{where}: empty {key}"
        if kind(name) == "preferences":
            assert row["rating"] in RATINGS, where
            assert row["chosen"] != row["rejected"], where
            assert row.get("safety", True) is True, where


@pytest.mark.parametrize("name", SFT)
def test_conversations_alternate_and_end_with_the_assistant(name: str) -> None:
    for i, row in enumerate(rows(name)):
        where = f"{name}:{i + 1}"
        messages = row["messages"]
        assert len(messages) >= 2 and len(messages) % 2 == 0, where
        for j, message in enumerate(messages):
            assert message.keys() == {"role", "content"}, where
            assert message["role"] == ("user" if j % 2 == 0 else "assistant"), where
            assert nonempty(message["content"]), f"{where}: empty message {j}"


def test_train_and_val_share_no_prompt_and_no_source_row() -> None:
    train = [r for name in FILES if name.endswith("-train.jsonl") for r in rows(name)]
    val = [r for name in FILES if name.endswith("-val.jsonl") for r in rows(name)]
    assert not {context(r) for r in train} & {context(r) for r in val}
    train_origins = {r["origin"] for r in train if "origin" in r}
    val_origins = {r["origin"] for r in val if "origin" in r}
    assert not train_origins & val_origins


def test_no_arc_row_is_used() -> None:
    """ARC's validation split is kept for the evaluation stage."""
    for name in FILES:
        for row in rows(name):
            assert "arc" not in row["source"].lower()
            assert not row.get("origin", "").startswith("ai2_arc")


def test_humaneval_rejected_solutions_are_not_canonical() -> None:
    pairs = [r for name in PREFERENCES for r in rows(name) if r["source"] == "humaneval"]
    canonical = {r["chosen"] for r in pairs}
    assert len(pairs) >= 100
    for row in pairs:
        assert re.fullmatch(r"HumanEval/\d+", row["origin"])
        assert row["rejected"] not in canonical, row["origin"]
        assert row["rating"] == "significantly_better"
    train, val = ({r["origin"] for r in rows(name) if r["source"] == "humaneval"} for name in PREFERENCES)
    assert val and not train & val  # split by task: val problems are unseen


def test_each_benchmark_is_balanced_and_boolq_answers_are_too() -> None:
    for name in PREFERENCES:
        per_source = Counter(r["source"] for r in rows(name))
        assert per_source.keys() >= BENCHMARKS, name
        assert len({per_source[b] for b in BENCHMARKS}) == 1, f"{name}: {per_source}"
        boolq = Counter(r["chosen"].split(",")[0] for r in rows(name) if r["source"] == "boolq")
        assert boolq["Yes"] == boolq["No"], f"{name}: {boolq}"


def test_handwritten_parts_cover_what_the_readme_promises() -> None:
    pairs = [r for name in PREFERENCES for r in rows(name) if r["source"] == "handwritten"]
    assert len(pairs) >= 36
    assert {r["rating"] for r in pairs} == RATINGS
    safety = [r for r in pairs if r.get("safety")]
    assert len(safety) >= 4
    assert all(r["source"] == "handwritten" for name in PREFERENCES for r in rows(name) if r.get("safety"))
    chats = [r for name in SFT for r in rows(name) if r["source"] == "handwritten"]
    assert len(chats) >= 12 and all(len(r["messages"]) >= 4 for r in chats)
    assert 40 <= len(rows("rs-prompts.jsonl")) <= 60
    assert len({r["prompt"] for r in rows("rs-prompts.jsonl")}) == len(rows("rs-prompts.jsonl"))


def readme_counts() -> Counter:
    text = (FOLDER / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- counts:begin.*?<!-- counts:end -->", text, re.S)
    assert block, "README.md has no counts block"
    table = re.findall(r"^\| (\S+\.jsonl) \| (\S+) \| (\d+) \|$", block.group(0), re.M)
    assert table, "README.md's counts block has no rows"
    return Counter({(name, source): int(n) for name, source, n in table})


def test_counts_match_the_readme_table() -> None:
    actual = Counter((name, r["source"]) for name in FILES for r in rows(name))
    assert readme_counts() == actual


def test_the_committed_files_stay_small() -> None:
    assert sum(p.stat().st_size for p in FOLDER.iterdir() if p.is_file()) < 3_000_000
