"""The runs CSV: rows written by the sweep read back exactly; a bad file is one line naming file, row and column."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from herd.errors import HerdError, InputError
from herd.scaling.runs import COLUMNS, Run, append_run, read_runs, write_runs

FIT = ["params", "tokens", "flops", "val_loss"]

FIRST = Run(
    "small-1e17",
    1e17,
    123_456_789,
    98_765_432,
    135_000_000_000,
    1.0000000000000002e17,
    9.99e16,
    2.718281828459045,
)
SECOND = Run(
    "large-1e17",
    1e17,
    987_654_321,
    900_000_000,
    16_875_000_000,
    1.1e17,
    1.0000001e17,
    2.5,
    "arc_easy",
    1.25,
    0.0,
)


def test_rows_read_back_exactly_with_python_s_csv_reader(tmp_path: Path) -> None:
    path = tmp_path / "runs.csv"
    append_run(path, FIRST)
    append_run(path, SECOND)
    assert read_runs(path, FIT) == [FIRST, SECOND]  # floats round-trip (repr), empty eval cells are None
    with open(path, newline="") as f:
        records = list(csv.DictReader(f))
    assert tuple(records[0]) == COLUMNS
    assert records[0]["eval_task"] == "" and records[1]["eval_acc"] == "0.0"
    assert float(records[0]["flops"]) == 1.0000000000000002e17


def test_a_reader_needs_only_its_columns(tmp_path: Path) -> None:
    path = tmp_path / "hand.csv"
    path.write_text("run,params,tokens,val_loss,comment\na,10,200,3.5,first\nb,20,100,3.25,\n")
    runs = read_runs(path, ["params", "tokens", "val_loss"])
    assert [(r.run, r.params, r.tokens, r.val_loss, r.flops) for r in runs] == [
        ("a", 10, 200, 3.5, None),
        ("b", 20, 100, 3.25, None),
    ]


@pytest.mark.parametrize(
    ("text", "required", "message"),
    [
        ("run,params,tokens\na,1,2\n", FIT, r"missing column 'flops' \(the header is 'run,params,tokens'\)"),
        (
            "run,params,tokens,flops,val_loss\na,1,2,-3e18,2.5\n",
            FIT,
            r"row 1, column 'flops': must be positive",
        ),
        (
            "run,params,tokens,flops,val_loss\na,1,2,3,2\nb,1,2,3,nan\n",
            FIT,
            r"row 2, column 'val_loss': expected a finite",
        ),
        ("run,params,tokens,flops,val_loss\na,1,2,inf,2\n", FIT, r"row 1, column 'flops': expected a finite"),
        ("run,params,tokens,flops,val_loss\na,1,2,3,\n", FIT, r"row 1, column 'val_loss' is empty"),
        (
            "run,params,tokens,flops,val_loss\na,1.5,2,3,2\n",
            FIT,
            r"row 1, column 'params': expected an integer, got '1.5'",
        ),
        ("run,params,tokens,flops,val_loss\na,0,2,3,2\n", FIT, r"row 1, column 'params': must be positive"),
        ("run,eval_acc\na,1.5\n", ["eval_acc"], r"row 1, column 'eval_acc': an accuracy is at most 1"),
        ("run,params,tokens,flops,val_loss\n", FIT, "no rows"),
        ("", FIT, "missing column 'params'"),
    ],
)
def test_a_bad_file_is_one_line_naming_file_row_and_column(
    tmp_path: Path, text: str, required: list[str], message: str
) -> None:
    path = tmp_path / "runs.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=message) as caught:
        read_runs(path, required)
    assert str(caught.value).startswith(f"{path}: ") and "\n" not in str(caught.value)


def test_a_missing_file_and_an_unknown_column_name(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no_such\.csv: no such file"):
        read_runs(tmp_path / "no_such.csv", FIT)
    with pytest.raises(ValueError, match="unknown runs column 'loss'"):
        read_runs(tmp_path / "no_such.csv", ["loss"])


def test_append_refuses_a_repeated_run_and_a_foreign_file(tmp_path: Path) -> None:
    path = tmp_path / "runs.csv"
    append_run(path, FIRST)
    with pytest.raises(HerdError, match="already has a row for run 'small-1e17'"):
        append_run(path, FIRST)
    foreign = tmp_path / "other.csv"
    foreign.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match=r"other\.csv: not a runs CSV"):
        append_run(foreign, SECOND)
    assert foreign.read_text() == "a,b\n1,2\n"


def test_a_crash_while_appending_leaves_the_file_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file is rewritten under a staging name and renamed: a failed write never leaves half a row."""
    path = tmp_path / "runs.csv"
    write_runs(path, [FIRST])
    before = path.read_bytes()

    def killed(src: object, dst: object) -> None:
        raise OSError("killed before the rename")

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(OSError):
        append_run(path, SECOND)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs.csv"]  # the staging file is gone
    assert read_runs(path, FIT) == [FIRST]


def test_write_runs_replaces_the_file(tmp_path: Path) -> None:
    path = tmp_path / "runs.csv"
    write_runs(path, [FIRST, SECOND])
    write_runs(path, [SECOND])
    (only,) = read_runs(path, [*FIT, "eval_nll", "eval_acc"])
    assert only == SECOND
