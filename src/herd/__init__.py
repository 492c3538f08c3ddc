"""herd: the whole Llama family recipe, from raw web dumps to a chat model."""

from __future__ import annotations

__version__ = "0.1.0"
