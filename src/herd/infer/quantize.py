"""Weight-only quantization for decoding: int8 per output channel, int4 in groups.

Batch-1 decoding reads every weight once per token, so its speed is bounded by
memory bandwidth (the "roofline"); storing weights in fewer bits moves fewer
bytes. Activations stay in floating point (weight-only quantization, the
deployment format of GPTQ, Frantar et al. 2023, and AWQ, Lin et al. 2024), so
no calibration data is needed:

* ``int8``: symmetric, one scale per output row: ``W ≈ q · s``, ``q ∈ [-127, 127]``
  (8 bits per weight plus one float per row, like llama.cpp's Q8_0 but with
  per-row instead of per-32 scales).
* ``int4``: asymmetric, one scale and offset per group of ``group_size`` inputs
  (the layout of llama.cpp's Q4_1): ``W ≈ (q - 8) · s + z``, ``q ∈ [0, 15]``;
  two codes share a byte: the low nibbles hold the first half of each group,
  the high nibbles the second half, so each half lines up with a contiguous
  slice of the input.

Where the speed comes from: under ``torch.compile`` (``Engine(compile=True)``)
a product with few rows (decoding up to ``FUSED_MAX_ROWS`` sequences) is
written as a multiply-and-sum over the input dimension, which inductor turns
into vectorised loops that read the packed weights and convert them in
registers. Outside compilation (and for prefill, many rows) the weight is dequantized and multiplied with
``F.linear``: correct everywhere, but it writes a float copy per call, so
uncompiled quantized decoding is slower than fp32. ATen's own weight-only CPU
kernels (``_weight_int8pack_mm``, ``_weight_int4pack_mm_for_cpu``) were
measured slower than the fp32 product on the reference CPU (see
``docs/inference.md``) and are not used.

The token embedding stays in floating point: decoding reads one row of it per
token. A tied output projection gets its own quantized copy.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from herd.errors import HerdError

QuantMode = Literal["int8", "int4"]
QUANT_MODES: tuple[QuantMode, ...] = ("int8", "int4")
INT4_GROUP_SIZES = (32, 64, 128, 256)
# Up to this many rows (decode batch size), the fused reduction beats converting the weight for a GEMM
# (measured on the reference CPU: 37 ms against 69 ms per SmolLM2 step at 8 rows).
FUSED_MAX_ROWS = 8


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row int8 codes (out, in) and fp32 scales (out,) with ``weight ≈ codes · scales``."""
    w = weight.detach().float()
    scales = w.abs().amax(dim=1).clamp(min=1e-12) / 127
    codes = torch.round(w / scales[:, None]).clamp(-127, 127).to(torch.int8)
    return codes, scales


def quantize_int4(weight: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric int4 codes in [0, 15] (out, in / group_size, group_size) plus fp32 scales and offsets.

    Scales and offsets are (out, in / group_size); ``weight ≈ (codes - 8) · scale + offset``.
    """
    out_features, in_features = weight.shape
    w = weight.detach().float().reshape(out_features, in_features // group_size, group_size)
    low, high = w.amin(dim=-1), w.amax(dim=-1)
    scales = ((high - low) / 15).clamp(min=1e-12)
    codes = torch.round((w - low[..., None]) / scales[..., None]).clamp(0, 15).to(torch.uint8)
    return codes, scales, low + 8 * scales


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(-1, x.shape[-1])


def _fused_product(x: torch.Tensor) -> bool:
    """Whether to write the product as a reduction that inductor fuses with the weight conversion."""
    return torch.compiler.is_compiling() and x.shape[0] <= FUSED_MAX_ROWS


class Int8Linear(nn.Module):
    """A bias-free linear layer with int8 weights and one scale per output channel."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        codes, scales = quantize_int8(weight)
        self.register_buffer("weight", codes)
        self.register_buffer("scales", scales.to(weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2 = _flat(x)
        w = self.weight.to(x.dtype)
        y = (x2.unsqueeze(1) * w).sum(-1) if _fused_product(x2) else F.linear(x2, w)
        return (y * self.scales.to(x.dtype)).reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 per channel"


class Int4Linear(nn.Module):
    """A bias-free linear layer with grouped asymmetric int4 weights, two per byte."""

    def __init__(self, weight: torch.Tensor, group_size: int = 32) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.group_size = group_size
        codes, scales, offsets = quantize_int4(weight, group_size)
        half = group_size // 2
        self.register_buffer("weight", codes[..., :half] | (codes[..., half:] << 4))
        self.register_buffer("scales", scales.to(weight.dtype))
        self.register_buffer("offsets", offsets.to(weight.dtype))

    def dequantized(self, dtype: torch.dtype) -> torch.Tensor:
        """The (out, in) weight these codes stand for."""
        codes = torch.cat([self.weight & 15, self.weight >> 4], dim=-1).to(dtype)
        w = (codes - 8) * self.scales.to(dtype)[..., None] + self.offsets.to(dtype)[..., None]
        return w.reshape(self.out_features, self.in_features)

    def _fused(self, x: torch.Tensor) -> torch.Tensor:
        # Σ_k ((q_k - 8)·s + z)·x_k per group = s·Σ q_k x_k + (z - 8s)·Σ x_k. The scale multiplies inside
        # one reduction over all of a row's inputs, so inductor sums each row in vector lanes once
        # instead of once per group (+20-30% decode speed on the reference CPU).
        groups = x.view(x.shape[0], 1, -1, 2, self.group_size // 2)
        low, high = (self.weight & 15).to(x.dtype), (self.weight >> 4).to(x.dtype)
        scales, offsets = self.scales.to(x.dtype), self.offsets.to(x.dtype)
        dot = ((low * groups[:, :, :, 0] + high * groups[:, :, :, 1]) * scales[..., None]).sum((-1, -2))
        return dot + (groups.sum((-1, -2)) * (offsets - 8 * scales)).sum(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2 = _flat(x)
        y = self._fused(x2) if _fused_product(x2) else F.linear(x2, self.dequantized(x.dtype))
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"int4 groups of {self.group_size}"
        )


def quantize_model(model: nn.Module, mode: QuantMode, group_size: int = 32) -> nn.Module:
    """Replace every ``nn.Linear`` of ``model`` (in place) by its weight-only quantized version.

    ``int4`` needs each layer's input size to be a multiple of ``group_size``
    (32, 64, 128 or 256). Returns ``model``.
    """
    if mode not in QUANT_MODES:
        raise HerdError(f"unknown quantization {mode!r}; use one of {', '.join(QUANT_MODES)}")
    if mode == "int4" and group_size not in INT4_GROUP_SIZES:
        raise HerdError(
            f"int4 group size must be one of {', '.join(map(str, INT4_GROUP_SIZES))}, got {group_size}"
        )
    targets = [(name, module) for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    for name, linear in targets:
        if linear.bias is not None:
            raise HerdError(f"{name}: weight-only quantization here supports bias-free layers only")
        if mode == "int4" and linear.in_features % group_size:
            raise HerdError(
                f"{name}: input size {linear.in_features} is not a multiple of the int4 group size {group_size}"
            )
    with torch.no_grad():
        for name, linear in targets:
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            quantized = Int8Linear(linear.weight) if mode == "int8" else Int4Linear(linear.weight, group_size)
            setattr(parent, child, quantized)
    return model
