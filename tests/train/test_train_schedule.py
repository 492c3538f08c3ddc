"""LR schedule (Llama 2 §2.2, Llama 3 §3.4.3) and AdamW parameter groups."""

from __future__ import annotations

import itertools
import math

import pytest

from herd.model import get_preset
from herd.model.build import build_model
from herd.train.config import OptimConfig
from herd.train.optim import build_optimizer
from herd.train.schedule import LRSchedule


def test_warmup_then_cosine_to_ten_percent() -> None:
    s = LRSchedule(peak=3e-4, total_steps=10_000, warmup_steps=2000, min_ratio=0.1)
    assert s(0) == pytest.approx(3e-4 / 2000)
    assert s(1999) == pytest.approx(3e-4)
    assert s(6000) == pytest.approx(3e-5 + 0.5 * 2.7e-4)  # halfway through the cosine
    assert s(10_000) == pytest.approx(3e-5)
    lrs = [s(i) for i in range(2000, 10_000)]
    assert all(a >= b for a, b in itertools.pairwise(lrs))


def test_final_linear_anneal_to_zero() -> None:
    s = LRSchedule(peak=1.0, total_steps=1000, warmup_steps=100, min_ratio=0.1, anneal_steps=100)
    assert s(899) == pytest.approx(0.1, abs=1e-4)
    assert s(950) == pytest.approx(0.1 * 50 / 101)
    assert 0 < s(999) < 0.002
    assert all(math.isfinite(s(i)) and s(i) > 0 for i in range(1000))


def test_weight_decay_only_on_matrices() -> None:
    model = build_model(get_preset("llama3-tiny"))
    opt = build_optimizer(model, OptimConfig())
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim == 2 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    assert opt.defaults["betas"] == (0.9, 0.95) and opt.defaults["eps"] == 1e-5


def test_fused_adamw_matches_the_reference_update() -> None:
    """On CPU the optimizer is PyTorch's fused AdamW; three steps equal the for-loop implementation's."""
    import torch

    fused_model = build_model(get_preset("llama3-tiny"), seed=0)
    loop_model = build_model(get_preset("llama3-tiny"), seed=0)
    fused = build_optimizer(fused_model, OptimConfig(lr=1e-2))
    assert fused.defaults["fused"]
    groups = [
        {"params": group["params"], "weight_decay": group["weight_decay"]}
        for group in build_optimizer(loop_model, OptimConfig(lr=1e-2)).param_groups
    ]
    reference = torch.optim.AdamW(groups, lr=1e-2, betas=(0.9, 0.95), eps=1e-5, foreach=False)
    assert not reference.param_groups[0]["fused"]
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        for a, b in zip(fused_model.parameters(), loop_model.parameters(), strict=True):
            a.grad = torch.randn(a.shape, generator=g)
            b.grad = a.grad.clone()
        fused.step()
        reference.step()
    for (name, a), b in zip(fused_model.named_parameters(), loop_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=name)
