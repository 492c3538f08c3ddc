"""herd: the whole Llama family recipe, from raw web dumps to a chat model."""

from __future__ import annotations

__version__ = "0.1.0"

from herd.checkpoint.load import load_model
from herd.model import ModelConfig, Transformer, get_preset
from herd.tokenizer import load_tokenizer

__all__ = ["ModelConfig", "Transformer", "__version__", "get_preset", "load_model", "load_tokenizer"]
