"""Rotary position embeddings (Su et al. 2021; Llama 1 §2.2) with Llama 3.1 and linear scaling.

herd rotates the two *halves* of each head (the Hugging Face convention), so
weights in the Hugging Face layout load unchanged. Meta's reference code rotates
*interleaved* pairs; its ``wq``/``wk`` rows are permuted on load (see
``herd.checkpoint.permute``) so both conventions compute the same function.
"""

from __future__ import annotations

import math

import torch

from herd.model.config import RopeScaling


def rope_frequencies(head_dim: int, theta: float, scaling: RopeScaling | None = None) -> torch.Tensor:
    """Inverse frequencies ``θ^(-2i/head_dim)`` for i in [0, head_dim/2), scaled if asked (fp32)."""
    freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    if scaling is None:
        return freqs
    if scaling.kind == "linear":
        return freqs / scaling.factor
    return _llama3_scale(freqs, scaling)


def _llama3_scale(freqs: torch.Tensor, s: RopeScaling) -> torch.Tensor:
    """Llama 3.1 rule (docs/spec.md §1): keep high frequencies, divide low ones by ``factor``, blend between."""
    low_wavelen = s.original_max_seq_len / s.low_freq_factor
    high_wavelen = s.original_max_seq_len / s.high_freq_factor
    wavelen = 2 * math.pi / freqs
    scaled = torch.where(wavelen > low_wavelen, freqs / s.factor, freqs)
    smooth = (s.original_max_seq_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor)
    blended = (1 - smooth) * scaled / s.factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return torch.where(medium, blended, scaled)


def rope_cos_sin(
    positions: torch.Tensor, inv_freq: torch.Tensor, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables of shape ``positions.shape + (head_dim,)`` for integer positions."""
    angles = positions.to(torch.float32).unsqueeze(-1) * inv_freq.to(positions.device)
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` of shape (batch, heads, seq, head_dim) by (batch, seq, head_dim) tables."""
    cos = cos.unsqueeze(1)
    sin = sin.unsqueeze(1)
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin
