"""Names that moved keep working from their old module for a while, with a warning naming the new home.

A module whose names moved sets ``__getattr__ = moved_names(__name__, {...})``:
Python calls it only for names the module no longer defines, so the old
``from herd.train.dataset import TokenDataset`` still works and says where
``TokenDataset`` lives now.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping
from typing import Any


def moved_names(module: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that serves each name in ``names`` from its new module (the mapping's value)."""

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        warnings.warn(f"{module}.{name} moved to {names[name]}.{name}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(names[name]), name)

    return __getattr__
