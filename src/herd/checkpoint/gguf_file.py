"""Deprecated alias of :mod:`herd.io.gguf`, herd's one GGUF container reader and writer."""

from __future__ import annotations

import warnings

from herd.io.gguf import DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_DIM, SUPPORTED_VERSIONS, GGUFFile, TensorEntry

warnings.warn("herd.checkpoint.gguf_file moved to herd.io.gguf", DeprecationWarning, stacklevel=2)

__all__ = ["DEFAULT_ALIGNMENT", "GGUF_MAGIC", "MAX_DIM", "SUPPORTED_VERSIONS", "GGUFFile", "TensorEntry"]
