"""IsoFLOP curves and the compute-optimal power law (Chinchilla's approach 2, as Llama 3 §3.2.1 uses it).

Runs are grouped by the FLOP budget they were planned for. For each budget a
parabola is fitted to the validation loss against the log of the model's size
(an IsoFLOP curve); its vertex is that budget's compute-optimal size. A power
law ``X*(C) = A · C^α`` is then fitted through the vertices (a straight line in
log-log) and extrapolated to a larger budget.

Which size: Llama 3 fits the curves against the number of training *tokens*
(its Figure 2) and states ``N*(C) = A C^α`` with (α, A) = (0.53, 0.29) for the
tokens of the compute-optimal model; the parameters follow from ``C = 6 N D``.
Chinchilla's approach 2 fits parameters. Both are offered (``of="tokens"`` or
``"params"``); under ``C = 6 N D`` a law on one is a law on the other, with
exponent ``1 − α`` and coefficient ``1 / (6 A)``.

The paper's own numbers do not agree with each other: 0.29 · (3.8e25)^0.53 is
1.05e13 tokens (and 605B parameters), not the 16.55T tokens and 402B
parameters it reports for that budget, and 6 · 402e9 · 16.55e12 is 3.99e25
FLOPs, not 3.8e25. The law here is the stated formula; the tests pin both
the formula's values and this disagreement.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from herd.errors import InputError
from herd.scaling.chinchilla import Floats

Quantity = Literal["tokens", "params"]
QUANTITIES: tuple[Quantity, ...] = ("tokens", "params")


@dataclass(frozen=True)
class PowerLaw:
    """``X*(C) = A · C^alpha``, where X is the compute-optimal ``of`` (tokens or params) at ``C`` FLOPs."""

    A: float
    alpha: float
    of: Quantity = "tokens"

    def __call__(self, C: ArrayLike) -> Floats:
        return (self.A * np.asarray(C, dtype=np.float64) ** self.alpha)[()]

    def extrapolate(self, C: ArrayLike) -> tuple[Floats, Floats]:
        """``(N, D)``: parameters and tokens of the compute-optimal model at ``C`` FLOPs (``C = 6 N D``)."""
        c = np.asarray(C, dtype=np.float64)
        x = self(c)
        other = (c / (6.0 * x))[()]
        return (other, x) if self.of == "tokens" else (x, other)

    def on(self, of: Quantity) -> PowerLaw:
        """The same law stated for ``of``: under ``C = 6 N D``, ``N = C/(6 A C^α) = (1/(6A)) C^(1−α)``."""
        if of == self.of:
            return self
        return PowerLaw(A=1.0 / (6.0 * self.A), alpha=1.0 - self.alpha, of=of)


#: Llama 3 §3.2.1: the law on the compute-optimal number of training tokens.
LLAMA3 = PowerLaw(A=0.29, alpha=0.53, of="tokens")


@dataclass(frozen=True)
class IsoflopMinimum:
    """One budget's IsoFLOP curve: ``loss = a·u² + b·u + c`` with ``u = ln X``, and its vertex.

    ``optimum`` is the X at the vertex (tokens or params), ``loss`` the
    parabola's value there, ``runs`` the number of runs of the budget and
    ``inside`` whether the vertex lies within the sizes that were trained.
    """

    budget: float
    a: float
    b: float
    c: float
    optimum: float
    loss: float
    runs: int
    inside: bool


@dataclass(frozen=True)
class IsoflopFit:
    """The per-budget minima (by increasing budget) and the power law through them."""

    minima: tuple[IsoflopMinimum, ...]
    law: PowerLaw

    def extrapolate(self, C: ArrayLike) -> tuple[Floats, Floats]:
        """``(N, D)`` of the compute-optimal model at ``C`` FLOPs by the fitted law."""
        return self.law.extrapolate(C)

    def to_dict(self) -> dict[str, object]:
        """The fit as JSON-ready values."""
        return asdict(self)


def _column(name: str, values: ArrayLike) -> NDArray[np.float64]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise InputError(f"IsoFLOP fit: {name} must be a flat sequence of numbers, got shape {arr.shape}")
    bad = np.flatnonzero(~np.isfinite(arr) | (arr <= 0))
    if bad.size:
        raise InputError(
            f"IsoFLOP fit: {name}[{bad[0]}] is {float(arr[bad[0]])!r}; every value must be positive and finite"
        )
    return arr


def fit_parabola(budget: float, sizes: NDArray[np.float64], losses: NDArray[np.float64]) -> IsoflopMinimum:
    """The least-squares parabola of ``losses`` against ``ln sizes`` for one budget, and its vertex."""
    u = np.log(sizes)
    if np.unique(u).size < 3:
        raise InputError(
            f"IsoFLOP fit: budget {budget:.4g} has {np.unique(u).size} distinct model sizes; a parabola needs 3"
        )
    a, b, c = (float(v) for v in np.polyfit(u, losses, 2))
    if not a > 0:
        raise InputError(
            f"IsoFLOP fit: the loss of budget {budget:.4g} does not curve upward around a minimum "
            f"(parabola coefficient {a:.3g}); train sizes on both sides of the optimum"
        )
    vertex = -b / (2.0 * a)
    return IsoflopMinimum(
        budget=budget,
        a=a,
        b=b,
        c=c,
        optimum=float(np.exp(vertex)),
        loss=c - b * b / (4.0 * a),
        runs=int(u.size),
        inside=bool(u.min() <= vertex <= u.max()),
    )


def fit_power_law(budgets: ArrayLike, optima: ArrayLike, of: Quantity = "tokens") -> PowerLaw:
    """``X*(C) = A C^alpha`` by least squares of ``ln X*`` on ``ln C`` (two budgets or more)."""
    c, x = _column("budgets", budgets), _column("optima", optima)
    if np.unique(c).size < 2:
        raise InputError(f"IsoFLOP fit: {np.unique(c).size} budget(s); the power law needs at least 2")
    slope, intercept = np.polyfit(np.log(c), np.log(x), 1)
    return PowerLaw(A=float(np.exp(intercept)), alpha=float(slope), of=of)


def fit_isoflop(
    budgets: ArrayLike,
    params: ArrayLike,
    losses: ArrayLike,
    tokens: ArrayLike | None = None,
    *,
    of: Quantity = "tokens",
) -> IsoflopFit:
    """Fit one parabola per budget (in ``ln`` of ``of``) and the power law through the vertices.

    ``tokens`` default to ``budget / (6 · params)``. Raises
    :class:`~herd.errors.InputError` for columns of different lengths, a
    non-positive or non-finite value, a budget with fewer than 3 distinct
    sizes or whose parabola opens downward, or fewer than 2 budgets.
    """
    if of not in QUANTITIES:
        raise InputError(f"IsoFLOP fit: of must be one of {', '.join(QUANTITIES)}, got {of!r}")
    c, n, loss = _column("budgets", budgets), _column("params", params), _column("losses", losses)
    lengths = {"budgets": c.size, "params": n.size, "losses": loss.size}
    if tokens is not None:
        lengths["tokens"] = len(_column("tokens", tokens))
    if len(set(lengths.values())) != 1:
        raise InputError(f"IsoFLOP fit: the columns differ in length ({lengths})")
    d = c / (6.0 * n) if tokens is None else _column("tokens", tokens)
    sizes = d if of == "tokens" else n
    minima = tuple(fit_parabola(float(b), sizes[c == b], loss[c == b]) for b in np.unique(c))
    law = fit_power_law([m.budget for m in minima], [m.optimum for m in minima], of)
    return IsoflopFit(minima=minima, law=law)
