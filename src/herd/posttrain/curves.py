"""Training and held-out curves of a post-training run, one panel per logged figure.

DPO's reward margin and accuracy (Llama 3 §4.1.4) and PPO's reward and KL to
the reference (Llama 2 §3.2.3, where the reward must rise while the KL stays
bounded) are read the same way: every training step's value from
``metrics.jsonl``, and the held-out value at step 0 and at each validation
(logged as ``eval_<key>``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from herd.io.plot import pyplot, save_png


@dataclass(frozen=True)
class Panel:
    """One plotted figure: its metrics key (``eval_<key>`` held out), its axis label and its title."""

    key: str
    label: str
    title: str


def plot_curves(
    records: Sequence[dict[str, Any]],
    before: dict[str, float],
    panels: Sequence[Panel],
    dst: Path,
    *,
    train_label: str,
    held_label: str,
) -> Path | None:
    """Each panel's key against step for the training steps of ``records`` and, held out, at step 0
    (``before``) and at each validation; None when no training step logged the first panel's key."""
    train = [r for r in records if panels[0].key in r]
    if not train:
        return None
    held = ([{"step": 0, **before}] if before else []) + [r for r in records if f"eval_{panels[0].key}" in r]
    fig, axes = pyplot().subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        steps = [r for r in train if panel.key in r]
        ax.plot([r["step"] for r in steps], [r[panel.key] for r in steps], label=train_label, linewidth=1)
        shown = [r for r in held if f"eval_{panel.key}" in r]
        if shown:
            ax.plot(
                [r["step"] for r in shown], [r[f"eval_{panel.key}"] for r in shown], "o-", label=held_label
            )
        ax.set_xlabel("step")
        ax.set_ylabel(panel.label)
        ax.set_title(panel.title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return save_png(fig, dst)
