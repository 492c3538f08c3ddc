"""Chinchilla's parametric loss ``L(N, D) = E + A/N^α + B/D^β`` (approach 3), fitted the way that reproduces.

Hoffmann et al. 2022 (§3.3, Appendix D.2) fit the law to (parameters N, tokens D,
loss L) points by minimising the Huber loss (δ = 1e-3) of the log loss with
L-BFGS from a grid of starting points. Besiroglu et al. 2024 ("Chinchilla
Scaling: A replication attempt", Epoch AI) showed that the paper's estimates
come from an optimiser stopped early: with the Huber loss *averaged* over the
points the objective is so small that L-BFGS's tolerances end the search
before the minimum. Here the loss is *summed* over the points, and the fit is
what Epoch's replication does:

- the prediction in log space is a log-sum-exp,
  ``log L = LSE(a − α log N, b − β log D, e)`` with A = exp a, B = exp b, E = exp e;
- L-BFGS runs from every start of the grid α, β ∈ {0, 0.5, …, 2},
  e ∈ {−1, −0.5, …, 1}, a, b ∈ {0, 5, …, 25} (4,500 starts) and the best is kept;
- standard errors come from the bootstrap: the points resampled with
  replacement, the law refitted (from the best fit), with a fixed seed.

Speed: the 4,500 starts are independent problems of five parameters, so one
L-BFGS (:func:`_batched_lbfgs`) runs them all at once, each start with its own
history, step and stopping test, over numpy arrays of shape (starts, points)
with the analytic gradient, in blocks of rows that stay in the CPU's cache,
spread over one thread per CPU (numpy releases the GIL). bench/scaling_fit.py times it against a plain scipy loop
with numerical gradients.

The compute-optimal allocation under ``C = 6 N D`` (Chinchilla §3.3, Appendix
D.3): ``N_opt(C) = G (C/6)^(β/(α+β))`` and ``D_opt(C) = G^{-1} (C/6)^(α/(α+β))``
with ``G = (αA/(βB))^(1/(α+β))``.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from herd.errors import InputError

#: The starting grid of Epoch's replication, per parameter (α, β, e, a, b).
ALPHA_STARTS = (0.0, 0.5, 1.0, 1.5, 2.0)
BETA_STARTS = ALPHA_STARTS
E_STARTS = (-1.0, -0.5, 0.0, 0.5, 1.0)
A_STARTS = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)
B_STARTS = A_STARTS
HUBER_DELTA = 1e-3
#: L-BFGS's settings: pairs remembered, iterations, and the stopping tests (largest gradient entry;
#: relative decrease of the objective in one step).
MEMORY = 10
MAX_ITER = 1000
GTOL = 1e-9
FTOL = 1e-11
_ARMIJO = 1e-4
_HALVINGS = 40

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]
#: What the law's functions return: an array for arrays, a numpy float for a scalar.
Floats = FloatArray | np.float64
#: The objectives and gradients of some rows of the starts: ``fg(x, rows)``.
Objective = Callable[[FloatArray, IntArray], tuple[FloatArray, FloatArray]]
#: Rows of the starts evaluated together (see :func:`_in_blocks`).
_ROWS_PER_BLOCK = 256


@dataclass(frozen=True)
class ChinchillaLaw:
    """``L(N, D) = E + A/N^alpha + B/D^beta`` (nats/token) and its compute-optimal allocation."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float

    def loss(self, N: ArrayLike, D: ArrayLike) -> Floats:
        """The loss of ``N`` parameters trained on ``D`` tokens (broadcast like numpy; a scalar for scalars)."""
        n, d = np.asarray(N, dtype=np.float64), np.asarray(D, dtype=np.float64)
        return (self.E + self.A / n**self.alpha + self.B / d**self.beta)[()]

    def optimal(self, C: ArrayLike) -> tuple[Floats, Floats]:
        """``(N_opt, D_opt)``: the allocation of ``C`` FLOPs (``C = 6 N D``) with the lowest loss."""
        c = np.asarray(C, dtype=np.float64) / 6.0
        total = self.alpha + self.beta
        g = (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / total)
        return (g * c ** (self.beta / total))[()], (c ** (self.alpha / total) / g)[()]

    def tokens_per_param(self, C: ArrayLike) -> Floats:
        """``D_opt / N_opt`` at ``C`` FLOPs (constant only when alpha = beta)."""
        n, d = self.optimal(C)
        return d / n


#: Hoffmann et al. 2022, §3.3 (approach 3).
CHINCHILLA = ChinchillaLaw(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
#: Besiroglu et al. 2024: the refit on the 240 points digitised from Chinchilla's Figure 4.
EPOCH = ChinchillaLaw(E=1.817, A=482.0, B=2085.4, alpha=0.348, beta=0.366)


@dataclass(frozen=True)
class StandardErrors:
    """Bootstrap standard errors of each fitted parameter."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float


@dataclass(frozen=True)
class ChinchillaFit(ChinchillaLaw):
    """A fitted law with how it was found.

    ``objective`` is the summed Huber loss at the best start; ``starts`` the
    number of L-BFGS starts; ``points`` the number of (N, D, L) points;
    ``bootstrap`` the number of resamples behind ``stderr`` (None without).
    """

    objective: float = float("nan")
    starts: int = 0
    points: int = 0
    delta: float = HUBER_DELTA
    bootstrap: int = 0
    stderr: StandardErrors | None = None

    def to_dict(self) -> dict[str, object]:
        """The fit as JSON-ready values."""
        return asdict(self)


def start_grid() -> FloatArray:
    """The 4,500 starts as rows ``(a, b, e, alpha, beta)``."""
    rows = [
        (a, b, e, alpha, beta)
        for alpha, beta, e, a, b in itertools.product(ALPHA_STARTS, BETA_STARTS, E_STARTS, A_STARTS, B_STARTS)
    ]
    return np.array(rows, dtype=np.float64)


def _row_dot(m: FloatArray, v: FloatArray) -> FloatArray:
    """``m[i] · v`` for each row ``i``, where ``v`` is one vector for all rows or one row per row of ``m``."""
    return m @ v if v.ndim == 1 else np.einsum("ij,ij->i", m, v)


def objective_and_gradient(
    x: FloatArray, log_n: FloatArray, log_d: FloatArray, log_l: FloatArray, delta: float = HUBER_DELTA
) -> tuple[FloatArray, FloatArray]:
    """The summed Huber loss of each row of ``x`` (``(S, 5)``: a, b, e, alpha, beta) and its gradient.

    The data are ``(n,)`` (shared by every row) or ``(S, n)`` (one data set per
    row, as in the bootstrap). Returns ``(S,)`` objectives and ``(S, 5)``
    gradients. With ``w1 = exp(a − α log N)``, ``w2 = exp(b − β log D)``,
    ``w3 = exp(e)`` and the residual ``r = log(w1 + w2 + w3) − log L``, the
    Huber loss is ``c (r − c/2)`` with ``c = clip(r, −δ, δ)`` and its
    derivative in ``r`` is ``c``. The sum is not shifted by its largest term:
    a row whose terms overflow or underflow gets an infinite objective, which
    the line search refuses.
    """
    a, b, e, alpha, beta = (x[:, i : i + 1] for i in range(5))
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        w1 = np.exp(a - alpha * log_n)
        w2 = np.exp(b - beta * log_d)
        w3 = np.exp(e)
        total = w1 + w2
        total += w3
        r = np.log(total)
        r -= log_l
        c = np.clip(r, -delta, delta)
        r -= 0.5 * c
        r *= c
        huber = r.sum(axis=1)
        c /= total
        w1 *= c
        w2 *= c
        grad = np.stack(
            [
                w1.sum(axis=1),
                w2.sum(axis=1),
                w3[:, 0] * c.sum(axis=1),
                -_row_dot(w1, log_n),
                -_row_dot(w2, log_d),
            ],
            axis=1,
        )
    return np.where(np.isfinite(huber), huber, np.inf), grad


def _two_loop(
    g: FloatArray, s: FloatArray, y: FloatArray, rho: FloatArray, gamma: FloatArray, order: Sequence[int]
) -> FloatArray:
    """L-BFGS's two-loop recursion for each row: the quasi-Newton direction ``-H g`` (``order``: newest first)."""
    q = g.copy()
    coef = np.zeros(rho.shape)
    for j in order:
        coef[:, j] = rho[:, j] * np.einsum("ij,ij->i", s[:, j], q)
        q -= coef[:, j, None] * y[:, j]
    r = gamma[:, None] * q
    for j in reversed(order):
        beta = rho[:, j] * np.einsum("ij,ij->i", y[:, j], r)
        r += s[:, j] * (coef[:, j] - beta)[:, None]
    return -r


@np.errstate(over="ignore", divide="ignore", invalid="ignore")
def _batched_lbfgs(fg: Objective, x0: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Minimise ``S`` independent problems at once; ``fg(x, rows)`` gives the objectives and gradients of ``rows``.

    Each row is its own L-BFGS: its own (s, y) history (a pair failing the
    curvature condition ``s·y > 0`` is not stored), a backtracking Armijo line
    search from a unit step, and its own stop (largest gradient entry ≤
    :data:`GTOL`, relative decrease ≤ :data:`FTOL`, or no decrease found).
    Returns the final ``x`` and objectives.
    """
    x = x0.copy()
    count = len(x)
    everyone = np.arange(count)
    f, g = fg(x, everyone)
    s_hist = np.zeros((count, MEMORY, x.shape[1]))
    y_hist = np.zeros_like(s_hist)
    rho = np.zeros((count, MEMORY))
    gamma = 1.0 / np.maximum(np.linalg.norm(g, axis=1), 1e-300)
    active = np.isfinite(f) & (np.abs(g).max(axis=1) > GTOL)
    for it in range(MAX_ITER):
        rows = np.flatnonzero(active)
        if rows.size == 0:
            break
        order = [(it - 1 - k) % MEMORY for k in range(min(it, MEMORY))]
        d = _two_loop(g[rows], s_hist[rows], y_hist[rows], rho[rows], gamma[rows], order)
        slope = np.einsum("ij,ij->i", g[rows], d)
        uphill = ~(slope < 0)
        if uphill.any():
            d[uphill] = -g[rows][uphill] / np.linalg.norm(g[rows][uphill], axis=1, keepdims=True)
            slope[uphill] = np.einsum("ij,ij->i", g[rows][uphill], d[uphill])
            rho[rows[uphill]] = 0.0
        step = np.ones(rows.size)
        new_x, new_f, new_g = x[rows].copy(), f[rows].copy(), g[rows].copy()
        pending = np.arange(rows.size)
        for _ in range(_HALVINGS):
            trial = x[rows[pending]] + step[pending, None] * d[pending]
            tf, tg = fg(trial, rows[pending])
            ok = tf <= f[rows[pending]] + _ARMIJO * step[pending] * slope[pending]
            done = pending[ok]
            new_x[done], new_f[done], new_g[done] = trial[ok], tf[ok], tg[ok]
            pending = pending[~ok]
            if pending.size == 0:
                break
            step[pending] *= 0.5
        moved = np.ones(rows.size, dtype=bool)
        moved[pending] = False
        s = new_x - x[rows]
        y = new_g - g[rows]
        sy = np.einsum("ij,ij->i", s, y)
        yy = np.einsum("ij,ij->i", y, y)
        keep = moved & np.isfinite(yy) & (sy > 1e-12 * np.linalg.norm(s, axis=1) * np.sqrt(yy))
        slot = it % MEMORY
        s_hist[rows, slot] = np.where(keep[:, None], s, 0.0)
        y_hist[rows, slot] = np.where(keep[:, None], y, 0.0)
        rho[rows, slot] = np.where(keep, 1.0 / np.where(keep, sy, 1.0), 0.0)
        gamma[rows] = np.where(keep, sy / np.where(keep, yy, 1.0), gamma[rows])
        decrease = f[rows] - new_f
        scale = np.maximum(np.abs(f[rows]), np.abs(new_f))
        x[rows], f[rows], g[rows] = new_x, new_f, new_g
        stop = ~moved | (decrease <= FTOL * scale) | (np.abs(new_g).max(axis=1) <= GTOL)
        active[rows[stop]] = False
    return x, f


def _threads() -> int:
    """The CPUs this process may run on (its affinity where the system has one)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


def _in_blocks(fg: Objective, pool: ThreadPoolExecutor) -> Objective:
    """``fg`` evaluated on blocks of :data:`_ROWS_PER_BLOCK` rows, spread over ``pool``'s threads.

    A block's (rows, points) temporaries stay in the CPU's cache (three times
    faster than one pass over all 4,500 rows), and numpy releases the GIL in
    its loops, so the threads run at once.
    """

    def blocked(x: FloatArray, rows: IntArray) -> tuple[FloatArray, FloatArray]:
        if len(rows) <= _ROWS_PER_BLOCK:
            return fg(x, rows)
        blocks = np.array_split(np.arange(len(rows)), -(-len(rows) // _ROWS_PER_BLOCK))
        done = list(pool.map(lambda block: fg(x[block], rows[block]), blocks))
        return np.concatenate([f for f, _ in done]), np.concatenate([g for _, g in done])

    return blocked


def _logs(
    params: ArrayLike, tokens: ArrayLike, losses: ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The logs of the three columns, after refusing what no fit can use, in one line."""
    columns = {}
    for name, values in (("params", params), ("tokens", tokens), ("losses", losses)):
        arr = np.asarray(values, dtype=np.float64)
        if arr.ndim != 1:
            raise InputError(
                f"Chinchilla fit: {name} must be a flat sequence of numbers, got shape {arr.shape}"
            )
        bad = np.flatnonzero(~np.isfinite(arr) | (arr <= 0))
        if bad.size:
            raise InputError(
                f"Chinchilla fit: {name}[{bad[0]}] is {float(arr[bad[0]])!r}; every value must be positive and finite"
            )
        columns[name] = arr
    lengths = {name: len(arr) for name, arr in columns.items()}
    if len(set(lengths.values())) != 1:
        raise InputError(f"Chinchilla fit: params, tokens and losses differ in length ({lengths})")
    count = lengths["params"]
    if count < 5:
        raise InputError(
            f"Chinchilla fit: the law has 5 parameters (E, A, B, alpha, beta) and needs at least 5 points, got {count}"
        )
    for name in ("params", "tokens"):
        if np.unique(columns[name]).size < 2:
            raise InputError(
                f"Chinchilla fit: every point has the same {name}; the law needs at least two values"
            )
    return np.log(columns["params"]), np.log(columns["tokens"]), np.log(columns["losses"])


def _law(x: FloatArray) -> ChinchillaLaw:
    a, b, e, alpha, beta = (float(v) for v in x)
    return ChinchillaLaw(E=float(np.exp(e)), A=float(np.exp(a)), B=float(np.exp(b)), alpha=alpha, beta=beta)


def fit_chinchilla(
    params: ArrayLike,
    tokens: ArrayLike,
    losses: ArrayLike,
    *,
    bootstrap: int = 0,
    seed: int = 0,
    delta: float = HUBER_DELTA,
    starts: FloatArray | None = None,
) -> ChinchillaFit:
    """Fit ``L(N, D) = E + A/N^alpha + B/D^beta`` to runs of ``params`` N, ``tokens`` D and ``losses`` L.

    L-BFGS from every start of :func:`start_grid` (or ``starts``, rows ``(a, b,
    e, alpha, beta)``), the best kept. ``bootstrap > 0`` refits that many
    resamples of the points (with replacement; ``seed`` fixes them) from the
    best fit and reports the standard deviation of each parameter as its
    standard error. Raises :class:`~herd.errors.InputError` for fewer than 5
    points, a non-positive or non-finite value, columns of different lengths,
    or a single value of N or D.
    """
    if delta <= 0:
        raise InputError(f"Chinchilla fit: the Huber delta must be positive, got {delta}")
    if bootstrap < 0 or bootstrap == 1:
        raise InputError(
            f"Chinchilla fit: the bootstrap needs 0 resamples (none) or at least 2 for a spread, got {bootstrap}"
        )
    log_n, log_d, log_l = _logs(params, tokens, losses)
    x0 = start_grid() if starts is None else np.asarray(starts, dtype=np.float64).reshape(-1, 5)

    def on_points(x: FloatArray, rows: IntArray) -> tuple[FloatArray, FloatArray]:
        return objective_and_gradient(x, log_n, log_d, log_l, delta)

    with ThreadPoolExecutor(_threads()) as pool:
        x, f = _batched_lbfgs(_in_blocks(on_points, pool), x0)
    if not np.isfinite(f).any():
        raise InputError("Chinchilla fit: no start reached a finite objective; the losses cannot be fitted")
    best = int(np.nanargmin(np.where(np.isfinite(f), f, np.nan)))
    law = _law(x[best])
    stderr = None
    if bootstrap:
        picks = np.random.default_rng(seed).integers(0, log_n.size, size=(bootstrap, log_n.size))
        bn, bd, bl = log_n[picks], log_d[picks], log_l[picks]

        def on_resamples(x: FloatArray, rows: IntArray) -> tuple[FloatArray, FloatArray]:
            return objective_and_gradient(x, bn[rows], bd[rows], bl[rows], delta)

        with ThreadPoolExecutor(_threads()) as pool:
            refits, _ = _batched_lbfgs(_in_blocks(on_resamples, pool), np.tile(x[best], (bootstrap, 1)))
        values = np.column_stack(
            [np.exp(refits[:, 2]), np.exp(refits[:, 0]), np.exp(refits[:, 1]), refits[:, 3], refits[:, 4]]
        )
        with np.errstate(over="ignore"):  # a coefficient the data cannot pin down has an infinite spread
            stderr = StandardErrors(*(float(v) for v in values.std(axis=0, ddof=1)))
    return ChinchillaFit(
        **asdict(law),
        objective=float(f[best]),
        starts=len(x0),
        points=int(log_n.size),
        delta=delta,
        bootstrap=bootstrap,
        stderr=stderr,
    )
