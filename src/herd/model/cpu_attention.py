"""Deprecated alias of :mod:`herd.kernels.attention`, herd's causal attention kernel."""

from __future__ import annotations

import warnings

from herd.kernels.attention import LIBRARY, applies, causal_attention

warnings.warn("herd.model.cpu_attention moved to herd.kernels.attention", DeprecationWarning, stacklevel=2)

__all__ = ["FLAGS", "SOURCE", "applies", "available", "causal_attention"]

SOURCE, FLAGS, available = LIBRARY.source, LIBRARY.flags, LIBRARY.available
