"""Deprecated alias of :mod:`herd.kernels.quantized_linear`, herd's int8 and int4 decode kernels."""

from __future__ import annotations

import warnings

from herd.kernels.quantized_linear import INT8_GROUP, LIBRARY, int4_linear, int8_linear

warnings.warn(
    "herd.infer.cpu_kernels moved to herd.kernels.quantized_linear", DeprecationWarning, stacklevel=2
)

__all__ = ["FLAGS", "INT8_GROUP", "SOURCE", "available", "int4_linear", "int8_linear"]

SOURCE, FLAGS, available = LIBRARY.source, LIBRARY.flags, LIBRARY.available
