"""Deprecated alias of :mod:`herd.kernels.cross_entropy`, herd's output projection + cross-entropy kernel."""

from __future__ import annotations

import warnings

from herd.kernels.cross_entropy import LIBRARY, applies, linear_cross_entropy

warnings.warn(
    "herd.model.cpu_cross_entropy moved to herd.kernels.cross_entropy", DeprecationWarning, stacklevel=2
)

__all__ = ["FLAGS", "SOURCE", "applies", "available", "linear_cross_entropy"]

SOURCE, FLAGS, available = LIBRARY.source, LIBRARY.flags, LIBRARY.available
