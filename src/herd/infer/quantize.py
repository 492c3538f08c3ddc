"""Weight-only quantization for decoding: int8 per output channel, int4 in groups.

Batch-1 decoding reads every weight once per token, so its speed is bounded by
memory bandwidth (the "roofline"); storing weights in fewer bits moves fewer
bytes. Activations stay in floating point (weight-only quantization, the
deployment format of GPTQ, Frantar et al. 2023, and AWQ, Lin et al. 2024), so
no calibration data is needed; only the CPU kernels below round them to int8
per group inside each product, as llama.cpp does:

* ``int8``: symmetric, one scale per output row: ``W ≈ q · s``, ``q ∈ [-127, 127]``
  (8 bits per weight plus one float per row, like llama.cpp's Q8_0 but with
  per-row instead of per-32 scales).
* ``int4``: asymmetric, one float16 scale and minimum per group of ``group_size``
  inputs: ``W ≈ q · s + m``, ``q ∈ [0, 15]``, 4 + 32 / ``group_size`` bits per
  weight; groups of 32 (the default) are llama.cpp's Q4_1 format. Two codes
  share a byte: the low nibbles hold the first half of each group, the high
  nibbles the second half, so each half lines up with a contiguous slice of the
  input.

Where the speed comes from:

* On an x86 CPU with AVX512-VNNI, every product (prefill and decoding) runs in
  C++ kernels (:mod:`herd.kernels.quantized_linear`) with llama.cpp's method,
  activations rounded to int8 per group and integer dot products, eagerly and
  under ``torch.compile`` alike. Both layers store their codes in the kernels'
  layout, 16 output rows side by side.
* Otherwise, under ``torch.compile`` (``Engine(compile=True)``; on a GPU), a
  product with few rows (decoding up to ``FUSED_MAX_ROWS`` sequences) is
  written as a multiply-and-sum over the input dimension, which inductor turns
  into loops that read the packed weights and convert them in registers.

Outside these (and for prefill on other devices) the weight is dequantized and
multiplied with ``F.linear``: correct everywhere, but it writes a float copy
per call. ATen's own weight-only CPU kernels (``_weight_int8pack_mm``,
``_weight_int4pack_mm_for_cpu``) were measured 5-25× slower than the fp32
product on the reference CPU (see ``docs/inference.md``) and are not used.

The token embedding stays in floating point: decoding reads one row of it per
token. A tied output projection gets its own quantized copy.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from herd.errors import HerdError
from herd.kernels import quantized_linear

QuantMode = Literal["int8", "int4"]
QUANT_MODES: tuple[QuantMode, ...] = ("int8", "int4")
INT4_GROUP_SIZES = (32, 64, 128, 256)
# Up to this many rows (decode batch size), the fused reduction beats converting the weight for a GEMM
# (measured on the reference CPU: 37 ms against 69 ms per SmolLM2 step at 8 rows).
FUSED_MAX_ROWS = 8
TILE = 16  # output rows stored side by side (one per 32-bit lane of an AVX512 register)
FLOAT16_MAX = torch.finfo(torch.float16).max


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row int8 codes (out, in) and fp32 scales (out,) with ``weight ≈ codes · scales``."""
    w = weight.detach().float()
    scales = w.abs().amax(dim=1).clamp(min=1e-12) / 127
    codes = torch.round(w / scales[:, None]).clamp(-127, 127).to(torch.int8)
    return codes, scales


def quantize_int4(weight: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric int4 codes in [0, 15] (out, in / group_size, group_size) plus fp32 scales and minimums.

    Scales and minimums are (out, in / group_size); ``weight ≈ codes · scale + minimum``.
    """
    out_features, in_features = weight.shape
    w = weight.detach().float().reshape(out_features, in_features // group_size, group_size)
    low, high = w.amin(dim=-1), w.amax(dim=-1)
    scales = ((high - low) / 15).clamp(min=1e-12)
    codes = torch.round((w - low[..., None]) / scales[..., None]).clamp(0, 15).to(torch.uint8)
    return codes, scales, low


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(-1, x.shape[-1])


def _fused_product(x: torch.Tensor) -> bool:
    """Whether to write the product as a reduction that inductor fuses with the weight conversion."""
    return torch.compiler.is_compiling() and x.shape[0] <= FUSED_MAX_ROWS


def _cpu_kernel(x: torch.Tensor) -> bool:
    """Whether herd's CPU kernels take this product: any number of rows, on a CPU that has them (on the
    reference CPU they beat dequantizing for ``F.linear`` at every size measured, 1 to 512 rows, and
    match the fp32 product from ~128 rows)."""
    return x.device.type == "cpu" and quantized_linear.LIBRARY.available()


def tile_rows(rows: torch.Tensor) -> torch.Tensor:
    """(out, bytes) → (tiles, bytes / 4, TILE, 4): each 4-byte step of ``TILE`` rows side by side, the
    CPU kernels' layout (see ``herd/kernels/quantized_linear.cpp``); ``out`` is padded to whole tiles
    with zero rows."""
    padded = F.pad(rows, (0, 0, 0, -rows.shape[0] % TILE))
    return padded.reshape(-1, TILE, rows.shape[1] // 4, 4).permute(0, 2, 1, 3).contiguous()


def untile_rows(tiles: torch.Tensor) -> torch.Tensor:
    """The inverse of ``tile_rows``: (padded out, bytes)."""
    return tiles.permute(0, 2, 1, 3).reshape(-1, tiles.shape[1] * 4)


class Int8Linear(nn.Module):
    """A bias-free linear layer with int8 weights and one scale per output channel.

    ``weight`` holds the codes + 128 as uint8 in the CPU kernels' tiles (``tile_rows``).
    """

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        codes, scales = quantize_int8(weight)
        self.register_buffer("weight", tile_rows((codes.to(torch.int16) + 128).to(torch.uint8)))
        self.register_buffer("scales", F.pad(scales, (0, -self.out_features % TILE)).to(weight.dtype))

    def codes(self, dtype: torch.dtype) -> torch.Tensor:
        """The (out, in) int8 codes, as ``dtype``."""
        return untile_rows(self.weight)[: self.out_features].to(dtype) - 128

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2 = _flat(x)
        if _cpu_kernel(x2) and self.in_features % quantized_linear.INT8_GROUP == 0:
            y = quantized_linear.int8_linear(
                x2.float().contiguous(), self.weight, self.scales.float(), self.out_features
            )
            y = y.to(x.dtype)
        else:
            w = self.codes(x.dtype)
            y = (x2.unsqueeze(1) * w).sum(-1) if _fused_product(x2) else F.linear(x2, w)
            y = y * self.scales[: self.out_features].to(x.dtype)
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 per channel"


class Int4Linear(nn.Module):
    """A bias-free linear layer with grouped asymmetric int4 weights, two per byte.

    ``weight`` holds the packed codes in the CPU kernels' tiles (``tile_rows``; viewed
    as (tiles, groups, group_size / 8, 16, 4) bytes). Scales and minimums are float16,
    (groups, out padded to whole tiles).
    """

    def __init__(self, weight: torch.Tensor, group_size: int = 32) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.group_size = group_size
        codes, scales, mins = quantize_int4(weight, group_size)
        half, pad = group_size // 2, -self.out_features % TILE
        packed = codes[..., :half] | (codes[..., half:] << 4)
        self.register_buffer("weight", tile_rows(packed.reshape(self.out_features, -1)))
        # float16 values kept as their bits (int16), which ``model.to(dtype)`` leaves alone
        self.register_buffer(
            "scale_bits", F.pad(scales, (0, 0, 0, pad)).T.half().contiguous().view(torch.int16)
        )
        self.register_buffer("min_bits", F.pad(mins, (0, 0, 0, pad)).T.half().contiguous().view(torch.int16))

    @property
    def scales(self) -> torch.Tensor:
        """The groups' float16 scales, (groups, padded rows)."""
        return self.scale_bits.view(torch.float16)

    @property
    def mins(self) -> torch.Tensor:
        """The groups' float16 minimums, (groups, padded rows)."""
        return self.min_bits.view(torch.float16)

    def dequantized(self, dtype: torch.dtype) -> torch.Tensor:
        """The (out, in) weight these codes stand for."""
        packed = untile_rows(self.weight).view(-1, self.in_features // self.group_size, self.group_size // 2)
        codes = torch.cat([packed & 15, packed >> 4], dim=-1).to(dtype)
        w = codes * self.scales.T.to(dtype)[..., None] + self.mins.T.to(dtype)[..., None]
        return w.reshape(-1, self.in_features)[: self.out_features]

    def _kernel(self, x: torch.Tensor) -> torch.Tensor:
        y = quantized_linear.int4_linear(
            x.float().contiguous(),
            self.weight,
            self.scale_bits,
            self.min_bits,
            self.out_features,
            self.group_size,
        )
        return y.to(x.dtype)

    def _fused(self, x: torch.Tensor) -> torch.Tensor:
        # Σ_k (q_k·s + m)·x_k per group = s·Σ q_k x_k + m·Σ x_k. The scale multiplies inside one
        # reduction over all of a row's inputs, so inductor sums each row in vector lanes once
        # instead of once per group (+20-30% decode speed on the reference CPU, before its kernels).
        groups, steps = self.in_features // self.group_size, self.group_size // 8
        # (tiles, 16 rows, groups, steps, 4 bytes)
        tiles = self.weight.view(-1, groups, steps, TILE, 4).permute(0, 3, 1, 2, 4)
        low, high = (tiles & 15).to(x.dtype), (tiles >> 4).to(x.dtype)
        xs = x.view(x.shape[0], 1, 1, groups, 2, steps, 4)
        scales = self.scales.T.to(x.dtype).reshape(-1, TILE, groups)
        mins = self.mins.T.to(x.dtype).reshape(-1, TILE, groups)
        products = (low * xs[:, :, :, :, 0] + high * xs[:, :, :, :, 1]) * scales[..., None, None]
        y = products.sum((-1, -2, -3)) + (xs.sum((-1, -2, -3)) * mins).sum(-1)
        return y.reshape(x.shape[0], -1)[:, : self.out_features]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2 = _flat(x)
        if _cpu_kernel(x2):
            y = self._kernel(x2)
        elif _fused_product(x2):
            y = self._fused(x2)
        else:
            y = F.linear(x2, self.dequantized(x.dtype))
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
        if mode == "int8" and linear.in_features % 4:
            raise HerdError(
                f"{name}: int8 needs an input size that is a multiple of 4, got {linear.in_features}"
            )
        if mode == "int4" and linear.in_features % group_size:
            raise HerdError(
                f"{name}: input size {linear.in_features} is not a multiple of the int4 group size {group_size}"
            )
        if mode == "int4" and linear.weight.abs().max() > FLOAT16_MAX:
            raise HerdError(f"{name}: weights beyond ±{FLOAT16_MAX:g} do not fit int4's float16 scales")
    with torch.no_grad():
        for name, linear in targets:
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            quantized = Int8Linear(linear.weight) if mode == "int8" else Int4Linear(linear.weight, group_size)
            setattr(parent, child, quantized)
    return model
