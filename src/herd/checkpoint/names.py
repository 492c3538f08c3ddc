"""Tensor-name mapping between herd's canonical names and a file format's own names.

Every format names the same tensors differently (docs/spec.md §1): a few top-level
tensors, and nine per-layer tensors under a layer prefix (``model.layers.{i}.``
for Hugging Face, ``blk.{i}.`` for GGUF). One :class:`NameMap` per format
translates both ways.
"""

from __future__ import annotations

import re


class NameMap:
    """Translate tensor names between herd and one format."""

    _HERD_LAYER_RE = re.compile(r"layers\.(\d+)\.(.+)\.weight")

    def __init__(self, top: dict[str, str], layer_prefix: str, layer: dict[str, str]) -> None:
        """``top``/``layer`` map the format's names to herd's; ``layer_prefix`` holds one ``{}`` for the index."""
        self._top = top
        self._layer = layer
        self._herd_top = {v: k for k, v in top.items()}
        self._herd_layer = {v: k for k, v in layer.items()}
        self._prefix = layer_prefix
        self._format_layer_re = re.compile(
            re.escape(layer_prefix).replace(r"\{\}", r"(\d+)") + r"(.+)\.weight"
        )

    def to_format(self, name: str) -> str:
        """The format's name of a canonical herd name (KeyError for names herd does not have)."""
        if name in self._herd_top:
            return self._herd_top[name]
        m = self._HERD_LAYER_RE.fullmatch(name)
        if not m or m.group(2) not in self._herd_layer:
            raise KeyError(name)
        return f"{self._prefix.format(m.group(1))}{self._herd_layer[m.group(2)]}.weight"

    def to_herd(self, name: str) -> str | None:
        """The canonical herd name of a format name (None for tensors herd does not use)."""
        if name in self._top:
            return self._top[name]
        m = self._format_layer_re.fullmatch(name)
        if m and m.group(2) in self._layer:
            return f"layers.{m.group(1)}.{self._layer[m.group(2)]}.weight"
        return None
