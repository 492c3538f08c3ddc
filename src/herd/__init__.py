"""herd: the whole Llama family recipe, from raw web dumps to a chat model.

The top-level names are imported on first use, so ``import herd.data`` (the
data pipeline's worker processes) does not pay for importing PyTorch.
"""

from __future__ import annotations

# typing.TYPE_CHECKING without importing typing: ``import herd`` is the first thing the ``herd`` console
# script does, before its Ctrl-C handler (herd.console) is in place, so it imports nothing.
TYPE_CHECKING = False

__version__ = "0.1.0"

_EXPORTS = {
    "load_model": "herd.checkpoint.load",
    "ModelConfig": "herd.model.config",
    "Transformer": "herd.model.transformer",
    "get_preset": "herd.model.presets",
    "load_tokenizer": "herd.tokenizer.load",
    "generate": "herd.infer",
    "chat": "herd.infer",
}

if TYPE_CHECKING:
    from typing import Any

    from herd.checkpoint.load import load_model
    from herd.infer import chat, generate
    from herd.model.config import ModelConfig
    from herd.model.presets import get_preset
    from herd.model.transformer import Transformer
    from herd.tokenizer.load import load_tokenizer

__all__ = [
    "ModelConfig",
    "Transformer",
    "__version__",
    "chat",
    "generate",
    "get_preset",
    "load_model",
    "load_tokenizer",
]


def __getattr__(name: str) -> Any:
    import importlib

    if name not in _EXPORTS:
        raise AttributeError(f"module 'herd' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
