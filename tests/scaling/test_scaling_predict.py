"""herd.scaling.predict and ``herd scaling predict``: Llama 3's two-step downstream prediction (§3.2.1).

The fits are checked against known parameters (synthetic points with noise),
against scipy's own linear regression, and against hand-computed values; the
points from a ``herd eval`` directory are read from files written by herd's own
report writer.
"""

from __future__ import annotations

import argparse
import json
import math
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import linregress

from herd.errors import ConfigError, InputError
from herd.eval.multiple_choice import QuestionScore, aggregate
from herd.eval.report import save_task, write_report
from herd.scaling.predict import (
    DownstreamFit,
    LineFit,
    Point,
    SigmoidFit,
    compute_optimal,
    fit_downstream,
    fit_line,
    fit_sigmoid,
    plot_prediction,
    point_from_eval,
    read_extra,
    read_sweep,
)
from herd.scaling.runs import Run, read_runs, write_runs

A, B = 2.0, -0.08
K, X0, CHANCE = 6.0, 1.1, 0.25


def true_acc(nll: np.ndarray) -> np.ndarray:
    return CHANCE + (1 - CHANCE) / (1 + np.exp(K * (nll - X0)))


def sweep_runs(task: str = "arc_challenge") -> list[Run]:
    """Three budgets × three sizes; the middle size of each budget has the lowest loss."""
    runs = []
    for budget in (1e18, 1e19, 1e20):
        for i, loss in enumerate((3.2, 3.0, 3.1)):
            flops = budget * (0.98 + 0.01 * i)
            nll = A + B * math.log10(flops) + 0.01 * (i != 1)
            acc = float(true_acc(np.array(nll)))
            runs.append(
                Run(
                    f"b{budget:g}-n{i}",
                    budget=budget,
                    flops=flops,
                    val_loss=loss - 0.1 * math.log10(budget / 1e18),
                    eval_task=task,
                    eval_nll=nll,
                    eval_acc=acc,
                )
            )
    return runs


@pytest.fixture
def runs_csv(tmp_path: Path) -> Path:
    path = tmp_path / "sweep" / "runs.csv"
    write_runs(path, sweep_runs())
    return path


def test_step1_recovers_a_and_b_and_matches_scipy() -> None:
    rng = np.random.default_rng(0)
    flops = np.logspace(18, 22, 25)
    nll = A + B * np.log10(flops) + rng.normal(0, 0.005, flops.size)
    line = fit_line(flops, nll)
    reference = linregress(np.log10(flops), nll)
    assert line.a == pytest.approx(reference.intercept, rel=1e-9)
    assert line.b == pytest.approx(reference.slope, rel=1e-9)
    assert line.r2 == pytest.approx(reference.rvalue**2, rel=1e-9)
    assert line.a == pytest.approx(A, abs=0.03)
    assert line.b == pytest.approx(B, abs=0.002)
    assert line.n == 25


def test_step2_recovers_k_and_x0() -> None:
    rng = np.random.default_rng(1)
    nll = rng.uniform(0.6, 1.8, 60)
    acc = true_acc(nll) + rng.normal(0, 0.01, nll.size)
    sigmoid = fit_sigmoid(nll, acc, CHANCE)
    assert sigmoid.k == pytest.approx(K, rel=0.1)
    assert sigmoid.x0 == pytest.approx(X0, abs=0.02)
    assert (sigmoid.floor, sigmoid.ceiling) == (CHANCE, 1.0)
    assert sigmoid.r2 is not None and sigmoid.r2 > 0.98


def test_step2_exact_points_are_fitted_exactly_from_far_starts() -> None:
    nll = np.array([0.2, 0.3, 0.4, 2.5, 2.6])
    sigmoid = fit_sigmoid(nll, CHANCE + 0.75 / (1 + np.exp(3.0 * (nll - 1.5))), CHANCE)
    assert (sigmoid.k, sigmoid.x0) == pytest.approx((3.0, 1.5), rel=1e-4)


def test_hand_computed_prediction() -> None:
    fit = DownstreamFit(
        "arc_challenge",
        LineFit(a=3.0, b=-0.1, r2=None, n=2),
        SigmoidFit(10.0, 1.0, 0.25, 1.0, None, 2),
        (),
        (),
    )
    nll, acc = fit.predict(1e22)
    assert nll == pytest.approx(0.8)
    assert acc == pytest.approx(0.25 + 0.75 / (1 + math.exp(-2.0)))


def test_two_points_give_the_line_through_them() -> None:
    line = fit_line([1e20, 1e22], [1.0, 0.8])
    assert float(line.nll(1e24)) == pytest.approx(0.6)
    assert line.r2 == pytest.approx(1.0)


def test_the_two_steps_compose() -> None:
    step = [Point(f"r{i}", f, A + B * math.log10(f), 0.0) for i, f in enumerate((1e18, 1e19, 1e20))]
    nll = np.linspace(0.5, 1.9, 12)
    accuracy = [
        Point(f"m{i}", 1e20, float(x), float(y))
        for i, (x, y) in enumerate(zip(nll, true_acc(nll), strict=True))
    ]
    fit = fit_downstream(step, accuracy, chance=CHANCE, task="arc_challenge")
    for flops in (1e19, 3e23, 3.8e25):
        nll_at, acc_at = fit.predict(flops)
        assert nll_at == pytest.approx(A + B * math.log10(flops))
        assert acc_at == pytest.approx(float(fit.sigmoid.acc(fit.line.nll(flops))))
        assert acc_at == pytest.approx(float(true_acc(np.array(nll_at))), abs=1e-4)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: fit_line([1e20], [1.0]), "needs at least 2 points"),
        (lambda: fit_line([1e20, 1e20, 1e20], [1.0, 0.9, 0.8]), "same FLOPs"),
        (lambda: fit_line([1e20, float("nan")], [1.0, 0.9]), "point 2's FLOPs is nan"),
        (lambda: fit_line([1e20, 1e21], [1.0, float("inf")]), "point 2's NLL is inf"),
        (lambda: fit_line([1e20, -1.0], [1.0, 0.9]), "not a positive finite number"),
        (lambda: fit_sigmoid([1.0], [0.5]), "needs at least 2 points"),
        (lambda: fit_sigmoid([1.0, 1.0, 1.0], [0.5, 0.5, 0.5]), "same NLL"),
        (lambda: fit_sigmoid([1.0, float("nan")], [0.5, 0.6]), "point 2's NLL is nan"),
        (lambda: fit_sigmoid([1.0, 2.0, 3.0], [0.5, 0.5, 0.5]), "same accuracy"),
        (lambda: fit_sigmoid([1.0, 2.0], [0.1, 0.25]), r"every accuracy is at or below chance \(0\.25\)"),
    ],
)
def test_bad_points_are_one_line_errors(call: object, message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        call()  # type: ignore[operator]
    assert "\n" not in str(info.value)


def test_chance_must_be_below_the_ceiling() -> None:
    with pytest.raises(ConfigError, match=r"chance 0\.5 and ceiling 0\.5"):
        fit_sigmoid([1.0, 2.0], [0.9, 0.6], floor=0.5, ceiling=0.5)


def test_read_sweep_fits_step1_on_each_budgets_compute_optimal_run(runs_csv: Path) -> None:
    task, step1, step2 = read_sweep(runs_csv)
    assert task == "arc_challenge"
    assert [p.name for p in step1] == ["b1e+18-n1", "b1e+19-n1", "b1e+20-n1"]
    assert len(step2) == 9 and {p.source for p in step2} == {"sweep"}
    assert [r.run for r in compute_optimal(read_runs(runs_csv, ["budget", "val_loss"]))] == [
        p.name for p in step1
    ]
    _, every, _ = read_sweep(runs_csv, all_runs=True)
    assert len(every) == 9
    write_runs(runs_csv, sweep_runs()[:3])
    with pytest.raises(
        InputError, match=r"one budget \(1e\+18\); step 1 fits one compute-optimal run per budget"
    ):
        read_sweep(runs_csv)
    assert len(read_sweep(runs_csv, all_runs=True)[1]) == 3


def test_read_sweep_picks_the_task(tmp_path: Path) -> None:
    path = tmp_path / "runs.csv"
    write_runs(
        path,
        sweep_runs("arc_challenge")
        + [Run(**{**r.__dict__, "run": r.run + "h", "eval_task": "hellaswag"}) for r in sweep_runs()],
    )
    with pytest.raises(
        InputError, match="several eval tasks \\(arc_challenge, hellaswag\\); pick one with --task"
    ):
        read_sweep(path)
    assert len(read_sweep(path, "hellaswag")[2]) == 9
    with pytest.raises(InputError, match="no runs of eval task 'mmlu'"):
        read_sweep(path, "mmlu")


def test_a_missing_column_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "runs.csv"
    path.write_text("run,budget,flops,val_loss,eval_task,eval_acc\nr,1e18,1e18,3.0,arc,0.3\n")
    with pytest.raises(InputError, match="missing column 'eval_nll'") as info:
        read_sweep(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_extra_models_take_6nd_when_flops_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "llama2.csv"
    path.write_text(
        "run,params,tokens,flops,eval_task,eval_nll,eval_acc\n"
        "llama2-7b,7000000000,2000000000000,,arc_challenge,0.9,0.46\n"
        "llama2-13b,,,1.6e23,,0.8,0.49\n"
        "other,,,1e23,mmlu,0.7,0.5\n"
    )
    points = read_extra(path, "arc_challenge")
    assert [(p.name, p.flops, p.source) for p in points] == [
        ("llama2-7b", 6 * 7e9 * 2e12, "extra"),
        ("llama2-13b", 1.6e23, "extra"),
    ]
    path.write_text("run,eval_nll,eval_acc\nx,0.9,0.4\n")
    with pytest.raises(InputError, match="row 1 \\(x\\) has no flops, nor params and tokens"):
        read_extra(path)


def test_point_from_eval_reads_herd_evals_own_files(tmp_path: Path) -> None:
    records = [(0, 0, 0.9), (1, 0, 1.3), (2, 2, 0.7), (0, 3, 1.1)]
    questions = [
        QuestionScore(f"q{i}", gold, (-1.0, -2.0, -3.0, -4.0), (False,) * 4, pred, pred, nll)
        for i, (gold, pred, nll) in enumerate(records)
    ]
    result = aggregate(questions, "arc_challenge")
    out = tmp_path / "eval"
    save_task(out, result, {"limit": 4})
    write_report(out, [result], {"model": "llama2-7b"}, None)
    point = point_from_eval(out, "arc_challenge", 8.4e22)
    assert point == Point("llama2-7b", 8.4e22, (0.9 + 1.3 + 0.7 + 1.1) / 4, 0.5, "extra")
    assert point.acc == pytest.approx(result.metric("acc").value)
    with pytest.raises(InputError, match=r"examples/hellaswag\.jsonl: no such file"):
        point_from_eval(out, "hellaswag", 1e22)


def is_png(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_plot_is_a_png(runs_csv: Path, tmp_path: Path) -> None:
    task, step1, step2 = read_sweep(runs_csv)
    fit = fit_downstream(step1, [*step2, Point("big", 1e23, 0.4, 0.9, "extra")], task=task)
    assert is_png(plot_prediction(fit, 1e22, tmp_path / "p.png")) == (1000, 400)


def run_cli(argv: list[str]) -> int:
    from herd.cli.scaling_predict import add_parser

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_prints_the_fits_and_writes_json_and_png(
    runs_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = tmp_path / "extra.csv"
    extra.write_text("run,flops,eval_nll,eval_acc\nbig,1e23,0.4,0.93\n")
    assert run_cli(["predict", str(runs_csv), "--target-flops", "1e22", "--extra", str(extra)]) == 0
    text = capsys.readouterr().out
    assert "NLL = 2.0000 -0.0800·log10(FLOPs)" in text and "predicted accuracy" in text
    saved = json.loads((runs_csv.parent / "predict.json").read_text())
    assert saved["target"]["nll"] == pytest.approx(A + B * 22)
    assert saved["task"] == "arc_challenge" and len(saved["step1"]) == 3 and len(saved["step2"]) == 10
    assert saved["line"]["b"] == pytest.approx(B)
    is_png(runs_csv.parent / "predict.png")
    out = tmp_path / "out"
    assert run_cli(["predict", str(runs_csv), "--target-flops", "1e22", "-o", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((out / "predict.json").read_text())
    assert printed["target"]["acc"] == pytest.approx(saved["target"]["acc"], abs=0.02)
    assert "warning" not in capsys.readouterr().err
    assert run_cli(["predict", str(runs_csv), "--target-flops", "1e30", "-o", str(out)]) == 0
    assert "warning: step 1's line reaches NLL -0.4000 ≤ 0 at 1e+30 FLOPs" in capsys.readouterr().err


def test_cli_errors(runs_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["predict", str(runs_csv), "--target-flops", "-1"])
    assert exit_info.value.code == 2
    assert "--target-flops: must be a positive finite number, got -1" in capsys.readouterr().err
    with pytest.raises(InputError, match="FLOPS 'lots' is not a number"):
        run_cli(["predict", str(runs_csv), "--target-flops", "1e22", "--eval-results", str(tmp_path), "lots"])
    assert not (tmp_path / "out" / "predict.json").exists()


def test_the_cli_module_imports_no_scipy_or_matplotlib() -> None:
    heavy = "{'scipy', 'matplotlib', 'torch'}"
    code = f"import sys, herd.cli.scaling_predict; print(sorted({heavy} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
