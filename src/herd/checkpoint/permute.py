"""The q/k row permutation between Meta's interleaved RoPE and Hugging Face's rotate-half (docs/spec.md §1).

Meta's reference code rotates adjacent pairs (x0,x1), (x2,x3)...; Hugging Face
rotates the halves (x0, x_{d/2}), ... . Permuting the rows of ``wq``/``wk`` per
head turns one into the other, so both layouts compute the same attention.
GGUF files store q/k in Meta's order, as llama.cpp rotates pairs too.
"""

from __future__ import annotations

import torch


def interleaved_to_halves(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Meta/GGUF row order → Hugging Face (herd) row order, for a (n_heads·head_dim, dim) weight."""
    rows, cols = w.shape[0], w.shape[-1]
    head_dim = rows // n_heads
    return w.reshape(n_heads, head_dim // 2, 2, cols).transpose(1, 2).reshape(rows, cols)


def halves_to_interleaved(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Hugging Face (herd) row order → Meta/GGUF row order; the inverse of :func:`interleaved_to_halves`."""
    rows, cols = w.shape[0], w.shape[-1]
    head_dim = rows // n_heads
    return w.reshape(n_heads, 2, head_dim // 2, cols).transpose(1, 2).reshape(rows, cols)
