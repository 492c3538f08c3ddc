"""``herd scaling predict``: Llama 3's two-step forecast of a benchmark's accuracy at a budget (§3.2.1).

Step 1 fits the normalised NLL of the correct answer against log FLOPs on the
sweep's compute-optimal runs, step 2 a sigmoid from that NLL to accuracy on
every run plus the extra models given (:mod:`herd.scaling.predict`). Prints both
fits and the prediction at ``--target-flops``; writes ``predict.json`` and
``predict.png`` (both steps, the target marked). scipy and matplotlib are
imported only when the action runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from herd.argtypes import positive_float
from herd.cli.flags import add_json, add_output
from herd.cli.text import print_rows


def _fraction(text: str) -> float:
    """A number in [0, 1] (an accuracy)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _r2(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def add_parser(actions: argparse._SubParsersAction) -> None:
    """Add ``herd scaling predict``."""
    p = actions.add_parser(
        "predict",
        help="forecast a benchmark's accuracy at a compute budget (Llama 3's two steps: FLOPs → NLL → acc)",
        description="Fit Llama 3's downstream prediction (§3.2.1, Figure 4) to RUNS.csv: step 1, the "
        "normalised NLL of the correct answer (eval_nll) = a + b·log10(FLOPs) on each budget's "
        "compute-optimal run (lowest val_loss); step 2, accuracy = chance + (ceiling − chance)/(1 + "
        "exp(k·(NLL − x0))) on every run and the extra models. Prints the fits and the prediction at "
        "--target-flops; writes predict.json and predict.png to --output.",
        epilog="examples:\n"
        "  herd scaling predict runs/sweep/runs.csv --target-flops 1e21\n"
        "  herd scaling predict runs.csv --target-flops 3.8e25 --task arc_challenge --extra llama2.csv\n"
        "  herd scaling predict runs.csv --target-flops 1e22 --eval-results runs/eval/l2-7b 8.4e22 --json\n"
        "an --extra CSV has the runs CSV's columns (run, eval_nll, eval_acc, flops or params and tokens for\n"
        "6·N·D, eval_task optional); its models join step 2 only, as Llama 2 did in the paper",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("runs", type=Path, metavar="RUNS.csv", help="the sweep's runs CSV (herd scaling sweep)")
    p.add_argument(
        "--target-flops",
        type=positive_float,
        required=True,
        metavar="C",
        help="the training FLOPs to predict for, e.g. 1e22",
    )
    p.add_argument(
        "--extra",
        type=Path,
        action="append",
        default=[],
        metavar="CSV",
        help="other models' eval_nll and eval_acc for step 2 (repeatable)",
    )
    p.add_argument(
        "--eval-results",
        nargs=2,
        action="append",
        default=[],
        metavar=("DIR", "FLOPS"),
        help="a model evaluated by herd eval -o DIR on the task, trained with FLOPS, for step 2 (repeatable)",
    )
    p.add_argument("--task", metavar="NAME", help="the eval task (needed when RUNS.csv holds several)")
    p.add_argument(
        "--chance",
        type=_fraction,
        default=0.25,
        help="the accuracy of guessing, the sigmoid's floor: 1/choices (default 0.25, four choices)",
    )
    p.add_argument("--ceiling", type=_fraction, default=1.0, help="the sigmoid's top (default 1)")
    p.add_argument(
        "--all-runs",
        action="store_true",
        help="fit step 1 on every run, not only each budget's compute-optimal one",
    )
    add_output(
        p, "directory for predict.json and predict.png (default: RUNS.csv's directory)", required=False
    )
    add_json(p, "predict.json's content")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Fit both steps, write predict.json and predict.png, print the fits and the prediction."""
    from herd.errors import InputError
    from herd.scaling.predict import fit_downstream, point_from_eval, read_extra, read_sweep, write_prediction

    task, step1, step2 = read_sweep(args.runs, args.task, all_runs=args.all_runs)
    for path in args.extra:
        step2 += read_extra(path, task)
    for results_dir, flops in args.eval_results:
        try:
            value = positive_float(flops)
        except argparse.ArgumentTypeError as exc:
            raise InputError(f"--eval-results {results_dir} {flops}: FLOPS {exc}") from None
        step2.append(point_from_eval(results_dir, task, value))
    fit = fit_downstream(step1, step2, chance=args.chance, ceiling=args.ceiling, task=task)
    out_dir = args.output if args.output is not None else args.runs.parent
    record = write_prediction(fit, args.target_flops, out_dir)
    if record["target"]["nll"] <= 0:
        print(
            f"warning: step 1's line reaches NLL {record['target']['nll']:.4f} ≤ 0 "
            f"at {args.target_flops:g} FLOPs, "
            "which no model can have: the target is too far beyond the sweep for a straight line",
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps(record, indent=2))
        return 0
    line, s, target = fit.line, fit.sigmoid, record["target"]
    print_rows(
        [
            ("task", task),
            ("step 1", f"NLL = {line.a:.4f} {line.b:+.4f}·log10(FLOPs)  (R² {_r2(line.r2)}, {line.n} runs)"),
            (
                "step 2",
                f"acc = {s.floor:g} + {s.ceiling - s.floor:g}/(1 + exp({s.k:.4g}·(NLL − {s.x0:.4f})))  "
                f"(R² {_r2(s.r2)}, {s.n} models)",
            ),
            ("target FLOPs", f"{target['flops']:.4g}"),
            ("predicted NLL", f"{target['nll']:.4f}"),
            ("predicted accuracy", f"{target['acc']:.4f}"),
            ("files", f"{record['files']['json']}, {record['files']['plot']}"),
        ]
    )
    return 0
