"""PNG figures for run reports: matplotlib on its file backend, written atomically.

Every stage that draws (the data build's chart, the loss curve, the reward
model's score histograms, DPO's rewards, rejection sampling's reward against
k) gets pyplot from :func:`pyplot` and writes through :func:`save_png`, so none
needs a display, none leaves a half-written PNG behind a crash, and the same
figure gives the same bytes (no matplotlib version stamp in the file).
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from herd.io.atomic import atomic_file


def pyplot() -> ModuleType:
    """``matplotlib.pyplot`` on the Agg backend (files only: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig: Any, dst: Path | str) -> Path:
    """Write ``fig`` to ``dst`` as a PNG at 100 dpi, atomically, and close it; returns ``dst``."""
    dst = Path(dst)
    try:
        with atomic_file(dst) as tmp:
            fig.savefig(tmp, dpi=100, format="png", metadata={"Software": None})
    finally:
        pyplot().close(fig)
    return dst
