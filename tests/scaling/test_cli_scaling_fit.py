"""``herd scaling fit`` (herd.cli.scaling_fit): the tables, fit.json, the figures and the refusals, on a runs CSV
written through herd.scaling.runs from Epoch's L(N, D) over an IsoFLOP grid."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from herd.cli.scaling_fit import add_parser
from herd.errors import InputError
from herd.scaling.chinchilla import EPOCH
from herd.scaling.runs import Run, write_runs

BUDGETS = (1e18, 4e18, 1.6e19, 6.4e19, 2.56e20)
PNG = b"\x89PNG\r\n\x1a\n"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="herd scaling")
    add_parser(parser.add_subparsers())
    return parser.parse_args(argv)


@pytest.fixture(scope="module")
def runs_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seven sizes per budget around Epoch's optimum, losses from Epoch's law with 0.5% noise."""
    rng = np.random.default_rng(0)
    runs = []
    for budget in BUDGETS:
        centre, _ = EPOCH.optimal(budget)
        for i, n in enumerate(float(centre) * np.geomspace(1 / 4, 4, 7)):
            params = round(n)
            tokens = round(budget / (6 * params))
            loss = float(EPOCH.loss(params, tokens)) * float(np.exp(rng.normal(0.0, 0.005)))
            runs.append(
                Run(
                    run=f"c{budget:.0e}-{i}",
                    budget=budget,
                    params=params,
                    non_embedding_params=params,
                    tokens=tokens,
                    flops=6.0 * params * tokens,
                    flops_6nd=6.0 * params * tokens,
                    val_loss=loss,
                )
            )
    path = tmp_path_factory.mktemp("sweep") / "runs.csv"
    write_runs(path, runs)
    return path


@pytest.fixture(scope="module")
def fitted(runs_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("fit")
    args = parse(["fit", str(runs_csv), "--bootstrap", "8", "--seed", "2", "-o", str(out)])
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert args.func(args) == 0
    return out, printed.getvalue()


def test_both_approaches_print_the_fits_beside_the_published_values(fitted) -> None:
    _, text = fitted
    assert "Chinchilla approach 3: 35 runs, 4500 L-BFGS starts" in text
    assert "8 bootstrap resamples" in text
    for published in ("1.69", "406.4", "1.817", "2085.4", "0.366"):
        assert published in text
    assert "IsoFLOP approach 2: 5 budgets, power law on the optimal tokens" in text
    assert "compute-optimal at 3.8e+25 FLOPs" in text
    assert "0.29" in text and "0.53" in text


def test_fit_json_holds_both_fits_and_the_allocation(fitted) -> None:
    out, _ = fitted
    record = json.loads((out / "fit.json").read_text())
    chin, iso = record["chinchilla"], record["isoflop"]
    assert record["target_flops"] == 3.8e25
    assert chin["points"] == 35 and chin["starts"] == 4500 and chin["bootstrap"] == 8
    assert set(chin["stderr"]) == {"E", "A", "B", "alpha", "beta"}
    assert abs(chin["alpha"] - EPOCH.alpha) < 0.1 and abs(chin["beta"] - EPOCH.beta) < 0.1
    opt = chin["optimal"]
    assert 6 * opt["params"] * opt["tokens"] == pytest.approx(3.8e25, rel=1e-9)
    assert opt["tokens_per_param"] == pytest.approx(opt["tokens"] / opt["params"], rel=1e-12)
    assert chin["published"]["epoch"]["B"] == 2085.4
    assert [m["budget"] for m in iso["minima"]] == list(BUDGETS)
    assert iso["law"]["of"] == "tokens"
    total = EPOCH.alpha + EPOCH.beta
    assert iso["law"]["alpha"] == pytest.approx(EPOCH.alpha / total, abs=0.05)
    assert iso["published"]["llama3"] == {"A": 0.29, "alpha": 0.53, "of": "tokens"}
    assert 6 * iso["optimal"]["params"] * iso["optimal"]["tokens"] == pytest.approx(3.8e25, rel=1e-9)


def test_the_figures_are_pngs(fitted) -> None:
    out, _ = fitted
    for name in ("chinchilla.png", "isoflop.png", "power_law.png"):
        assert (out / name).read_bytes().startswith(PNG), name


def test_json_flag_prints_fit_json_and_approach_2_alone_on_params(runs_csv, tmp_path, capsys) -> None:
    args = parse(
        ["fit", str(runs_csv), "--approach", "2", "--of", "params", "--target-flops", "1e22", "--json"]
    )
    args.output = tmp_path
    assert args.func(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((tmp_path / "fit.json").read_text())
    assert "chinchilla" not in printed
    assert printed["isoflop"]["law"]["of"] == "params"
    # Llama 3's tokens law restated for parameters under C = 6ND.
    assert printed["isoflop"]["published"]["llama3"]["alpha"] == pytest.approx(0.47)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit.json", "isoflop.png", "power_law.png"]


def test_output_defaults_to_the_csvs_directory(runs_csv, tmp_path) -> None:
    copy = tmp_path / "runs.csv"
    copy.write_bytes(runs_csv.read_bytes())
    args = parse(["fit", str(copy), "--approach", "2", "--json"])
    assert args.func(args) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "fit.json",
        "isoflop.png",
        "power_law.png",
        "runs.csv",
    ]


def test_a_csv_without_a_needed_column_is_an_input_error(tmp_path) -> None:
    csv = tmp_path / "runs.csv"
    csv.write_text("run,params,tokens\na,1,2\n")
    args = parse(["fit", str(csv), "--approach", "3"])
    with pytest.raises(InputError, match="missing column 'val_loss'"):
        args.func(args)
    assert not (tmp_path / "fit.json").exists()


def test_too_few_runs_is_an_input_error(tmp_path) -> None:
    write_runs(tmp_path / "runs.csv", [Run(run="a", params=10**8, tokens=10**9, val_loss=3.0)])
    args = parse(["fit", str(tmp_path / "runs.csv"), "--approach", "3"])
    with pytest.raises(InputError, match="needs at least 5 points, got 1"):
        args.func(args)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--target-flops", "0"], "must be a positive finite number"),
        (["--target-flops", "x"], "is not a number"),
        (["--approach", "1"], "invalid choice"),
        (["--bootstrap", "-1"], "must be 0 or more"),
    ],
)
def test_bad_flags_exit_2_with_one_line(argv, message, capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        parse(["fit", "runs.csv", *argv])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_a_minimum_outside_the_trained_sizes_is_warned_about(tmp_path, capsys) -> None:
    rows = []
    for budget, factors in ((1e19, (1 / 4, 1 / 2, 1, 2, 4)), (1e20, (3, 6, 12, 24))):
        centre, _ = EPOCH.optimal(budget)
        for i, factor in enumerate(factors):
            params = round(float(centre) * factor)
            tokens = round(budget / (6 * params))
            loss = float(EPOCH.loss(params, tokens))
            rows.append(
                Run(run=f"{budget:g}-{i}", budget=budget, params=params, tokens=tokens, val_loss=loss)
            )
    write_runs(tmp_path / "runs.csv", rows)
    args = parse(["fit", str(tmp_path / "runs.csv"), "--approach", "2"])
    assert args.func(args) == 0
    err = capsys.readouterr().err
    assert "warning: the minimum of budget 1e+20 lies outside the sizes trained for it" in err
    assert "1e+19" not in err
