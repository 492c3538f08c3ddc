"""Bad-step detection (Llama 3 §3.3.4; PaLM §5.1 loss spikes).

A step is bad when its loss or gradient norm is NaN/Inf, or (with
``spike_factor > 0``) when its loss exceeds ``spike_factor`` × the exponential
moving average of the losses of the steps that counted, after ``warmup`` of
them. The detector's state is checkpointed so a resumed run decides exactly as
an uninterrupted one.
"""

from __future__ import annotations

import math
from typing import Any

EMA_DECAY = 0.9


class BadStepDetector:
    """``check`` names why a step is bad (or returns None); ``update`` feeds it good losses."""

    def __init__(self, spike_factor: float, warmup: int) -> None:
        self.spike_factor = spike_factor
        self.warmup = warmup
        self.ema: float | None = None
        self.count = 0

    def check(self, loss: float, grad_norm: float) -> str | None:
        if not math.isfinite(loss):
            return f"non-finite loss {loss}"
        if not math.isfinite(grad_norm):
            return f"non-finite gradient norm {grad_norm}"
        if (
            self.spike_factor > 0
            and self.ema is not None
            and self.count >= self.warmup
            and loss > self.spike_factor * self.ema
        ):
            return f"loss spike {loss:.4f} > {self.spike_factor} × running mean {self.ema:.4f}"
        return None

    def update(self, loss: float) -> None:
        self.ema = loss if self.ema is None else EMA_DECAY * self.ema + (1 - EMA_DECAY) * loss
        self.count += 1

    def state_dict(self) -> dict[str, Any]:
        return {"ema": self.ema, "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ema = state["ema"]
        self.count = int(state["count"])
