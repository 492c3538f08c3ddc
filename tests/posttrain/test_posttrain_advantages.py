"""herd.posttrain.advantages against float64 loops written here, a case worked by hand, and TRL's formulas.

TRL is not imported: its old PPOTrainer's ``compute_advantages`` (a backward
loop with ``lastgaelam`` over right-padded responses) and ``masked_whiten``
(unbiased variance, ``rsqrt(var + 1e-8)``) are re-typed as plain loops.
"""

from __future__ import annotations

import math

import pytest
import torch

from herd.errors import ConfigError, InputError
from herd.posttrain.advantages import GAE_GAMMA, GAE_LAMBDA, gae, group_advantages, masked_mean, whiten


def _trl_gae(rewards: list[float], values: list[float], gamma: float, lam: float) -> list[float]:
    """TRL's loop over one unpadded response: ``nextvalues`` is 0 after its last token."""
    lastgaelam, reversed_ = 0.0, []
    for t in reversed(range(len(rewards))):
        nextvalues = values[t + 1] if t < len(rewards) - 1 else 0.0
        delta = rewards[t] + gamma * nextvalues - values[t]
        lastgaelam = delta + gamma * lam * lastgaelam
        reversed_.append(lastgaelam)
    return reversed_[::-1]


def test_llama2_defaults() -> None:
    assert (GAE_GAMMA, GAE_LAMBDA) == (1.0, 0.95)


def test_gae_worked_by_hand() -> None:
    # rewards 0, 0, 1 and values 0.5 everywhere, γ = 1, λ = 0.95, backwards:
    # t=2: δ = 1 + 0 − 0.5 = 0.5 (no value after the end)   A = 0.5
    # t=1: δ = 0 + 0.5 − 0.5 = 0                             A = 0 + 0.95 × 0.5 = 0.475
    # t=0: δ = 0                                             A = 0.95 × 0.475 = 0.45125
    # returns = A + V = 0.95125, 0.975, 1.0
    rewards = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)
    values = torch.full_like(rewards, 0.5)
    advantages, returns = gae(rewards, values, torch.ones_like(rewards, dtype=torch.bool))
    torch.testing.assert_close(advantages, torch.tensor([[0.45125, 0.475, 0.5]], dtype=torch.float64))
    torch.testing.assert_close(returns, torch.tensor([[0.95125, 0.975, 1.0]], dtype=torch.float64))


@pytest.mark.parametrize(("gamma", "lam"), [(1.0, 0.95), (0.99, 0.9), (1.0, 1.0)])
def test_gae_against_trl_loop_with_prompt_and_padding(gamma: float, lam: float) -> None:
    """Rows of different lengths, a masked prompt before and garbage padding after each response."""
    generator = torch.Generator().manual_seed(0)
    rewards = torch.randn(3, 9, generator=generator, dtype=torch.float64)
    values = torch.randn(3, 9, generator=generator, dtype=torch.float64)
    spans = [(0, 9), (2, 7), (4, 5)]  # (first, end) of each response
    mask = torch.zeros(3, 9, dtype=torch.bool)
    for row, (first, end) in enumerate(spans):
        mask[row, first:end] = True
    advantages, returns = gae(rewards, values, mask, gamma, lam)
    for row, (first, end) in enumerate(spans):
        expected = _trl_gae(rewards[row, first:end].tolist(), values[row, first:end].tolist(), gamma, lam)
        torch.testing.assert_close(advantages[row, first:end].tolist(), expected)
        torch.testing.assert_close(
            returns[row, first:end], advantages[row, first:end] + values[row, first:end]
        )
    assert not advantages[~mask].any() and not returns[~mask].any()


def test_gae_with_lambda_and_gamma_one_gives_reward_to_go() -> None:
    rewards = torch.tensor([[0.1, -0.2, 0.3, 2.0]], dtype=torch.float64)
    values = torch.tensor([[0.4, 0.3, -0.1, 0.2]], dtype=torch.float64)
    advantages, returns = gae(rewards, values, torch.ones_like(rewards), 1.0, 1.0)
    to_go = rewards.flip(1).cumsum(1).flip(1)
    torch.testing.assert_close(returns, to_go)
    torch.testing.assert_close(advantages, to_go - values)


def test_gae_float32_and_shapes_checked() -> None:
    rewards = torch.randn(2, 5, dtype=torch.bfloat16)
    advantages, returns = gae(rewards, rewards, torch.ones(2, 5))
    assert advantages.dtype == returns.dtype == torch.float32
    with pytest.raises(InputError, match="one shape"):
        gae(torch.zeros(2, 5), torch.zeros(2, 4), torch.ones(2, 5))


def _trl_whiten(values: list[float], shift_mean: bool) -> list[float]:
    n = len(values)
    mean = sum(values) / n
    variance = sum((v - mean) ** 2 for v in values) / n * n / (n - 1)
    out = [(v - mean) / math.sqrt(variance + 1e-8) for v in values]
    return [v + mean for v in out] if not shift_mean else out


@pytest.mark.parametrize("shift_mean", [True, False])
def test_whiten_with_mask_against_trl(shift_mean: bool) -> None:
    x = torch.tensor([[1.0, 2.0, 4.0, 99.0], [-3.0, 0.5, -99.0, -99.0]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=torch.bool)
    expected = _trl_whiten([1.0, 2.0, 4.0, -3.0, 0.5], shift_mean)
    out = whiten(x, mask, shift_mean)
    torch.testing.assert_close(out[mask].tolist(), expected)
    assert not out[~mask].any()
    torch.testing.assert_close(whiten(x[0, :3]).tolist(), _trl_whiten([1.0, 2.0, 4.0], True))


def test_whiten_needs_two_values() -> None:
    with pytest.raises(InputError, match="at least two values, got 1"):
        whiten(torch.tensor([1.0, 2.0]), torch.tensor([True, False]))


def test_masked_mean() -> None:
    x = torch.tensor([1.0, 2.0, 9.0])
    assert masked_mean(x, torch.tensor([1.0, 1.0, 0.0])).item() == 1.5
    assert masked_mean(x).item() == 4.0


def test_group_advantages_against_loop() -> None:
    rewards = torch.tensor([1.0, 2.0, 6.0, 0.0, 0.0, 3.0], dtype=torch.float64)
    out = group_advantages(rewards, group_size=3)
    expected = []
    for group in ([1.0, 2.0, 6.0], [0.0, 0.0, 3.0]):
        mean = sum(group) / 3
        std = math.sqrt(sum((r - mean) ** 2 for r in group) / 2)
        expected += [(r - mean) / (std + 1e-6) for r in group]
    torch.testing.assert_close(out.tolist(), expected)
    # worked by hand: group 0, 0, 3 has mean 1 and unbiased std sqrt((1 + 1 + 4) / 2) = sqrt(3)
    assert out[5].item() == pytest.approx(2 / math.sqrt(3), rel=1e-6)


def test_group_of_equal_rewards_has_zero_advantage() -> None:
    assert not group_advantages(torch.full((4,), 0.7), group_size=4).any()


def test_group_settings_checked() -> None:
    with pytest.raises(ConfigError, match="at least 2, got 1"):
        group_advantages(torch.zeros(4), group_size=1)
    with pytest.raises(InputError, match=r"\(prompts × 3,\)"):
        group_advantages(torch.zeros(4), group_size=3)
