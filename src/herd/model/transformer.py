"""The Llama decoder-only Transformer (Llama 1 §2.2, Llama 2 §2.2, Llama 3 §3.2).

Per layer: ``h = x + Attn(RMSNorm(x))``, ``out = h + FFN(RMSNorm(h))``; then a
final RMSNorm and the output projection (tied to the embedding for models such
as SmolLM2). Parameter names follow Meta's reference ``model.py``; the weights'
RoPE layout follows Hugging Face (see ``herd.model.rope``).
"""

from __future__ import annotations

import math
import sys

import torch
from torch import nn

from herd.errors import HerdError
from herd.kernels.attention import takes_first_key
from herd.model.attention import Attention
from herd.model.config import ModelConfig
from herd.model.cross_entropy import linear_cross_entropy
from herd.model.feedforward import FeedForward
from herd.model.kv_cache import KVCache
from herd.model.norm import RMSNorm
from herd.model.rope import rope_cos_sin, rope_frequencies


class TransformerBlock(nn.Module):
    """One pre-norm residual block: attention then SwiGLU."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.attention = Attention(config)
        self.feed_forward = FeedForward(config.dim, config.hidden_dim)
        self.attention_norm = RMSNorm(config.dim, config.norm_eps)
        self.ffn_norm = RMSNorm(config.dim, config.norm_eps)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None,
        cache: KVCache | None,
        layer: int,
        start_pos: int | torch.Tensor,
        first_key: torch.Tensor | None = None,
    ) -> torch.Tensor:
        layer_cache = cache.layers[layer] if cache is not None else None
        h = x + self.attention(self.attention_norm(x), cos, sin, mask, layer_cache, start_pos, first_key)
        return h + self.feed_forward(self.ffn_norm(h))


class Transformer(nn.Module):
    """A Llama-family language model: token ids in, next-token logits out."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.dim)
        self.layers = nn.ModuleList(TransformerBlock(config) for _ in range(config.n_layers))
        self.norm = RMSNorm(config.dim, config.norm_eps)
        self.output = nn.Linear(config.dim, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.output.weight = self.tok_embeddings.weight
        self.register_buffer(
            "inv_freq",
            rope_frequencies(config.head_dim, config.rope_theta, config.rope_scaling),
            persistent=False,
        )

    def allocate(self, device: str | torch.device) -> None:
        """Give a model built on the meta device uninitialised storage on ``device`` (its shards, if sharded).

        ``to_empty`` allocates a tied output projection apart from the embedding,
        so the tie is restored; the RoPE buffer, not a parameter, is recomputed.
        """
        self.to_empty(device=device)
        if self.config.tie_embeddings and self.output.weight is not self.tok_embeddings.weight:
            self.output.weight = self.tok_embeddings.weight
        self.reset_rope(device)

    def reset_rope(self, device: str | torch.device | None = None) -> None:
        """(Re)compute the RoPE frequency buffer, e.g. after building on the meta device."""
        c = self.config
        freqs = rope_frequencies(c.head_dim, c.rope_theta, c.rope_scaling)
        self.inv_freq = freqs.to(device or self.tok_embeddings.weight.device)

    def forward(
        self,
        tokens: torch.Tensor,
        *,
        start_pos: int | torch.Tensor = 0,
        cache: KVCache | None = None,
        positions: torch.Tensor | None = None,
        document_ids: torch.Tensor | None = None,
        key_mask: torch.Tensor | None = None,
        targets: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits of shape (batch, seq, vocab) for ``tokens`` of shape (batch, seq).

        With ``targets`` (batch, seq) it returns instead the summed fp32 cross-entropy
        of the logits against them (``IGNORE_INDEX`` targets skipped), computed by
        :func:`herd.model.cross_entropy.linear_cross_entropy` without ever holding
        all the logits; a call through the module, so DDP and FSDP see it.

        - ``cache``/``start_pos``: incremental decoding; the tokens sit at columns
          ``start_pos..start_pos+seq`` of the cache. A 0-d tensor ``start_pos``
          attends over the whole cache at fixed shapes (static decoding, for
          CUDA graphs; see :mod:`herd.model.kv_cache`); a 1-D (batch,) tensor decodes one
          token per row at each row's own column and position (ragged decoding).
        - ``document_ids`` (batch, seq): packed sequences; attention stays inside
          each document and positions restart at each document (Llama 3 §3.2).
        - ``positions`` (batch, seq): explicit RoPE positions (e.g. left-padded batches).
        - ``key_mask`` (batch, keys): False marks keys nobody may attend to (padding).
        """
        hidden = self.hidden_states(
            tokens,
            start_pos=start_pos,
            cache=cache,
            positions=positions,
            document_ids=document_ids,
            key_mask=key_mask,
        )
        if targets is None:
            return self.output(hidden)
        return linear_cross_entropy(hidden, self.output.weight, targets)

    def hidden_states(
        self,
        tokens: torch.Tensor,
        *,
        start_pos: int | torch.Tensor = 0,
        cache: KVCache | None = None,
        positions: torch.Tensor | None = None,
        document_ids: torch.Tensor | None = None,
        key_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The final-norm hidden states (batch, seq, dim), before the output projection."""
        bsz, seqlen = tokens.shape
        device = tokens.device
        static = isinstance(start_pos, torch.Tensor)
        ragged = static and start_pos.ndim == 1
        if static and cache is None:
            raise HerdError("a tensor start_pos (static decoding) needs a KV cache")
        if document_ids is not None and (cache is not None or start_pos):
            raise HerdError("document_ids (packed training sequences) cannot be combined with a KV cache")
        first_key = document_starts(document_ids) if document_ids is not None else None
        if ragged and positions is None:
            positions = start_pos.unsqueeze(1)
        if positions is None:
            positions = (
                torch.arange(seqlen, device=device) - first_key
                if first_key is not None
                else (start_pos + torch.arange(seqlen, device=device)).expand(bsz, seqlen)
            )
        h = self.tok_embeddings(tokens)
        cos, sin = rope_cos_sin(positions, self.inv_freq, h.dtype)
        if ragged:
            mask = ragged_mask(start_pos, key_mask)
        elif static:
            mask = causal_mask(start_pos, seqlen, cache.max_seq_len, key_mask, device)
        elif takes_first_key(h, cached=cache is not None, masked=key_mask is not None):
            mask = None  # the attention takes the documents as first_key, without a dense mask
        else:
            mask = attention_mask(seqlen, start_pos, first_key, key_mask, device)
        for i, layer in enumerate(self.layers):
            h = layer(h, cos, sin, mask, cache, i, start_pos, first_key)
        return self.norm(h)

    def make_cache(
        self, batch: int, max_seq_len: int | None = None, dtype: torch.dtype | None = None
    ) -> KVCache:
        """A KV cache sized for ``batch`` sequences (default length: the model's context)."""
        weight = self.tok_embeddings.weight
        return KVCache(
            self.config, batch, max_seq_len or self.config.max_seq_len, dtype or weight.dtype, weight.device
        )

    @torch.no_grad()
    def init_weights(self, std: float = 0.02, seed: int | None = None) -> None:
        """Llama-style initialisation: N(0, 0.02) everywhere, residual outputs scaled by 1/√(2·layers).

        Meta did not publish its initialiser; this is the GPT-2/torchtitan
        scheme commonly used to reproduce Llama pretraining. Norms start at 1.
        Each weight is drawn whole from one CPU generator in a fixed order, so
        a sharded model (FSDP2 or tensor-parallel DTensors, each process keeping
        its own slice) starts from exactly the weights of the unsharded one.
        """
        # A parameter can be a DTensor only once torch.distributed.tensor is imported (1.5 s, so not here).
        dtensors = sys.modules.get("torch.distributed.tensor")
        generator = torch.Generator(device="cpu")
        if seed is not None:
            generator.manual_seed(seed)
        out_std = std / math.sqrt(2 * self.config.n_layers)
        for name, param in self.named_parameters():
            if param.ndim == 1:
                value = torch.ones(param.shape)
            else:
                sigma = out_std if name.endswith(("wo.weight", "w2.weight")) else std
                value = torch.randn(param.shape, generator=generator, dtype=torch.float32) * sigma
            if dtensors and isinstance(param, dtensors.DTensor):  # keep this process's slice of the same draw
                value = dtensors.distribute_tensor(
                    value.to(param.device), param.device_mesh, param.placements, src_data_rank=None
                )
            param.copy_(value)


def document_starts(document_ids: torch.Tensor) -> torch.Tensor:
    """For each token, the index of its document's first token; a document is a run of equal ids
    along the sequence. Positions restart there (``index - start``), and attention looks no earlier."""
    seqlen = document_ids.shape[-1]
    idx = torch.arange(seqlen, device=document_ids.device).expand_as(document_ids)
    starts = torch.ones_like(document_ids, dtype=torch.bool)
    starts[..., 1:] = document_ids[..., 1:] != document_ids[..., :-1]
    return torch.where(starts, idx, torch.zeros_like(idx)).cummax(dim=-1).values


def causal_mask(
    start_pos: int | torch.Tensor,
    seqlen: int,
    keys: int,
    key_mask: torch.Tensor | None,
    device: torch.device,
) -> torch.Tensor:
    """Boolean (batch or 1, 1, seq, keys) mask: the query at column ``start_pos + i`` sees the columns up
    to its own, minus those ``key_mask`` hides. ``keys`` is ``start_pos + seq`` for the columns written so
    far, or the whole cache's length for static decoding (a tensor ``start_pos``)."""
    q_idx = (start_pos + torch.arange(seqlen, device=device)).unsqueeze(1)
    mask = (torch.arange(keys, device=device).unsqueeze(0) <= q_idx)[None, None]
    if key_mask is not None:
        mask = mask & key_mask[:, None, None, :keys].bool()
    return mask


def ragged_mask(start_pos: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
    """Boolean (batch, 1, 1, keys) mask of ragged decoding: row ``b``'s one query, at column
    ``start_pos[b]``, sees its own columns up to there; keys run to the furthest row's column."""
    keys = int(start_pos.max()) + 1
    mask = torch.arange(keys, device=start_pos.device).unsqueeze(0) <= start_pos.unsqueeze(1)
    if key_mask is not None:
        mask = mask & key_mask[:, :keys].bool()
    return mask[:, None, None, :]


def attention_mask(
    seqlen: int,
    start_pos: int,
    first_key: torch.Tensor | None,
    key_mask: torch.Tensor | None,
    device: torch.device,
) -> torch.Tensor | None:
    """Boolean (batch, 1, seq, keys) mask, or None when plain causal attention suffices.

    ``first_key`` (batch, seq): the first key each query may see (its document's start, from
    ``document_starts``)."""
    if first_key is None and key_mask is None and (start_pos == 0 or seqlen == 1):
        return None
    mask = causal_mask(start_pos, seqlen, start_pos + seqlen, key_mask, device)
    if first_key is not None:
        keys = torch.arange(seqlen, device=device)
        mask = mask & (keys >= first_key.unsqueeze(-1))[:, None]
    return mask
