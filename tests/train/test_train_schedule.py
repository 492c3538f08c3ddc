"""LR schedule (Llama 2 §2.2, Llama 3 §3.4.3) and AdamW parameter groups."""

from __future__ import annotations

import itertools
import math

import pytest

from herd.checkpoint.load import build_model
from herd.model import get_preset
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
