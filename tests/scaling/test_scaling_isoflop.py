"""IsoFLOP parabolas and the compute-optimal power law (herd.scaling.isoflop): exact recovery of known
parabolas and power laws, the tokens/params duality under C = 6ND, agreement with Chinchilla's closed-form
allocation on curves drawn from a known L(N, D), Llama 3's published law checked by hand, and the refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from herd.errors import InputError
from herd.scaling.chinchilla import EPOCH
from herd.scaling.isoflop import LLAMA3, PowerLaw, fit_isoflop, fit_parabola, fit_power_law

BUDGETS = (6e18, 2e19, 6e19, 2e20, 6e20, 2e21)


def isoflop_grid(sizes_per_budget: int = 9) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of each budget at sizes spread over a factor 30 around Epoch's optimum, losses from Epoch's law."""
    budgets, params = [], []
    for budget in BUDGETS:
        centre, _ = EPOCH.optimal(budget)
        for n in float(centre) * np.geomspace(1 / 5.5, 5.5, sizes_per_budget):
            budgets.append(budget)
            params.append(n)
    c, n = np.array(budgets), np.array(params)
    return c, n, EPOCH.loss(n, c / (6 * n))


def test_an_exact_parabola_gives_its_vertex() -> None:
    # loss = 0.05 (ln N − ln 3e8)² + 2.5: vertex at N = 3e8, loss 2.5, by hand.
    n = np.array([5e7, 1e8, 3e8, 7e8, 2e9])
    m = fit_parabola(1e19, n, 0.05 * (np.log(n) - np.log(3e8)) ** 2 + 2.5)
    assert m.optimum == pytest.approx(3e8, rel=1e-9)
    assert m.loss == pytest.approx(2.5, rel=1e-12)
    assert m.a == pytest.approx(0.05, rel=1e-9)
    assert (m.runs, m.inside) == (5, True)


def test_a_vertex_beyond_the_trained_sizes_is_flagged() -> None:
    n = np.array([1e8, 2e8, 4e8])
    m = fit_parabola(1e19, n, 0.05 * (np.log(n) - np.log(1e9)) ** 2 + 2.5)
    assert m.optimum == pytest.approx(1e9, rel=1e-9)
    assert not m.inside


def test_the_power_law_through_exact_optima_is_recovered() -> None:
    budgets = np.array(BUDGETS)
    law = fit_power_law(budgets, 0.29 * budgets**0.53)
    assert (law.A, law.alpha, law.of) == (
        pytest.approx(0.29, rel=1e-9),
        pytest.approx(0.53, rel=1e-12),
        "tokens",
    )


def test_curves_from_a_known_law_give_its_compute_optimal_exponents() -> None:
    # Chinchilla's allocation: N_opt ∝ C^(β/(α+β)), D_opt ∝ C^(α/(α+β)). The IsoFLOP parabolas only
    # approximate L(N, C/6N) near its minimum, so the vertices are close to, not equal to, the closed form.
    c, n, loss = isoflop_grid()
    total = EPOCH.alpha + EPOCH.beta
    on_params = fit_isoflop(c, n, loss, of="params")
    assert on_params.law.alpha == pytest.approx(EPOCH.beta / total, abs=0.01)
    for minimum in on_params.minima:
        assert minimum.optimum == pytest.approx(float(EPOCH.optimal(minimum.budget)[0]), rel=0.1)
        assert minimum.inside
    target_n, _ = on_params.extrapolate(3.8e25)
    assert float(target_n) == pytest.approx(float(EPOCH.optimal(3.8e25)[0]), rel=0.15)
    on_tokens = fit_isoflop(c, n, loss, of="tokens")
    assert on_tokens.law.alpha == pytest.approx(EPOCH.alpha / total, abs=0.01)


def test_a_law_on_tokens_is_the_law_on_params_under_6nd() -> None:
    # D = C/(6N) maps ln D to ln C − ln 6 − ln N, so each tokens parabola mirrors the params one exactly.
    c, n, loss = isoflop_grid()
    on_params = fit_isoflop(c, n, loss, of="params")
    on_tokens = fit_isoflop(c, n, loss, c / (6 * n), of="tokens")
    assert on_tokens.law.alpha == pytest.approx(1 - on_params.law.alpha, rel=1e-9)
    assert math.isclose(on_tokens.law.A, 1 / (6 * on_params.law.A), rel_tol=1e-8)
    converted = on_params.law.on("tokens")
    assert (converted.alpha, converted.A) == (
        pytest.approx(on_tokens.law.alpha, rel=1e-9),
        pytest.approx(on_tokens.law.A, rel=1e-8),
    )
    for fit in (on_params, on_tokens):
        np.testing.assert_allclose(fit.extrapolate(1e24), on_params.extrapolate(1e24), rtol=1e-8)
    assert fit_isoflop(c, n, loss).law == on_tokens.law  # tokens by default, derived from 6ND


def test_llama3_published_law_checked_by_hand() -> None:
    # Llama 3 §3.2.1 states N*(C) = A C^α for the compute-optimal number of training TOKENS, (α, A) = (0.53,
    # 0.29). By hand: log10(3.8e25) = 25.5798; × 0.53 = 13.5573; 10^13.5573 × 0.29 = 1.0464e13 tokens, and
    # N = C / (6 D) = 3.8e25 / 6.278e13 = 6.05e11 parameters.
    assert LLAMA3.of == "tokens"
    n, d = LLAMA3.extrapolate(3.8e25)
    assert float(d) == pytest.approx(1.0464e13, rel=1e-3)
    assert float(n) == pytest.approx(6.053e11, rel=1e-3)
    np.testing.assert_allclose(LLAMA3.on("params").extrapolate(3.8e25), (n, d), rtol=1e-12)
    # The paper's 402B parameters and 16.55T tokens follow from neither reading of (0.53, 0.29): stated for
    # params the law gives 1.05e13 parameters; the pair of published numbers is 6·N·D = 3.99e25, not 3.8e25;
    # and 16.55T tokens at 3.8e25 FLOPs would need α = 0.538 with A = 0.29.
    assert float(PowerLaw(A=0.29, alpha=0.53, of="params")(3.8e25)) == pytest.approx(1.0464e13, rel=1e-3)
    assert math.isclose(6 * 402e9 * 16.55e12, 3.99e25, rel_tol=1e-3)
    assert math.log(16.55e12 / 0.29) / math.log(3.8e25) == pytest.approx(0.5378, abs=1e-4)


def test_fitting_llama3s_law_on_its_own_budgets_gives_it_back() -> None:
    # Minima placed on the paper's law at its sweep's budgets (6e18–1e22 FLOPs) give the law back.
    budgets = np.geomspace(6e18, 1e22, 8)
    law = fit_power_law(budgets, LLAMA3(budgets))
    assert math.isclose(law.A, 0.29, rel_tol=1e-9)
    assert law.alpha == pytest.approx(0.53, rel=1e-12)


@pytest.mark.parametrize(
    ("budgets", "params", "losses", "message"),
    [
        (
            [1e19] * 3 + [1e20] * 2,
            [1e8, 2e8, 4e8, 5e8, 9e8],
            [2.9, 2.8, 2.9, 2.7, 2.6],
            "1e\\+20 has 2 distinct",
        ),
        (
            [1e19] * 3 + [1e20] * 3,
            [1e8, 2e8, 4e8] * 2,
            [2.9, 3.1, 2.9, 2.8, 2.7, 2.8],
            "does not curve upward",
        ),
        ([1e19] * 3, [1e8, 2e8, 4e8], [2.9, 2.8, 2.9], "1 budget"),
        ([1e19] * 3, [1e8, -2e8, 4e8], [2.9, 2.8, 2.9], r"params\[1\] is -200000000.0"),
        ([1e19] * 3, [1e8, 2e8], [2.9, 2.8, 2.9], "differ in length"),
    ],
)
def test_unusable_inputs_are_one_line_input_errors(budgets, params, losses, message) -> None:
    with pytest.raises(InputError, match=message) as caught:
        fit_isoflop(budgets, params, losses)
    assert "\n" not in str(caught.value)


def test_an_unknown_quantity_is_refused() -> None:
    with pytest.raises(InputError, match="of must be one of tokens, params"):
        fit_isoflop([1e19] * 3, [1e8, 2e8, 4e8], [2.9, 2.8, 2.9], of="flops")  # type: ignore[arg-type]
