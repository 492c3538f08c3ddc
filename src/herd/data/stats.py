"""Per-step counters: documents in, kept, dropped per reason, bytes and time.

Every step keeps one :class:`StepStats`; executors merge the stats of all
shards so ``manifest.json`` reports drop counts per step and reason.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from herd.data.checks import expect, expect_key


@dataclass
class StepStats:
    """What one step saw and did."""

    name: str
    docs_in: int = 0
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    bytes_in: int = 0
    bytes_out: int = 0
    seconds: float = 0.0

    @property
    def total_dropped(self) -> int:
        return sum(self.dropped.values())

    def merge(self, other: StepStats) -> None:
        """Add ``other``'s counts (the same step run on another shard)."""
        self.docs_in += other.docs_in
        self.kept += other.kept
        self.dropped.update(other.dropped)
        self.bytes_in += other.bytes_in
        self.bytes_out += other.bytes_out
        self.seconds += other.seconds

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "docs_in": self.docs_in,
            "kept": self.kept,
            "dropped": dict(sorted(self.dropped.items())),
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "seconds": round(self.seconds, 6),
        }

    @classmethod
    def from_dict(cls, d: Any, where: str = "stats") -> StepStats:
        """Stats written by :meth:`to_dict`, checked key by key (``where`` names the record in errors)."""
        expect(d, dict, where)
        counts = {key: expect_key(d, key, int, where) for key in ("docs_in", "kept", "bytes_in", "bytes_out")}
        dropped = expect_key(d, "dropped", dict, where)
        for reason, count in dropped.items():
            expect(count, int, f"{where}.dropped.{reason}")
        return cls(
            name=expect_key(d, "name", str, where),
            dropped=Counter(dropped),
            seconds=float(expect_key(d, "seconds", float, where)),
            **counts,
        )


def merge_stats(runs: list[list[StepStats]]) -> list[StepStats]:
    """Merge per-shard stat lists (same steps, same order) into one list."""
    merged: dict[str, StepStats] = {}
    for run in runs:
        for s in run:
            merged.setdefault(s.name, StepStats(s.name)).merge(s)
    return list(merged.values())
