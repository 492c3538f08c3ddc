"""The model side of generation: a KV cache, the prefill, and the per-token decode step.

Generation is two phases (Pope et al. 2022, "Efficiently Scaling Transformer
Inference"): the *prefill* runs the whole prompt through the model at once and
fills the key/value cache; each *decode* step then feeds only the newest token
and attends over the cache. Only the last prompt position needs logits, so the
prefill applies the output projection to that position alone (for SmolLM2 the
projection is a fifth of the weights and 49152 logits per position).

Prompts of different lengths share a batch by left padding: row ``i`` has
``pad[i]`` padding columns, its RoPE positions start at 0 at its first real
token, and a key mask hides the padding from every query. A batch without
padding takes the plain causal path (no mask tensors at all).

The cache is allocated once and reused across calls while it is large enough.
For a single sequence the engine also remembers which tokens the cache holds,
so a chat turn that extends the previous conversation only prefills the new
tokens.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch

from herd.errors import HerdError
from herd.model.kv_cache import KVCache
from herd.model.transformer import Transformer

# Prompt tokens run per prefill forward: bounds the attention and activation memory of long prompts.
PREFILL_CHUNK = 512
# Cache lengths are rounded up to this so that growing conversations rarely reallocate.
CACHE_ROUNDING = 256

DecodeFn = Callable[
    [torch.Tensor, int | torch.Tensor, torch.Tensor | None, torch.Tensor | None], torch.Tensor
]


class PaddedBatch:
    """Left-padded prompts: ids (batch, width), per-row padding, positions and key mask."""

    def __init__(self, prompts: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> None:
        lengths = [len(p) for p in prompts]
        self.width = max(lengths)
        self.pad = [self.width - n for n in lengths]
        rows = [[pad_id] * pad + list(p) for pad, p in zip(self.pad, prompts, strict=True)]
        self.tokens = torch.tensor(rows, dtype=torch.long, device=device)
        self.padded = any(self.pad)
        self.pad_tensor = torch.tensor(self.pad, dtype=torch.long, device=device).unsqueeze(1)
        self.key_mask: torch.Tensor | None = None

    def positions(self, start: int, end: int) -> torch.Tensor | None:
        """RoPE positions (batch, end - start) of columns ``start..end``; None when unpadded."""
        if not self.padded:
            return None
        columns = torch.arange(start, end, device=self.tokens.device).unsqueeze(0)
        return (columns - self.pad_tensor).clamp(min=0)

    def make_key_mask(self, columns: int) -> None:
        """Allocate the (batch, columns) key mask: False on each row's padding columns."""
        if self.padded:
            idx = torch.arange(columns, device=self.tokens.device).unsqueeze(0)
            self.key_mask = idx >= self.pad_tensor

    def repeat_rows(self, copies: int) -> PaddedBatch:
        """The batch with each row repeated ``copies`` times in a row (row ``i`` → rows ``i*copies .. i*copies+copies-1``).

        The layout of :meth:`Engine.prefill` with ``copies``: the rows that
        sample a prompt's continuations share its padding, positions and key mask.
        """
        repeated = copy.copy(self)
        repeated.tokens = self.tokens.repeat_interleave(copies, dim=0)
        repeated.pad = [pad for pad in self.pad for _ in range(copies)]
        repeated.pad_tensor = self.pad_tensor.repeat_interleave(copies, dim=0)
        if self.key_mask is not None:
            repeated.key_mask = self.key_mask.repeat_interleave(copies, dim=0)
        return repeated


class Engine:
    """A model ready to generate: cache management, prefill and an optionally compiled decode step.

    ``compile=True`` wraps the decode step in ``torch.compile``; the first steps
    pay the compilation. Two decode forms:

    * dynamic (the default on CPU): attend over the columns written so far;
      compiled with dynamic shapes, so the growing length does not recompile.
    * static (``static_cache=True``, the default when compiling on a GPU): the
      step's position is a device tensor and attention runs over the whole
      preallocated cache with a mask, so every step has the same shapes. On a
      GPU it is compiled with ``mode="reduce-overhead"``: the step is captured
      once as a CUDA graph and replayed, removing the launch cost of its few
      hundred small kernels, which dominates batch-1 decoding of small models.
    """

    def __init__(
        self, model: Transformer, *, compile: bool = False, static_cache: bool | None = None
    ) -> None:
        self.model = model.eval()
        self.context = model.config.max_seq_len
        self.vocab_size = model.config.vocab_size
        self.device = model.tok_embeddings.weight.device
        self.cache: KVCache | None = None
        cuda = self.device.type == "cuda"
        self.static_cache = compile and cuda if static_cache is None else static_cache
        self._graphs = compile and cuda and self.static_cache
        self._decode: DecodeFn = self._forward
        if compile and self.static_cache:
            self._decode = torch.compile(
                self._forward, mode="reduce-overhead" if self._graphs else None, dynamic=False
            )
        elif compile:
            self._decode = torch.compile(self._forward, dynamic=True)
        # The tokens whose keys/values sit in row 0 of the cache (single-sequence use only).
        self._cached_ids: list[int] = []

    def reset(self) -> None:
        """Forget what the cache holds (the buffers are kept)."""
        self._cached_ids = []

    def _ensure_cache(self, batch: int, columns: int, *, keep: bool = False) -> KVCache:
        """A cache of at least ``batch`` rows and ``columns`` columns; ``keep``: a grown cache keeps
        what the old one held (the serving slots), else the old buffers are freed first."""
        cache = self.cache
        if cache is None or cache.batch < batch or cache.max_seq_len < columns:
            length = -(-columns // CACHE_ROUNDING) * CACHE_ROUNDING
            if cache is not None:
                batch, length = max(batch, cache.batch), max(length, cache.max_seq_len)
            if not keep:
                self.cache = cache = None  # free the old buffers before allocating the new ones
            grown = self.model.make_cache(batch, length)
            if cache is not None:
                for old, new in zip(cache.layers, grown.layers, strict=True):
                    new.k[: cache.batch, :, : cache.max_seq_len] = old.k
                    new.v[: cache.batch, :, : cache.max_seq_len] = old.v
            self.cache = cache = grown
            self._cached_ids = []
            if self._graphs:  # fixed addresses: a captured graph updates the buffers in place
                for layer in cache.layers:
                    torch._dynamo.mark_static_address(layer.k)
                    torch._dynamo.mark_static_address(layer.v)
        return cache

    def _forward(
        self,
        tokens: torch.Tensor,
        start: int | torch.Tensor,
        positions: torch.Tensor | None,
        key_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        hidden = self.model.hidden_states(
            tokens, start_pos=start, cache=self.cache, positions=positions, key_mask=key_mask
        )
        return self.model.output(hidden[:, -1])

    def prefill(self, batch: PaddedBatch, new_tokens: int, *, copies: int = 1) -> torch.Tensor:
        """Fill the cache with ``batch`` (room for ``new_tokens`` more columns); the last position's logits.

        ``copies`` > 1 prepares ``copies`` continuations of every row (K samples
        per prompt, Llama 2 §3.2.3 rejection sampling) from one prefill: the
        prompts run through the model once, then each row's keys and values are
        copied to rows ``i*copies .. i*copies+copies-1`` of the cache and the
        logits repeated likewise, so decoding continues on
        ``batch.repeat_rows(copies)`` exactly as if every prompt had been
        given ``copies`` times.
        """
        if isinstance(copies, bool) or not isinstance(copies, int) or copies < 1:
            raise HerdError(f"copies must be a positive integer, got {copies!r}")
        rows = len(batch.pad)
        columns = batch.width + new_tokens
        self._ensure_cache(rows * copies, columns)
        start = 0
        if len(batch.pad) == 1:
            prompt = batch.tokens[0].tolist()
            start = _common_prefix(self._cached_ids, prompt, limit=len(prompt) - 1)
            self._cached_ids = prompt
        else:
            self._cached_ids = []
        batch.make_key_mask(self.cache.max_seq_len)
        logits = None
        for begin in range(start, batch.width, PREFILL_CHUNK):
            end = min(begin + PREFILL_CHUNK, batch.width)
            logits = self._forward(
                batch.tokens[:, begin:end], begin, batch.positions(begin, end), batch.key_mask
            )
        assert logits is not None
        if copies == 1:
            return logits
        width = batch.width
        for layer in self.cache.layers:
            for buffer in (layer.k, layer.v):  # from a copy of the prompt rows: the target rows overlap them
                buffer[: rows * copies, :, :width] = buffer[:rows, :, :width].repeat_interleave(copies, 0)
        return logits.repeat_interleave(copies, dim=0)

    def decode(self, batch: PaddedBatch, tokens: torch.Tensor, column: int) -> torch.Tensor:
        """Feed one new token per row (batch,) at cache column ``column``; the next logits (batch, vocab)."""
        if self.cache is None or column >= self.cache.max_seq_len:
            raise HerdError(f"decode at column {column} is past the KV cache; prefill first")
        if len(batch.pad) == 1:
            self._cached_ids.append(int(tokens[0]))
        start: int | torch.Tensor = column
        if self.static_cache:
            start = torch.tensor(column, device=self.device)
        if self._graphs:  # the previous step's outputs were consumed: the graph may overwrite them
            torch.compiler.cudagraph_mark_step_begin()
        logits = self._decode(tokens.unsqueeze(1), start, batch.positions(column, column + 1), batch.key_mask)
        return logits.clone() if self._graphs else logits

    def prefill_slots(self, first: int, prompts: Sequence[Sequence[int]], start: int = 0) -> torch.Tensor:
        """Write prompt ``i`` to columns ``start..`` of cache row ``first + i`` (the other rows are
        untouched) and return each prompt's last-position logits (len(prompts), vocab): requests
        joining a server's batch, prefilled together in one forward.

        The prompts are padded on the right, so each row's tokens sit at their own columns and
        positions and causal attention keeps every prompt to itself; the padding's keys and values
        lie past the row's length, where its decoding overwrites them before anything attends to
        them. The cache grows, keeping what it holds; a caller may also feed a long prompt one
        chunk per call (``start`` > 0).
        """
        lengths = [len(p) for p in prompts]
        if not prompts or min(lengths) < 1:
            raise HerdError("prefill_slots needs prompts of at least one token")
        width = max(lengths)
        cache = self._ensure_cache(first + len(prompts), start + width + 1, keep=True)
        self._cached_ids = []
        view = cache.rows(first, len(prompts))
        rows = [list(p) + [p[-1]] * (width - len(p)) for p in prompts]
        tokens = torch.tensor(rows, dtype=torch.long, device=self.device)
        last = torch.tensor(lengths, device=self.device) - 1
        hidden = []
        for begin in range(0, width, PREFILL_CHUNK):
            chunk = tokens[:, begin : begin + PREFILL_CHUNK]
            hidden.append(self.model.hidden_states(chunk, start_pos=start + begin, cache=view))
        states = torch.cat(hidden, dim=1)
        return self.model.output(states[torch.arange(len(prompts), device=self.device), last])

    def decode_slots(self, tokens: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
        """Ragged decode of cache rows ``0..n``: row ``i`` feeds ``tokens[i]`` at its own column
        ``columns[i]`` (its length so far, also its RoPE position); the next logits (n, vocab).

        Requests of different lengths decode together without padding (continuous batching,
        Yu et al. 2022, "Orca"); each attends over its own columns only.
        """
        if self.cache is None:
            raise HerdError("decode_slots before any prefill_slots: the KV cache is empty")
        self._ensure_cache(len(tokens), int(columns.max()) + 1, keep=True)  # grows as sequences lengthen
        self._cached_ids = []
        return self._forward(tokens.unsqueeze(1), columns, None, None)

    def copy_slot(self, source: int, target: int, columns: int) -> None:
        """Copy the first ``columns`` cached keys and values of row ``source`` to row ``target``."""
        if self.cache is None:
            raise HerdError("copy_slot before any prefill: the KV cache is empty")
        self.cache.copy_row(source, target, columns)


def _common_prefix(a: Sequence[int], b: Sequence[int], limit: int) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y or n == limit:
            break
        n += 1
    return n
