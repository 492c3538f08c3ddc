"""A static, preallocated key/value cache for incremental decoding.

Each layer owns two buffers of shape (batch, n_kv_heads, max_seq_len, head_dim);
a forward pass at ``start_pos`` writes its keys and values into columns
``[start_pos, start_pos + seq)`` and attends over ``[0, start_pos + seq)``.
Nothing is reallocated while decoding, which keeps the decode step cheap and
``torch.compile``-friendly.

``start_pos`` may also be a 0-d integer tensor ("static" decoding): the new
columns are written with ``index_copy_`` and the whole buffers are returned, so
every step has the same shapes and one compiled graph, captured once as a CUDA
graph, serves all of them; the caller masks the columns not written yet.

``start_pos`` may also be a 1-D (batch,) integer tensor ("ragged" decoding, one
token per row): row ``b`` writes its token at its own column ``start_pos[b]``,
and the columns up to the furthest row are returned. A server batching requests
of different lengths (continuous batching) decodes them together this way, each
row holding one request, without padding one to the other's length.
"""

from __future__ import annotations

import copy

import torch

from herd.errors import HerdError
from herd.model.config import ModelConfig


class LayerKVCache:
    """Key and value buffers of one attention layer."""

    def __init__(self, k: torch.Tensor, v: torch.Tensor) -> None:
        self.k = k
        self.v = v

    def update(
        self, start_pos: int | torch.Tensor, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store new (batch, heads, seq, head_dim) keys/values; return all keys/values so far
        (with a tensor ``start_pos``: the whole buffers)."""
        batch = k.shape[0]
        if isinstance(start_pos, torch.Tensor) and start_pos.ndim == 1:
            if k.shape[2] != 1:
                raise HerdError(f"ragged decoding takes one token per row, got {k.shape[2]}")
            rows = torch.arange(batch, device=k.device)
            self.k[rows, :, start_pos] = k[:, :, 0]
            self.v[rows, :, start_pos] = v[:, :, 0]
            end = int(start_pos.max()) + 1
            return self.k[:batch, :, :end], self.v[:batch, :, :end]
        if isinstance(start_pos, torch.Tensor):
            columns = start_pos + torch.arange(k.shape[2], device=k.device)
            self.k[:batch].index_copy_(2, columns, k)
            self.v[:batch].index_copy_(2, columns, v)
            return self.k[:batch], self.v[:batch]
        end = start_pos + k.shape[2]
        if end > self.k.shape[2]:
            raise HerdError(f"KV cache overflow: position {end} exceeds the cache length {self.k.shape[2]}")
        self.k[:batch, :, start_pos:end] = k
        self.v[:batch, :, start_pos:end] = v
        return self.k[:batch, :, :end], self.v[:batch, :, :end]


class KVCache:
    """The caches of all layers for ``batch`` sequences of up to ``max_seq_len`` tokens."""

    def __init__(
        self,
        config: ModelConfig,
        batch: int,
        max_seq_len: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        shape = (batch, config.n_kv_heads, max_seq_len, config.head_dim)
        self.layers = [
            LayerKVCache(
                torch.zeros(shape, dtype=dtype, device=device), torch.zeros(shape, dtype=dtype, device=device)
            )
            for _ in range(config.n_layers)
        ]
        self.batch = batch
        self.max_seq_len = max_seq_len

    def rows(self, first: int, count: int = 1) -> KVCache:
        """The cache of rows ``first .. first + count`` of this one (a view: writes land in this cache)."""
        view = copy.copy(self)
        end = first + count
        view.layers = [LayerKVCache(c.k[first:end], c.v[first:end]) for c in self.layers]
        view.batch = count
        return view

    def copy_row(self, source: int, target: int, columns: int) -> None:
        """Copy the first ``columns`` keys and values of row ``source`` to row ``target``."""
        for c in self.layers:
            c.k[target, :, :columns] = c.k[source, :, :columns]
            c.v[target, :, :columns] = c.v[source, :, :columns]

    def nbytes(self) -> int:
        """Memory held by the cache."""
        return sum(c.k.nbytes + c.v.nbytes for c in self.layers)
