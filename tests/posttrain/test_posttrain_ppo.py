"""herd.posttrain.ppo: the advantage switch, against the functions of herd.posttrain.advantages by hand."""

from __future__ import annotations

import math

import pytest
import torch

from herd.errors import ConfigError
from herd.posttrain.advantages import gae, group_advantages, whiten
from herd.posttrain.ppo import advantages


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    rewards = torch.randn(4, 5, generator=generator, dtype=torch.float64)
    values = torch.randn(4, 5, generator=generator, dtype=torch.float64)
    mask = torch.tensor(
        [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 1, 1, 0, 0], [1, 1, 0, 0, 0]], dtype=torch.bool
    )
    return rewards, values, mask


def test_gae_advantages_are_whitened_and_returns_are_gaes() -> None:
    rewards, values, mask = _batch()
    out, returns = advantages("gae", rewards, mask, values=values)
    raw, expected_returns = gae(rewards, values, mask)
    torch.testing.assert_close(out, whiten(raw, mask))
    torch.testing.assert_close(returns, expected_returns)
    assert out[mask].mean().item() == pytest.approx(0, abs=1e-12)
    assert out[mask].std().item() == pytest.approx(1, abs=1e-6)


def test_group_advantages_broadcast_each_responses_total() -> None:
    rewards, _, mask = _batch()
    out, returns = advantages("group", rewards, mask, group_size=2)
    assert returns is None
    totals = [sum(rewards[b, t].item() for t in range(5) if mask[b, t]) for b in range(4)]
    for first in (0, 2):  # groups of two: (x − mean) / std is ±1/√2 for the unbiased std
        a, b = totals[first : first + 2]
        sign = math.copysign(1, a - b)
        assert out[first][mask[first]].tolist() == pytest.approx(
            [sign / math.sqrt(2)] * int(mask[first].sum()), abs=1e-5
        )
    expected = group_advantages(torch.tensor(totals, dtype=torch.float64), 2)
    torch.testing.assert_close(out, expected.unsqueeze(1) * mask)
    assert not out[~mask].any()


def test_advantage_settings_checked() -> None:
    rewards, _, mask = _batch()
    with pytest.raises(ConfigError, match="needs the value model's values"):
        advantages("gae", rewards, mask)
    with pytest.raises(ConfigError, match="needs group_size"):
        advantages("group", rewards, mask)
    with pytest.raises(ConfigError, match="unknown advantage 'vtrace' \\(expected gae, group\\)"):
        advantages("vtrace", rewards, mask)  # type: ignore[arg-type]
