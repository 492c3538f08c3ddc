"""Speed of herd's Chinchilla fit (approach 3) against a plain scipy loop over the same 4,500 starts.

The data: ``--points`` (240, as many as Epoch AI digitised from Chinchilla's Figure 4) synthetic runs
drawn from Epoch's refit (E 1.817, A 482.0, B 2085.4, α 0.348, β 0.366) over Chinchilla's range, N
log-uniform in 7e7–1.6e10 and D in 5e9–5e11, with 1% log-normal noise on the loss (``--seed``).

- herd: :func:`herd.scaling.chinchilla.fit_chinchilla`, the full grid of 4,500 starts (Epoch's) run
  as one batched L-BFGS over numpy arrays with the analytic gradient, Huber δ 1e-3 summed;
- reference: ``scipy.optimize.minimize(method="L-BFGS-B")`` with scipy's default tolerances and
  numerical (2-point finite-difference) gradients, one start after another, on the same objective.
  The loop takes minutes for all 4,500 starts, so it runs every ``--stride``-th start (450 by
  default) and its time is scaled up by the ratio of starts, which the output says; ``--stride 1``
  runs them all.

Both must reach the same best parameters: the bench fails when the reference's best objective is
lower than herd's by more than 1e-7 relative, or when the best parameters differ by more than
``--tolerance`` relative. The process is pinned to ``--cores`` CPUs (2) and numpy's BLAS to as many
threads; the output names the CPU, the load average (the machine may be shared), the peak RSS
(bench/posttrain.py's probe) and herd's CPU seconds beside its wall time (on a busy machine the wall
time measures the neighbours too), and writes bench/results/scaling_fit.json.

    python -P bench/scaling_fit.py
    python -P bench/scaling_fit.py --stride 1      # the whole scipy loop (minutes)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("E", "A", "B", "alpha", "beta")


sys.path.append(str(Path(__file__).resolve().parent))  # bench/, after every installed package
import posttrain  # noqa: E402  bench/posttrain.py: its memory probe and machine name


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--points", type=int, default=240, help="synthetic runs (default 240)")
    p.add_argument("--seed", type=int, default=0, help="the synthetic data's seed")
    p.add_argument(
        "--stride", type=int, default=10, help="the scipy loop runs every STRIDE-th start (default 10)"
    )
    p.add_argument("--cores", type=int, default=2, help="CPUs the process is pinned to (default 2)")
    p.add_argument(
        "--tolerance", type=float, default=1e-3, help="largest relative difference of the best fits"
    )
    p.add_argument("--json", type=Path, default=ROOT / "bench/results/scaling_fit.json", help="results file")
    return p.parse_args()


def pin(cores: int) -> int:
    """Run on the first ``cores`` CPUs this process may use, with BLAS threads to match; returns the count."""
    allowed = sorted(os.sched_getaffinity(0))[:cores]
    os.sched_setaffinity(0, allowed)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(len(allowed))
    return len(allowed)


def main() -> None:
    args = parse_args()
    cores = pin(args.cores)
    import numpy as np  # after pin(): BLAS reads its thread count on import
    from scipy.optimize import minimize

    from herd.io.atomic import write_atomically
    from herd.scaling.chinchilla import EPOCH, fit_chinchilla, objective_and_gradient, start_grid

    probe = posttrain
    rng = np.random.default_rng(args.seed)
    n = np.exp(rng.uniform(np.log(7e7), np.log(1.6e10), args.points))
    d = np.exp(rng.uniform(np.log(5e9), np.log(5e11), args.points))
    loss = EPOCH.loss(n, d) * np.exp(rng.normal(0.0, 0.01, args.points))
    log_n, log_d, log_l = np.log(n), np.log(d), np.log(loss)
    print(f"{probe.machine()}, pinned to {cores} CPUs, load average {os.getloadavg()[0]:.2f}", flush=True)

    start, cpu = time.perf_counter(), time.process_time()
    fit = fit_chinchilla(n, d, loss)
    herd_s, herd_cpu_s = time.perf_counter() - start, time.process_time() - cpu
    herd_best = np.array([getattr(fit, k) for k in NAMES])
    print(
        f"herd: {fit.starts} starts in {herd_s:.2f} s ({herd_cpu_s:.2f} s of CPU), objective {fit.objective:.10g}",
        flush=True,
    )

    def objective(x: np.ndarray) -> float:
        return float(objective_and_gradient(x[None, :], log_n, log_d, log_l)[0][0])

    grid = start_grid()[:: args.stride]
    start = time.perf_counter()
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        found = [minimize(objective, x0, method="L-BFGS-B") for x0 in grid]
    scipy_s = time.perf_counter() - start
    scipy_full_s = scipy_s * len(start_grid()) / len(grid)
    best = min((f for f in found if np.isfinite(f.fun)), key=lambda f: f.fun)
    a, b, e, alpha, beta = best.x
    scipy_best = np.array([np.exp(e), np.exp(a), np.exp(b), alpha, beta])
    measured = (
        "measured"
        if args.stride == 1
        else f"{len(grid)} starts measured, scaled ×{len(start_grid()) / len(grid):g}"
    )
    print(
        f"scipy L-BFGS-B, numerical gradients: {len(grid)} starts in {scipy_s:.2f} s → "
        f"{scipy_full_s:.1f} s for 4,500 ({measured}), objective {best.fun:.10g}",
        flush=True,
    )
    difference = np.abs(herd_best - scipy_best) / np.abs(scipy_best)
    result = {
        "machine": probe.machine(),
        "cores": cores,
        "load_average": os.getloadavg()[0],
        "points": args.points,
        "starts": fit.starts,
        "herd_s": herd_s,
        "herd_cpu_s": herd_cpu_s,
        "scipy_starts_timed": len(grid),
        "scipy_timed_s": scipy_s,
        "scipy_4500_s": scipy_full_s,
        "scipy_extrapolated": args.stride != 1,
        "speedup": scipy_full_s / herd_s,
        "herd": {**dict(zip(NAMES, herd_best.tolist(), strict=True)), "objective": fit.objective},
        "scipy": {**dict(zip(NAMES, scipy_best.tolist(), strict=True)), "objective": float(best.fun)},
        "true": {k: getattr(EPOCH, k) for k in NAMES},
        "max_relative_difference": float(difference.max()),
        "peak_rss_mib": probe.peak_rss_mib(),
    }
    print()
    print("| | E | A | B | α | β | objective | time for 4,500 starts |")
    print("|---|---|---|---|---|---|---|---|")
    for label, row, seconds in (
        ("herd (batched, analytic)", result["herd"], f"{herd_s:.2f} s"),
        (
            "scipy loop (numerical)",
            result["scipy"],
            f"{scipy_full_s:.1f} s" + (" (scaled)" if args.stride != 1 else ""),
        ),
        ("Epoch (the data's truth)", {**result["true"], "objective": float("nan")}, ""),
    ):
        cells = " | ".join(f"{row[k]:.5g}" for k in NAMES)
        print(f"| {label} | {cells} | {row['objective']:.8g} | {seconds} |")
    print(
        f"\nspeedup ×{result['speedup']:.0f}; best fits differ by {result['max_relative_difference']:.2e} relative; "
        f"peak RSS {result['peak_rss_mib']:.0f} MiB"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2) + "\n"
    write_atomically(args.json, lambda f: f.write(text.encode("utf-8")))
    print(f"results: {args.json}")
    if best.fun < fit.objective * (1 - 1e-7) or difference.max() > args.tolerance:
        sys.exit("herd's best fit and the scipy loop's differ")


if __name__ == "__main__":
    main()
