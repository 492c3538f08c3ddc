"""Causal self-attention with grouped-query heads (Ainslie et al. 2023; Llama 2 §2.2).

``n_kv_heads < n_heads`` shares each key/value head across ``n_heads / n_kv_heads``
query heads; ``n_kv_heads == n_heads`` is ordinary multi-head attention. The
scores go through :func:`herd.kernels.attention.scaled_dot_product_attention`:
PyTorch's, which picks the fused memory-efficient kernel when there is no
explicit mask (Llama 1 §2.4), or herd's causal CPU kernel where it serves
(float32 training and scoring), which skips the masked half.
"""

from __future__ import annotations

import torch
from torch import nn

from herd.kernels.attention import scaled_dot_product_attention
from herd.model.config import ModelConfig
from herd.model.kv_cache import LayerKVCache
from herd.model.rope import apply_rope


class Attention(nn.Module):
    """Multi-head / grouped-query attention with RoPE and an optional KV cache."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.n_heads = config.n_heads
        self.n_kv_heads = config.n_kv_heads
        self.head_dim = config.head_dim
        self.wq = nn.Linear(config.dim, config.n_heads * config.head_dim, bias=False)
        self.wk = nn.Linear(config.dim, config.n_kv_heads * config.head_dim, bias=False)
        self.wv = nn.Linear(config.dim, config.n_kv_heads * config.head_dim, bias=False)
        self.wo = nn.Linear(config.n_heads * config.head_dim, config.dim, bias=False)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None,
        cache: LayerKVCache | None = None,
        start_pos: int | torch.Tensor = 0,
        first_key: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``mask`` is a boolean (batch, 1, seq, keys) "may attend" tensor, or None for plain causal.

        ``first_key`` (batch, seq), the first key each query may see (its packed document's start),
        stands for the mask where the attention takes it (``herd.kernels.attention.takes_first_key``;
        ``Transformer.hidden_states`` builds one or the other).
        """
        bsz, seqlen, _ = x.shape
        q = self.wq(x).view(bsz, seqlen, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.wk(x).view(bsz, seqlen, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.wv(x).view(bsz, seqlen, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q = apply_rope(q, cos, sin)
        k = apply_rope(k, cos, sin)
        if cache is not None:
            k, v = cache.update(start_pos, k, v)
        out = scaled_dot_product_attention(q, k, v, mask, first_key=first_key, cached=cache is not None)
        return self.wo(out.transpose(1, 2).reshape(bsz, seqlen, self.n_heads * self.head_dim))
