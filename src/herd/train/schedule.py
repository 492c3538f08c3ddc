"""The learning-rate schedule: linear warmup, cosine decay, optional final linear anneal.

Llama 1 §2.2 / Llama 2 §2.2: 2,000 warmup steps, cosine decay to 10% of the
peak. Llama 3 §3.4.3 anneals the LR linearly to 0 over the last tokens; with
``anneal_steps`` the last that many steps go linearly from the cosine's value
to 0. The LR is a pure function of the step, so the scheduler's whole state is
the step counter the trainer checkpoints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class LRSchedule:
    """``schedule(step)`` is the LR of optimizer step ``step`` (0-based)."""

    peak: float
    total_steps: int
    warmup_steps: int
    min_ratio: float = 0.1
    anneal_steps: int = 0

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.peak * (step + 1) / self.warmup_steps
        decay_end = self.total_steps - self.anneal_steps
        lr = self._cosine(min(step, decay_end))
        if step >= decay_end and self.anneal_steps:
            lr *= (self.total_steps - step) / (self.anneal_steps + 1)
        return lr

    def _cosine(self, step: int) -> float:
        span = max(1, self.total_steps - self.anneal_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        floor = self.min_ratio * self.peak
        return floor + (self.peak - floor) * 0.5 * (1 + math.cos(math.pi * progress))
