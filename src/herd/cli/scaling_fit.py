"""``herd scaling fit``: the scaling laws of a sweep's runs, next to the published ones.

Approach 3 fits Chinchilla's ``L(N, D) = E + A/N^α + B/D^β`` (Huber loss summed
over the runs, L-BFGS from Epoch AI's 4,500 starts, bootstrap standard errors:
:mod:`herd.scaling.chinchilla`); approach 2 fits Llama 3's IsoFLOP parabolas
and the power law through their minima (§3.2.1, :mod:`herd.scaling.isoflop`).
Prints the fitted values beside Chinchilla's, Epoch's and Llama 3's and the
compute-optimal model at ``--target-flops``; writes ``fit.json`` and the
figures to ``--output``. numpy, scipy and matplotlib are imported only when
the action runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from herd.argtypes import non_negative_int, positive_float
from herd.cli.flags import add_json, add_output

if TYPE_CHECKING:
    from herd.scaling.chinchilla import ChinchillaFit
    from herd.scaling.isoflop import IsoflopFit

#: Llama 3's budget for its flagship (§3.2.1): the default target.
LLAMA3_FLOPS = 3.8e25
APPROACHES = ("3", "2", "both")


def add_parser(actions: argparse._SubParsersAction) -> None:
    """Add ``herd scaling fit``."""
    p = actions.add_parser(
        "fit",
        help="fit Chinchilla's L(N, D) and Llama 3's IsoFLOP power law to a sweep's runs",
        description="Fit the runs in RUNS.csv: approach 3, Chinchilla's L(N, D) = E + A/N^alpha + B/D^beta "
        "(Huber loss, delta 1e-3, summed over runs; L-BFGS from 4,500 starts; bootstrap standard errors), "
        "and approach 2, Llama 3's IsoFLOP parabolas per budget and the power law A*C^alpha through their "
        "minima. Prints the fits beside the published values (Chinchilla, Epoch AI's refit, Llama 3) and the "
        "compute-optimal model at --target-flops; writes fit.json and the figures (isoflop.png, "
        "power_law.png, chinchilla.png) to --output.",
        epilog="examples:\n"
        "  herd scaling fit runs/sweep/runs.csv\n"
        "  herd scaling fit runs.csv --approach 3 --bootstrap 200 --seed 1 -o runs/fit\n"
        "  herd scaling fit runs.csv --approach 2 --of params --target-flops 1e22 --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("runs", type=Path, metavar="RUNS.csv", help="the sweep's runs CSV (herd scaling sweep)")
    p.add_argument(
        "--approach",
        choices=APPROACHES,
        default="both",
        help="3: Chinchilla's L(N, D); 2: IsoFLOP parabolas and power law (Llama 3); both (default)",
    )
    p.add_argument(
        "--of",
        choices=("tokens", "params"),
        default="tokens",
        help="approach 2's power law is on the optimal tokens (Llama 3, default) or parameters (Chinchilla)",
    )
    p.add_argument(
        "--bootstrap",
        type=non_negative_int,
        default=0,
        metavar="N",
        help="approach 3's standard errors from N resamples of the runs (default 0: none)",
    )
    p.add_argument(
        "--seed", type=non_negative_int, default=0, metavar="S", help="the resamples' seed (default 0)"
    )
    p.add_argument(
        "--target-flops",
        type=positive_float,
        default=LLAMA3_FLOPS,
        metavar="C",
        help=f"the budget of the compute-optimal model reported (default {LLAMA3_FLOPS:g}, Llama 3 405B's)",
    )
    add_output(p, "directory for fit.json and the figures (default: RUNS.csv's directory)", required=False)
    add_json(p, "fit.json's content")
    p.set_defaults(func=run)


def _chinchilla_record(fit: ChinchillaFit, target: float) -> dict[str, Any]:
    from herd.scaling.chinchilla import CHINCHILLA, EPOCH

    n, d = fit.optimal(target)
    return {
        **fit.to_dict(),
        "optimal": {
            "flops": target,
            "params": float(n),
            "tokens": float(d),
            "tokens_per_param": float(d / n),
        },
        "published": {"chinchilla": asdict(CHINCHILLA), "epoch": asdict(EPOCH)},
    }


def _isoflop_record(fit: IsoflopFit, target: float) -> dict[str, Any]:
    from herd.scaling.isoflop import LLAMA3

    n, d = fit.extrapolate(target)
    return {
        **fit.to_dict(),
        "optimal": {"flops": target, "params": float(n), "tokens": float(d)},
        "published": {"llama3": asdict(LLAMA3.on(fit.law.of))},
    }


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """Print ``rows`` under ``header`` in columns two spaces apart."""
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _print_chinchilla(record: dict[str, Any]) -> None:
    stderr = record["stderr"]
    names = (("E", "E"), ("A", "A"), ("B", "B"), ("alpha", "α"), ("beta", "β"))
    rows = []
    for key, label in names:
        fitted = f"{record[key]:.4g}" + (f" ± {stderr[key]:.2g}" if stderr else "")
        published = record["published"]
        rows.append((label, fitted, f"{published['chinchilla'][key]:g}", f"{published['epoch'][key]:g}"))
    print(
        f"Chinchilla approach 3: {record['points']} runs, {record['starts']} L-BFGS starts, "
        f"Huber δ {record['delta']:g} summed, objective {record['objective']:.6g}"
        + (f", {record['bootstrap']} bootstrap resamples" if record["bootstrap"] else "")
    )
    _table(("param", "fitted", "Chinchilla", "Epoch"), rows)
    opt = record["optimal"]
    print(
        f"compute-optimal at {opt['flops']:.3g} FLOPs: N = {opt['params']:.4g} params, "
        f"D = {opt['tokens']:.4g} tokens, D/N = {opt['tokens_per_param']:.3g}"
    )


def _print_isoflop(record: dict[str, Any]) -> None:
    law, llama = record["law"], record["published"]["llama3"]
    print(f"IsoFLOP approach 2: {len(record['minima'])} budgets, power law on the optimal {law['of']}")
    _table(
        ("budget", f"optimal {law['of']}", "loss", "runs", "inside"),
        [
            (
                f"{m['budget']:.3g}",
                f"{m['optimum']:.4g}",
                f"{m['loss']:.4f}",
                str(m["runs"]),
                str(m["inside"]),
            )
            for m in record["minima"]
        ],
    )
    _table(
        ("param", "fitted", "Llama 3"),
        [
            ("α", f"{law['alpha']:.4g}", f"{llama['alpha']:.4g}"),
            ("A", f"{law['A']:.4g}", f"{llama['A']:.4g}"),
        ],
    )
    opt = record["optimal"]
    print(
        f"compute-optimal at {opt['flops']:.3g} FLOPs: N = {opt['params']:.4g} params, D = {opt['tokens']:.4g} tokens"
    )
    for m in record["minima"]:
        if not m["inside"]:
            print(
                f"warning: the minimum of budget {m['budget']:.3g} lies outside the sizes trained for it; "
                "its parabola is extrapolated (train sizes on both sides of the optimum)",
                file=sys.stderr,
            )


def run(args: argparse.Namespace) -> int:
    """Fit the chosen approaches, write fit.json and the figures, print the tables."""
    from herd.io.atomic import write_atomically
    from herd.scaling.chinchilla import fit_chinchilla
    from herd.scaling.fit_plots import plot_chinchilla, plot_isoflop, plot_power_law
    from herd.scaling.isoflop import fit_isoflop
    from herd.scaling.runs import read_runs

    approach3, approach2 = args.approach in ("3", "both"), args.approach in ("2", "both")
    required = ["params", "tokens", "val_loss"] + (["budget"] if approach2 else [])
    runs = read_runs(args.runs, required)
    params = [r.params for r in runs]
    tokens = [r.tokens for r in runs]
    losses = [r.val_loss for r in runs]
    out_dir = args.output if args.output is not None else args.runs.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {"runs": str(args.runs), "target_flops": args.target_flops, "figures": []}
    if approach3:
        fit3 = fit_chinchilla(params, tokens, losses, bootstrap=args.bootstrap, seed=args.seed)
        record["chinchilla"] = _chinchilla_record(fit3, args.target_flops)
        record["figures"].append(str(plot_chinchilla(fit3, params, tokens, out_dir / "chinchilla.png")))
    if approach2:
        budgets = [r.budget for r in runs]
        fit2 = fit_isoflop(budgets, params, losses, tokens, of=args.of)
        record["isoflop"] = _isoflop_record(fit2, args.target_flops)
        sizes = tokens if args.of == "tokens" else params
        record["figures"].append(str(plot_isoflop(fit2, budgets, sizes, losses, out_dir / "isoflop.png")))
        record["figures"].append(str(plot_power_law(fit2, args.target_flops, out_dir / "power_law.png")))
    text = json.dumps(record, indent=2) + "\n"
    write_atomically(out_dir / "fit.json", lambda f: f.write(text.encode()))
    if args.json:
        print(json.dumps(record, indent=2))
        return 0
    if approach3:
        _print_chinchilla(record["chinchilla"])
    if approach2:
        if approach3:
            print()
        _print_isoflop(record["isoflop"])
    print(f"wrote {out_dir / 'fit.json'} and {', '.join(Path(f).name for f in record['figures'])}")
    return 0
