"""Generation tasks' batching: prompts run longest first, results come back in the task's order.

Padding a batch to its longest prompt costs the shorter ones; sorting by length
keeps a batch's prompts alike. Every task kind that generates (answers,
infills, needle answers) runs its examples through :func:`map_longest_first`,
so the order of the records, the batch sizes and the progress reports work
alike everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from herd.errors import ConfigError

T = TypeVar("T")
R = TypeVar("R")


def check_batch_size(batch_size: int) -> None:
    """Refuse a batch size below one, before a task reads its data."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")


def map_longest_first(
    items: Sequence[T],
    length: Callable[[T], int],
    batch_size: int,
    run: Callable[[list[T]], list[R]],
    progress: Callable[[int], None] | None = None,
) -> list[R]:
    """``run`` over batches of ``batch_size`` items, longest first; one result per item, in ``items``' order.

    ``run`` gets a batch and returns one result per item of it; ``progress``
    hears the size of each batch done. Items of equal length keep their order.
    """
    order = sorted(range(len(items)), key=lambda i: -length(items[i]))
    results: dict[int, R] = {}
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        results.update(zip(batch, run([items[i] for i in batch]), strict=True))
        if progress is not None:
            progress(len(batch))
    return [results[i] for i in range(len(items))]
