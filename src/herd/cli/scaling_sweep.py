"""``herd scaling sweep CONFIG.toml [-o DIR] [--set KEY=VALUE] [--dry-run] [--json] [--quiet]``.

Trains the IsoFLOP grid of a sweep config (Llama 3 §3.2.1; :mod:`herd.scaling.sweep`)
and appends one row per run to ``DIR/runs.csv``; run again, it skips the runs
with a row and resumes an interrupted one. ``--dry-run`` prints the plan
(budget, model, N, FLOPs per token, D = C/F beside C/(6N), steps, skipped
pairs) and trains nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from herd.cli.flags import add_json, add_output, add_quiet, add_set


def add_parser(actions: argparse._SubParsersAction) -> None:
    """Add ``sweep`` to the actions of ``herd scaling``."""
    p = actions.add_parser(
        "sweep",
        help="train an IsoFLOP grid of model sizes × compute budgets into a runs CSV",
        description="Plan every (budget, model) pair of a sweep config (configs/scaling/*.toml): tokens "
        "D = C/F from herd's exact FLOPs per token F, beside the 6N approximation; train each as a "
        "pretraining run in OUT/runs/<name> (warmup then cosine, Llama 3 §3.2.1), evaluate it and append "
        "a row to OUT/runs.csv. Rerunning skips finished runs and resumes an interrupted one.",
        epilog="examples:\n  herd scaling sweep configs/scaling/cpu-sweep.toml --dry-run\n"
        "  herd scaling sweep configs/scaling/cpu-sweep.toml -o runs/scaling/cpu\n"
        "  herd scaling sweep configs/scaling/cpu-sweep.toml --set 'budgets=[1e11, 3e11]' --quiet",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", metavar="CONFIG.toml", help="the sweep config")
    add_output(p, "the sweep's directory (out_dir): runs/<name>/ and runs.csv", required=False)
    add_set(p, "--set 'budgets=[1e14, 3e14]' --set eval_limit=50")
    p.add_argument("--dry-run", action="store_true", help="print the plan and train nothing")
    add_json(p, "the plan (--dry-run) or the runs")
    add_quiet(p, "no progress lines and no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Plan, then (unless ``--dry-run``) train the sweep; print the plan or the runs."""
    from herd.scaling.sweep import RUNS_CSV, load_sweep, plan, plan_table, results_table, run_sweep

    sweep = load_sweep(args.config, args.overrides)
    if args.output is not None:
        sweep = dataclasses.replace(sweep, out_dir=str(args.output))
    if args.quiet:
        sweep = dataclasses.replace(sweep, overrides=[*sweep.overrides, "log.progress=false"])
    if args.dry_run:
        planned = plan(sweep)
        if args.json:
            fields = ("name", "budget", "model", "params", "flops_per_token", "tokens", "tokens_6n", "steps")
            rows = [{f: getattr(p, f) for f in fields} | {"skipped": p.skipped or None} for p in planned]
            print(json.dumps({"plan": rows}, indent=2))
        else:
            print(plan_table(planned), end="")
        return 0
    runs = run_sweep(sweep, say=lambda line: None) if args.quiet else run_sweep(sweep)
    if args.json:
        csv_path = str(Path(sweep.out_dir) / RUNS_CSV)
        print(json.dumps({"csv": csv_path, "runs": [dataclasses.asdict(r) for r in runs]}, indent=2))
    else:
        print(results_table(runs), end="")
    return 0
