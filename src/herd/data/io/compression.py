"""Deprecated alias of :mod:`herd.io.compression`, where herd opens compressed files."""

from __future__ import annotations

import warnings

from herd.io.compression import (
    CHUNK,
    COMPRESSION_ERRORS,
    CORRUPT,
    TRUNCATED,
    DamagedFileError,
    open_read,
    open_write,
)

warnings.warn("herd.data.io.compression moved to herd.io.compression", DeprecationWarning, stacklevel=2)

__all__ = [
    "CHUNK",
    "COMPRESSION_ERRORS",
    "CORRUPT",
    "TRUNCATED",
    "DamagedFileError",
    "open_read",
    "open_write",
]
