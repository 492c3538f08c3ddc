"""Results printed for people: aligned ``key  value`` rows, the text form of ``--json``'s object."""

from __future__ import annotations

from collections.abc import Sequence


def print_rows(rows: Sequence[tuple[str, object]]) -> None:
    """Print each ``(key, value)`` as one line, the values aligned two spaces after the longest key."""
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
