"""The figures of a scaling-law fit, as PNGs (``herd scaling fit -o DIR``).

- ``isoflop.png``: loss against model size per budget, with each fitted
  parabola and its minimum (Llama 3 Figure 2, Chinchilla Figure 3 left);
- ``power_law.png``: the per-budget optima against FLOPs, the power law
  through them and the point it extrapolates to (Llama 3 Figure 3);
- ``chinchilla.png``: contours of the fitted ``L(N, D)`` in (N, D), the runs,
  and the compute-optimal frontier ``(N_opt(C), D_opt(C))`` (Chinchilla Figure 4
  in (N, D) rather than (C, N)).

Drawn with :func:`herd.io.plot.pyplot` and written with :func:`herd.io.plot.save_png`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from herd.io.plot import pyplot, save_png
from herd.scaling.chinchilla import ChinchillaLaw
from herd.scaling.isoflop import IsoflopFit


def plot_isoflop(fit: IsoflopFit, budgets: ArrayLike, sizes: ArrayLike, losses: ArrayLike, dst: Path) -> Path:
    """``isoflop.png``: the runs (``sizes`` are tokens or params, as the fit's law), parabolas and minima."""
    plt = pyplot()
    c, x, loss = (np.asarray(v, dtype=np.float64) for v in (budgets, sizes, losses))
    fig, ax = plt.subplots(figsize=(7, 5))
    colours = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, len(fit.minima)))
    for minimum, colour in zip(fit.minima, colours, strict=True):
        mine = c == minimum.budget
        ax.scatter(x[mine], loss[mine], color=colour, s=18, label=f"{minimum.budget:.2g} FLOPs")
        u = np.linspace(np.log(x[mine].min()) - 0.2, np.log(x[mine].max()) + 0.2, 100)
        ax.plot(np.exp(u), minimum.a * u * u + minimum.b * u + minimum.c, color=colour, lw=1)
        ax.scatter([minimum.optimum], [minimum.loss], color=colour, marker="*", s=120, edgecolor="black")
    ax.set_xscale("log")
    ax.set_xlabel(f"training {fit.law.of}")
    ax.set_ylabel("validation loss (nats/token)")
    ax.set_title("IsoFLOP curves and their minima")
    ax.legend(fontsize=8)
    return save_png(fig, dst)


def plot_power_law(fit: IsoflopFit, target: float, dst: Path) -> Path:
    """``power_law.png``: the optima, the law ``A C^alpha`` through them and its value at ``target`` FLOPs."""
    plt = pyplot()
    budgets = np.array([m.budget for m in fit.minima])
    optima = np.array([m.optimum for m in fit.minima])
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.scatter(budgets, optima, color="tab:blue", label="IsoFLOP minima", zorder=3)
    span = np.geomspace(min(budgets.min(), target), max(budgets.max(), target), 100)
    law = fit.law
    ax.plot(span, law(span), color="tab:orange", label=f"{law.A:.3g} · C^{law.alpha:.3f}")
    ax.scatter(
        [target], [law(target)], color="tab:red", marker="*", s=150, zorder=3, label=f"{target:.3g} FLOPs"
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("FLOPs")
    ax.set_ylabel(f"compute-optimal {law.of}")
    ax.set_title("Compute-optimal size against compute")
    ax.legend(fontsize=8)
    return save_png(fig, dst)


def plot_chinchilla(law: ChinchillaLaw, params: ArrayLike, tokens: ArrayLike, dst: Path) -> Path:
    """``chinchilla.png``: contours of ``law.loss`` over the runs' (N, D) range and the compute-optimal frontier."""
    plt = pyplot()
    n, d = np.asarray(params, dtype=np.float64), np.asarray(tokens, dtype=np.float64)
    grid_n = np.geomspace(n.min() / 3, n.max() * 3, 200)
    grid_d = np.geomspace(d.min() / 3, d.max() * 3, 200)
    mesh_n, mesh_d = np.meshgrid(grid_n, grid_d)
    fig, ax = plt.subplots(figsize=(7, 5))
    contours = ax.contour(mesh_n, mesh_d, law.loss(mesh_n, mesh_d), levels=15, cmap="viridis")
    ax.clabel(contours, fontsize=7, fmt="%.2f")
    ax.scatter(n, d, color="black", s=8, label="runs")
    budgets = np.geomspace(6 * grid_n[0] * grid_d[0], 6 * grid_n[-1] * grid_d[-1], 200)
    opt_n, opt_d = law.optimal(budgets)
    ax.plot(opt_n, opt_d, color="tab:red", lw=2, label="compute-optimal (C = 6ND)")
    ax.set_xlim(grid_n[0], grid_n[-1])
    ax.set_ylim(grid_d[0], grid_d[-1])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("parameters N")
    ax.set_ylabel("tokens D")
    ax.set_title(f"L(N, D) = {law.E:.3g} + {law.A:.4g}/N^{law.alpha:.3f} + {law.B:.4g}/D^{law.beta:.3f}")
    ax.legend(fontsize=8)
    return save_png(fig, dst)
