"""Llama 3's downstream prediction (§3.2.1, Figure 4): a benchmark's accuracy at a compute budget, in 2 steps.

The Llama 3 paper forecasts the flagship model's ARC-Challenge accuracy before
training it: "we first establish a correlation between the compute-optimal
model's negative log-likelihood on downstream tasks and the training FLOPs.
Next, we correlate the negative log-likelihood on downstream tasks with task
accuracy, utilizing both the scaling law models and older models trained with
higher compute FLOPs" (the Llama 2 family). Figure 4 plots the first step as
the normalised NLL of the correct answer against FLOPs on a log axis, which is
a straight line there, and the second as accuracy against that NLL, a sigmoid.
The paper names neither functional form nor the fitting method; herd uses:

- step 1, on the compute-optimal run of each budget of the sweep (the run with
  the lowest held-out loss, as in the IsoFLOP analysis; ``all_runs`` fits
  every run instead): ordinary least squares of ``NLL = a + b · log10(FLOPs)``;
- step 2, on every run of the sweep plus the extra models given (evaluated
  models such as Llama 2, which are not compute-optimal and so join this step
  only): ``acc = floor + (ceiling − floor) / (1 + exp(k · (NLL − x0)))`` with
  ``floor`` the chance accuracy (1/choices, 0.25 for ARC-Challenge), ``ceiling``
  1 unless told, and ``k > 0``, ``x0`` fitted by least squares
  (:func:`scipy.optimize.curve_fit`, bounded, best of a grid of starts).

The NLL is herd eval's ``gold_nll_per_char`` (the correct answer's negative
log-likelihood divided by its length in characters, :mod:`herd.eval.multiple_choice`),
averaged over the questions: the runs CSV's ``eval_nll`` (:mod:`herd.scaling.runs`),
or :func:`point_from_eval` reading a ``herd eval`` output directory. An extra
CSV has the runs CSV's columns; where its ``flops`` is empty the model's
training FLOPs are taken as 6·N·D from ``params`` and ``tokens``.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from herd.errors import ConfigError, InputError
from herd.io.atomic import write_atomically
from herd.io.plot import pyplot, save_png
from herd.scaling.runs import Run, read_runs

#: Chance accuracy of a four-way multiple choice benchmark (ARC-Challenge, MMLU).
DEFAULT_CHANCE = 0.25
#: The columns of the runs CSV every prediction reads, and those that pick the compute-optimal runs.
EVAL_COLUMNS = ("flops", "eval_task", "eval_nll", "eval_acc")
OPTIMAL_COLUMNS = ("budget", "val_loss")
#: Starting points of the sigmoid fit: x0 at these fractions of the NLL range, k times these over the range.
_X0_STARTS = (0.0, 0.5, 1.0)
_K_STARTS = (1.0, 5.0, 25.0)

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Point:
    """One model: its training FLOPs, its mean normalised NLL of the correct answer and its accuracy.

    ``source`` is ``"sweep"`` for a run of the runs CSV, ``"extra"`` for
    another model (an extra CSV, a ``herd eval`` directory).
    """

    name: str
    flops: float
    nll: float
    acc: float
    source: str = "sweep"


@dataclass(frozen=True)
class LineFit:
    """Step 1: ``nll = a + b · log10(flops)``, its R² and the number of points it was fitted on."""

    a: float
    b: float
    r2: float | None
    n: int

    def nll(self, flops: ArrayLike) -> FloatArray:
        """The predicted NLL at ``flops`` training FLOPs."""
        return self.a + self.b * np.log10(np.asarray(flops, dtype=np.float64))


@dataclass(frozen=True)
class SigmoidFit:
    """Step 2: ``acc = floor + (ceiling − floor) / (1 + exp(k · (nll − x0)))``, its R² and point count."""

    k: float
    x0: float
    floor: float
    ceiling: float
    r2: float | None
    n: int

    def acc(self, nll: ArrayLike) -> FloatArray:
        """The predicted accuracy of a model whose mean normalised NLL is ``nll``."""
        return _sigmoid(np.asarray(nll, dtype=np.float64), self.k, self.x0, self.floor, self.ceiling)


@dataclass(frozen=True)
class DownstreamFit:
    """Both steps, fitted, with the points each was fitted on; :meth:`predict` chains them."""

    task: str | None
    line: LineFit
    sigmoid: SigmoidFit
    step1: tuple[Point, ...]
    step2: tuple[Point, ...]

    def predict(self, flops: float) -> tuple[float, float]:
        """``(nll, acc)`` predicted for a compute-optimal model trained with ``flops`` FLOPs."""
        nll = float(self.line.nll(flops))
        return nll, float(self.sigmoid.acc(nll))

    def to_dict(self) -> dict[str, Any]:
        """The fit as JSON values."""
        return asdict(self)


def _sigmoid(x: FloatArray, k: float, x0: float, floor: float, ceiling: float) -> FloatArray:
    from scipy.special import expit

    return floor + (ceiling - floor) * expit(-k * (x - x0))


def _r2(y: FloatArray, predicted: FloatArray) -> float | None:
    """The coefficient of determination; None when ``y`` does not vary."""
    total = float(np.sum((y - y.mean()) ** 2))
    return None if total == 0.0 else 1.0 - float(np.sum((y - predicted) ** 2)) / total


def _checked(what: str, name: str, values: ArrayLike, *, positive: bool = False) -> FloatArray:
    array = np.asarray(values, dtype=np.float64).ravel()
    for i, value in enumerate(array):
        if not math.isfinite(value) or (positive and value <= 0):
            need = "a positive finite number" if positive else "a finite number"
            raise InputError(f"{what}: point {i + 1}'s {name} is {value}, not {need}")
    return array


def _enough(what: str, x: FloatArray, name: str, parameters: int) -> None:
    if len(x) < parameters:
        raise InputError(
            f"{what}: needs at least {parameters} points (it has {parameters} parameters), got {len(x)}"
        )
    if np.ptp(x) == 0.0:
        raise InputError(f"{what}: all {len(x)} points have the same {name} ({x[0]:g}); nothing to fit")


def fit_line(flops: ArrayLike, nll: ArrayLike, what: str = "step 1 (NLL against FLOPs)") -> LineFit:
    """Step 1: least squares of ``nll = a + b · log10(flops)``; at least two distinct FLOP counts."""
    x = _checked(what, "FLOPs", flops, positive=True)
    y = _checked(what, "NLL", nll)
    if len(x) != len(y):
        raise ValueError(f"{len(x)} FLOP counts for {len(y)} NLLs")
    _enough(what, x, "FLOPs", 2)
    b, a = np.polyfit(np.log10(x), y, 1)
    return LineFit(float(a), float(b), _r2(y, a + b * np.log10(x)), len(x))


def fit_sigmoid(
    nll: ArrayLike,
    acc: ArrayLike,
    floor: float = DEFAULT_CHANCE,
    ceiling: float = 1.0,
    what: str = "step 2 (accuracy against NLL)",
) -> SigmoidFit:
    """Step 2: least squares of the sigmoid from NLL to accuracy between ``floor`` and ``ceiling``.

    ``k`` is bounded to (0, 1000/range] and ``x0`` to the NLL range widened by
    ten ranges each side; the fit runs from each start of a 3 × 3 grid and the
    one with the smallest squared error is kept.
    """
    from scipy.optimize import OptimizeWarning, curve_fit

    if not 0.0 <= floor < ceiling <= 1.0:
        raise ConfigError(f"{what}: need 0 ≤ chance < ceiling ≤ 1, got chance {floor} and ceiling {ceiling}")
    x = _checked(what, "NLL", nll)
    y = _checked(what, "accuracy", acc)
    if len(x) != len(y):
        raise ValueError(f"{len(x)} NLLs for {len(y)} accuracies")
    _enough(what, x, "NLL", 2)
    if np.ptp(y) == 0.0:
        raise InputError(f"{what}: all {len(y)} points have the same accuracy ({y[0]:g}); nothing to fit")
    if y.max() <= floor:
        raise InputError(
            f"{what}: every accuracy is at or below chance ({floor:g}); the sigmoid has nothing to fit"
        )
    low, span = float(x.min()), float(np.ptp(x))
    bounds = ([1e-9 / span, low - 10 * span], [1e3 / span, low + 11 * span])

    def model(v: FloatArray, k: float, x0: float) -> FloatArray:
        return _sigmoid(v, k, x0, floor, ceiling)

    best: tuple[float, float, float] | None = None
    for x0_start in _X0_STARTS:
        for k_start in _K_STARTS:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", OptimizeWarning)  # the covariance, which is not used
                    (k, x0), _ = curve_fit(
                        model, x, y, p0=(k_start / span, low + x0_start * span), bounds=bounds, maxfev=20_000
                    )
            except RuntimeError:
                continue
            error = float(np.sum((model(x, k, x0) - y) ** 2))
            if best is None or error < best[0]:
                best = (error, float(k), float(x0))
    if best is None:
        raise InputError(f"{what}: the sigmoid fit did not converge from any start on {len(x)} points")
    _, k, x0 = best
    return SigmoidFit(k, x0, floor, ceiling, _r2(y, model(x, k, x0)), len(x))


def fit_downstream(
    step1: Sequence[Point],
    step2: Sequence[Point],
    *,
    chance: float = DEFAULT_CHANCE,
    ceiling: float = 1.0,
    task: str | None = None,
) -> DownstreamFit:
    """Fit step 1 on ``step1`` (compute-optimal models), step 2 on ``step2`` (every model evaluated)."""
    line = fit_line([p.flops for p in step1], [p.nll for p in step1])
    sigmoid = fit_sigmoid([p.nll for p in step2], [p.acc for p in step2], chance, ceiling)
    return DownstreamFit(task, line, sigmoid, tuple(step1), tuple(step2))


def compute_optimal(runs: Sequence[Run]) -> list[Run]:
    """The run with the lowest ``val_loss`` at each ``budget`` (each IsoFLOP curve's minimum), by budget."""
    best: dict[float, Run] = {}
    for run in sorted(runs, key=lambda r: math.inf if r.val_loss is None else r.val_loss):
        if run.budget is None or run.val_loss is None:
            raise ValueError(f"run {run.run!r} has no budget or val_loss")
        best.setdefault(run.budget, run)
    return [best[budget] for budget in sorted(best)]


def _point(run: Run, source: str, flops: float | None = None) -> Point:
    """``run`` as a point: its eval NLL and accuracy at ``flops``, else at its own ``flops``."""
    return Point(run.run, flops or run.flops, run.eval_nll, run.eval_acc, source)  # type: ignore[arg-type]


def _choose_task(path: Path, tasks: set[str], task: str | None) -> str:
    if task is None:
        if len(tasks) > 1:
            raise InputError(
                f"{path}: has runs of several eval tasks ({', '.join(sorted(tasks))}); pick one with --task"
            )
        return next(iter(tasks))
    if task not in tasks:
        raise InputError(f"{path}: no runs of eval task {task!r} (it has {', '.join(sorted(tasks))})")
    return task


def read_sweep(
    path: Path | str, task: str | None = None, *, all_runs: bool = False
) -> tuple[str, list[Point], list[Point]]:
    """``(task, step-1 points, step-2 points)`` from a runs CSV: the compute-optimal runs (or all), every run.

    ``task`` picks the eval task when the CSV holds several; without it the
    CSV must hold one.
    """
    path = Path(path)
    runs = read_runs(path, EVAL_COLUMNS if all_runs else EVAL_COLUMNS + OPTIMAL_COLUMNS)
    task = _choose_task(path, {str(r.eval_task) for r in runs}, task)
    runs = [r for r in runs if r.eval_task == task]
    fitted = runs if all_runs else compute_optimal(runs)
    if len(fitted) == 1 and len(runs) > 1:
        raise InputError(
            f"{path}: the runs of {task!r} have one budget ({runs[0].budget:g}); step 1 fits one "
            "compute-optimal run per budget and needs two budgets (or every run: --all-runs)"
        )
    return task, [_point(r, "sweep") for r in fitted], [_point(r, "sweep") for r in runs]


def read_extra(path: Path | str, task: str | None = None) -> list[Point]:
    """The models of an extra CSV as step-2 points: its rows of eval task ``task`` (or without a task).

    A row's FLOPs are its ``flops``, else 6·``params``·``tokens``.
    """
    path = Path(path)
    runs = read_runs(path, ("eval_nll", "eval_acc"))
    points = []
    for row, run in enumerate(runs, start=1):
        if task is not None and run.eval_task not in (None, task):
            continue
        if run.flops is not None:
            flops = run.flops
        elif run.params is not None and run.tokens is not None:
            flops = 6.0 * run.params * run.tokens
        else:
            raise InputError(f"{path}: row {row} ({run.run}) has no flops, nor params and tokens for 6·N·D")
        points.append(_point(run, "extra", flops))
    if not points:
        raise InputError(f"{path}: no rows of eval task {task!r}")
    return points


def point_from_eval(results_dir: Path | str, task: str, flops: float, name: str | None = None) -> Point:
    """A model evaluated by ``herd eval -o RESULTS_DIR`` on multiple-choice ``task``, trained with ``flops``.

    Its NLL and accuracy are the means over ``examples/TASK.jsonl`` of
    ``gold_nll_per_char`` and ``acc``; its name is ``name``, else the model
    named in ``results.json``, else the directory's name.
    """
    results_dir = Path(results_dir)
    path = results_dir / "examples" / f"{task}.jsonl"
    if not math.isfinite(flops) or flops <= 0:
        raise InputError(f"{results_dir}: FLOPs must be a positive finite number, got {flops}")
    try:
        lines = path.read_text("utf-8").splitlines()
    except FileNotFoundError:
        raise InputError(
            f"{path}: no such file (run herd eval --tasks {task} -o {results_dir} first)"
        ) from None
    nll, acc = [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            nll.append(float(record["gold_nll_per_char"]))
            acc.append(float(record["acc"]))
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: line {number} is not JSON ({exc.msg})") from None
        except KeyError as exc:
            raise InputError(
                f"{path}: line {number} has no {exc.args[0]!r} (only multiple-choice tasks record it)"
            ) from None
    if not nll:
        raise InputError(f"{path}: no examples")
    if name is None:
        summary = results_dir / "results.json"
        model = json.loads(summary.read_text("utf-8")).get("model") if summary.is_file() else None
        name = str(model) if model else results_dir.name
    return Point(name, float(flops), math.fsum(nll) / len(nll), math.fsum(acc) / len(acc), "extra")


def plot_prediction(fit: DownstreamFit, target_flops: float, path: Path | str) -> Path:
    """Figure 4's two panels: NLL against FLOPs (log axis) with the line, accuracy against NLL with the
    sigmoid, the fitted points as dots (extra models as squares), the prediction at ``target_flops``
    a star."""
    nll, acc = fit.predict(target_flops)
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    flops = [p.flops for p in fit.step1]
    grid = np.logspace(math.log10(min(*flops, target_flops)), math.log10(max(*flops, target_flops)), 100)
    left.plot(grid, fit.line.nll(grid), color="#4c72b0", label=f"{fit.line.a:.3f} {fit.line.b:+.4f}·log10(C)")
    left.scatter(flops, [p.nll for p in fit.step1], color="#4c72b0", zorder=3, label="compute-optimal runs")
    left.scatter([target_flops], [nll], marker="*", s=200, color="#c44e52", zorder=4, label="prediction")
    left.set_xscale("log")
    left.set_xlabel("training FLOPs")
    left.set_ylabel("normalised NLL of the correct answer (per char)")
    left.set_title("step 1: compute → NLL", fontsize=10)
    left.legend(fontsize=8)
    values = [p.nll for p in fit.step2] + [nll]
    low, high = min(values), max(values)
    pad = 0.05 * (high - low) or 0.1
    curve = np.linspace(low - pad, high + pad, 200)
    s = fit.sigmoid
    right.plot(curve, s.acc(curve), color="#4c72b0", label=f"sigmoid k={s.k:.3g}, x0={s.x0:.3g}")
    for source, marker, label in (("sweep", "o", "sweep runs"), ("extra", "s", "extra models")):
        shown = [p for p in fit.step2 if p.source == source]
        if shown:
            right.scatter(
                [p.nll for p in shown], [p.acc for p in shown], marker=marker, zorder=3, label=label
            )
    right.scatter([nll], [acc], marker="*", s=200, color="#c44e52", zorder=4, label=f"prediction {acc:.3f}")
    right.axhline(s.floor, color="gray", linestyle=":", linewidth=1)
    right.set_xlabel("normalised NLL of the correct answer (per char)")
    right.set_ylabel("accuracy")
    right.set_title("step 2: NLL → accuracy", fontsize=10)
    right.legend(fontsize=8)
    fig.suptitle(f"{fit.task or 'task'}: predicted at {target_flops:.3g} FLOPs", fontsize=11)
    fig.tight_layout()
    return save_png(fig, path)


def write_prediction(fit: DownstreamFit, target_flops: float, out_dir: Path | str) -> dict[str, Any]:
    """Write ``predict.json`` (the fit, its points and the prediction) and ``predict.png`` to ``out_dir``;
    returns what ``predict.json`` holds, with the files' paths under ``"files"``."""
    out_dir = Path(out_dir)
    nll, acc = fit.predict(target_flops)
    files = {"json": str(out_dir / "predict.json"), "plot": str(out_dir / "predict.png")}
    record = {"target": {"flops": target_flops, "nll": nll, "acc": acc}, **fit.to_dict(), "files": files}
    text = json.dumps(record, indent=2) + "\n"
    write_atomically(files["json"], lambda f: f.write(text.encode("utf-8")))
    plot_prediction(fit, target_flops, files["plot"])
    return record
