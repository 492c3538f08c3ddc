"""Training samples drawn from ``herd-tokens-v1`` token shards: a deterministic, resumable mixture sampler.

The format (files, manifest, validation) is :mod:`herd.io.token_shards`; this
module cuts training samples from the shards it opens (Llama 1 §2.1, Llama 3
§3.4.1). Samples are windows of ``seq_len + 1`` tokens taken at stride
``seq_len`` inside one shard (input = window[:-1], target = window[1:]); a
window spans several documents, and the document ids passed to the model keep
attention inside each (Llama 3 §3.2). Each source's share of the mixture is
its manifest ``weight`` (Llama 1 §2.1's table; normalised over the sources; a
config may override it). The sampler is a pure function of a tiny state
(samples drawn per source), so the data order is deterministic, independent of
the world size, and resumes exactly from a checkpoint.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from herd.deprecation import moved_names
from herd.io.token_shards import DataError, Source

__all__ = [
    "Batch",
    "MixtureSampler",
    "bytes_per_token",
    "read_windows",
    "usable_sources",
    "validation_windows",
]

# Names of the format that lived here before it moved to herd.io.token_shards.
# The format's names moved to its own module, herd.io.token_shards.
__getattr__ = moved_names(
    __name__,
    dict.fromkeys(
        ("DTYPES", "FORMAT", "MANIFEST", "Shard", "TokenDataset", "write_dataset"), "herd.io.token_shards"
    ),
)


@dataclass
class Batch:
    """Inputs, next-token targets and document ids, each (batch, seq_len) int64."""

    inputs: torch.Tensor
    targets: torch.Tensor
    document_ids: torch.Tensor


def read_windows(sources: tuple[Source, ...], picks: list[tuple[int, int, int]], seq_len: int) -> Batch:
    """Gather ``(source, shard, offset)`` windows into a :class:`Batch`."""
    tokens = np.empty((len(picks), seq_len + 1), dtype=np.int64)
    doc_ids = np.empty((len(picks), seq_len), dtype=np.int64)
    for row, (src, shard_i, offset) in enumerate(picks):
        shard = sources[src].shards[shard_i]
        tokens[row] = shard.tokens[offset : offset + seq_len + 1]
        doc_ids[row] = np.searchsorted(shard.starts, np.arange(offset, offset + seq_len), side="right")
    t = torch.from_numpy(tokens)
    return Batch(t[:, :-1], t[:, 1:], torch.from_numpy(doc_ids))


def usable_sources(sources: tuple[Source, ...], seq_len: int) -> tuple[Source, ...]:
    """The sources that hold at least one training window; the others are dropped with a warning.

    A source smaller than one sequence (a tiny sample, a filter that kept
    almost nothing) cannot be drawn from; the mixture renormalises over the rest.
    """
    kept = tuple(s for s in sources if len(s.windows(seq_len)))
    for source in sources:
        if source not in kept:
            warnings.warn(
                f"source {source.name!r} has fewer than {seq_len + 1} tokens in any shard; "
                "it is left out of the mixture",
                stacklevel=2,
            )
    if not kept:
        raise DataError(f"no source has a shard of at least {seq_len + 1} tokens (seq_len {seq_len})")
    return kept


class MixtureSampler:
    """The global sequence of training windows: a weighted mixture of per-source shuffled epochs.

    Sample ``k`` comes from the source furthest behind its share
    (``argmax_s w_s·(k+1) − taken_s``), so every prefix of the stream matches
    the mixture weights as closely as integers allow, with no randomness. Each
    source walks its windows in a fresh permutation per epoch seeded by
    ``(seed, source, epoch)``; sources smaller than their share repeat (Llama 1
    §2.1 trains Wikipedia and Books for ~2.4 epochs). The whole state is the
    count taken from each source.
    """

    def __init__(self, sources: tuple[Source, ...], seq_len: int, weights: list[float], seed: int) -> None:
        self.sources = sources
        self.seq_len = seq_len
        self.windows = [s.windows(seq_len) for s in sources]
        for source, w in zip(sources, self.windows, strict=True):
            if not len(w):
                raise DataError(f"source {source.name!r} has fewer than {seq_len + 1} tokens in any shard")
        total = sum(weights)
        self.weights = np.asarray(weights, dtype=np.float64) / total
        self.seed = seed
        self.taken = [0] * len(sources)
        self._perm: dict[tuple[int, int], np.ndarray] = {}

    def state_dict(self) -> dict[str, Any]:
        return {"taken": list(self.taken)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["taken"]) != len(self.sources):
            raise DataError(f"data state has {len(state['taken'])} sources, the dataset {len(self.sources)}")
        self.taken = [int(x) for x in state["taken"]]

    def _permutation(self, src: int, epoch: int) -> np.ndarray:
        key = (src, epoch)
        if key not in self._perm:
            self._perm = {k: v for k, v in self._perm.items() if k[0] != src}
            rng = np.random.default_rng([self.seed, src, epoch])
            self._perm[key] = rng.permutation(len(self.windows[src]))
        return self._perm[key]

    def draw(self, n: int) -> list[tuple[int, int, int]]:
        """The next ``n`` windows of the global stream as ``(source, shard, offset)``."""
        picks = []
        for _ in range(n):
            k = sum(self.taken)
            src = int(np.argmax(self.weights * (k + 1) - np.asarray(self.taken)))
            count = len(self.windows[src])
            epoch, i = divmod(self.taken[src], count)
            shard, offset = self.windows[src][self._permutation(src, epoch)[i]]
            picks.append((src, int(shard), int(offset)))
            self.taken[src] += 1
        return picks


def validation_windows(sources: tuple[Source, ...], seq_len: int, n: int) -> list[tuple[int, int, int]]:
    """The first ``n`` windows of a held-out split, taken round-robin over its sources (fixed)."""
    per_source = [s.windows(seq_len) for s in sources]
    picks: list[tuple[int, int, int]] = []
    for i in range(max((len(w) for w in per_source), default=0)):
        for src, w in enumerate(per_source):
            if i < len(w) and len(picks) < n:
                picks.append((src, int(w[i][0]), int(w[i][1])))
    return picks


def bytes_per_token(sources: tuple[Source, ...]) -> float:
    """UTF-8 bytes per token of a split (NaN when the manifest has no byte counts)."""
    tokens, nbytes = sum(s.num_tokens for s in sources), sum(s.num_bytes for s in sources)
    return nbytes / tokens if tokens and nbytes else math.nan
