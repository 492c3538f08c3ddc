"""Weight-only quantization for decoding: int8 per output channel, int4 in groups.

Batch-1 decoding reads every weight once per token, so its speed is bounded by
memory bandwidth (the "roofline"); storing weights in fewer bits moves fewer
bytes. Activations stay in floating point (weight-only quantization, as in
LLM.int8's weight path, Dettmers et al. 2022, and GPTQ/AWQ's deployment
format), so no calibration data is needed:

* ``int8``: symmetric, one scale per output row: ``W ≈ q · s``, ``q ∈ [-127, 127]``
  (8 bits per weight + one float per row). On CPU the product runs in
  ATen's weight-only int8 kernel (``_weight_int8pack_mm``); elsewhere the int8
  weight is converted in the matmul (fused by ``torch.compile``).
* ``int4``: asymmetric, one scale and offset per group of ``group_size`` inputs
  (the layout of llama.cpp's Q4_1): ``W ≈ (q - 8) · s + z``, ``q ∈ [0, 15]``.
  On CPU the product runs in ATen's tiled int4 kernel
  (``_weight_int4pack_mm_for_cpu``); elsewhere two codes share a byte and are
  unpacked per call (correct, not fast).

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
# Tiles of the input dimension ATen's int4 CPU kernel packs together.
_INT4_INNER_K_TILES = 2


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row int8 codes (out, in) and fp32 scales (out,) with ``weight ≈ codes · scales``."""
    w = weight.detach().float()
    scales = w.abs().amax(dim=1).clamp(min=1e-12) / 127
    codes = torch.round(w / scales[:, None]).clamp(-127, 127).to(torch.int8)
    return codes, scales


def quantize_int4(weight: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric int4 codes in [0, 15] (out, in) plus fp32 scales and offsets (out, in / group_size).

    ``weight ≈ (codes - 8) · scale + offset`` within each group.
    """
    out_features, in_features = weight.shape
    w = weight.detach().float().reshape(out_features, in_features // group_size, group_size)
    low, high = w.amin(dim=-1), w.amax(dim=-1)
    scales = ((high - low) / 15).clamp(min=1e-12)
    codes = torch.round((w - low[..., None]) / scales[..., None]).clamp(0, 15).to(torch.uint8)
    return codes.reshape(out_features, in_features), scales, low + 8 * scales


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(-1, x.shape[-1])


class Int8Linear(nn.Module):
    """A bias-free linear layer with int8 weights and one scale per output channel."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        codes, scales = quantize_int8(weight)
        self.register_buffer("weight", codes)
        self.register_buffer("scales", scales.to(weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scales = self.scales if self.scales.dtype == x.dtype else self.scales.to(x.dtype)
        if x.device.type == "cpu":
            y = torch.ops.aten._weight_int8pack_mm(_flat(x).contiguous(), self.weight, scales)
        else:
            y = F.linear(_flat(x), self.weight.to(x.dtype)) * scales
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 per channel"


class Int4Linear(nn.Module):
    """A bias-free linear layer with grouped asymmetric int4 weights."""

    def __init__(self, weight: torch.Tensor, group_size: int = 32) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.group_size = group_size
        codes, scales, offsets = quantize_int4(weight, group_size)
        self.packed_for_cpu = weight.device.type == "cpu"
        if self.packed_for_cpu:
            packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes.int(), _INT4_INNER_K_TILES)
            # The kernel's layout: (in / group_size, out, 2) with the scale then the offset.
            params = torch.stack([scales.t(), offsets.t()], dim=-1).contiguous()
        else:
            packed = codes[:, 0::2] | (codes[:, 1::2] << 4)
            params = torch.stack([scales, offsets], dim=-1)
        self.register_buffer("weight", packed)
        self.register_buffer("scales_and_offsets", params.to(weight.dtype))

    def dequantized(self, dtype: torch.dtype) -> torch.Tensor:
        """The (out, in) weight these codes stand for (the portable path)."""
        low, high = self.weight & 15, self.weight >> 4
        codes = torch.stack([low, high], dim=-1).reshape(self.out_features, -1, self.group_size)
        scales, offsets = self.scales_and_offsets.to(dtype).unbind(-1)
        w = (codes.to(dtype) - 8) * scales[..., None] + offsets[..., None]
        return w.reshape(self.out_features, self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        params = self.scales_and_offsets
        params = params if params.dtype == x.dtype else params.to(x.dtype)
        if self.packed_for_cpu:
            y = torch.ops.aten._weight_int4pack_mm_for_cpu(
                _flat(x).contiguous(), self.weight, self.group_size, params
            )
        else:
            y = F.linear(_flat(x), self.dequantized(x.dtype))
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
