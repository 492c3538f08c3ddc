"""Lazy model loading for steps that run in spawned workers (models are not pickled or deep-copied)."""

from __future__ import annotations

from typing import Any


class LazyModel:
    """Mixin: attributes named in ``lazy_attributes`` are dropped from pickles and deep copies.

    Executors deep-copy a pipeline per shard and pickle it to spawned workers
    (:mod:`herd.data.pipeline`); fastText and torch models cannot be (or should
    not be) copied that way, so each copy reloads its model on first use.
    """

    lazy_attributes: tuple[str, ...] = ("_model",)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for name in self.lazy_attributes:
            state[name] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
