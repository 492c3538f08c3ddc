"""herd's int4 and int8 decode kernels for x86 CPUs (``quantized_linear.cpp``), built on first use.

Decoding a few rows with quantized weights is bound by converting and
multiplying codes, not by memory: the float reductions inductor writes for
``Int4Linear`` and ``Int8Linear`` spend one or two instructions per weight,
and dequantizing for ``F.linear`` writes a float copy of the weight per call.
The C++ kernels use llama.cpp's method (activations rounded to int8 per group,
``VPDPBUSD`` integer dot products on 16 output rows at a time), a small
fraction of that, and serve every product on the CPU, from one decoded row
to a prefill, eagerly and under ``torch.compile`` alike (they are registered
operators, ``torch.ops.herd.int4_linear`` and ``torch.ops.herd.int8_linear``).

No installable library provides these for PyTorch on x86: ATen's
``_weight_int8pack_mm`` and ``_weight_int4pack_mm_for_cpu`` are 5–25× slower than
fp32 here (see ``docs/inference.md``), and torchao's CPU kernels are absent from
its PyPI wheels. The source is compiled on first use by
:mod:`herd.kernels.build` (once per machine and torch version). Without AVX512-VNNI,
without a compiler, or with ``HERD_CPU_KERNELS=0``, the layers keep their
portable PyTorch paths.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from herd.kernels.build import NativeLibrary

INT8_GROUP = 32  # inputs per activation scale in the int8 kernel (the input size must be a multiple)


def _register() -> None:
    torch.library.register_fake("herd::int4_linear")(_fake(3))  # (x, codes, scales, mins, out_features, ...)
    torch.library.register_fake("herd::int8_linear")(_fake(2))  # (x, codes, scales, out_features)


LIBRARY = NativeLibrary(
    Path(__file__).with_name("quantized_linear.cpp"),
    ["-O3", "-fopenmp", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512vnni", "-mfma", "-mf16c"],
    ("avx512_vnni", "avx512bw"),
    _register,
)


def _fake(out_position: int) -> Callable[..., torch.Tensor]:
    """The kernels' output for tracing: (rows, out_features), ``out_features`` the argument at
    ``out_position`` after ``x``."""
    return lambda x, *rest: x.new_empty(x.shape[0], rest[out_position])


def int4_linear(
    x: torch.Tensor,
    codes: torch.Tensor,
    scales: torch.Tensor,
    mins: torch.Tensor,
    out_features: int,
    group_size: int,
) -> torch.Tensor:
    """``x @ W.T`` for (rows, in) float32 ``x`` and the int4 weight of ``Int4Linear``'s tiled layout.

    ``codes``: uint8 (tiles, groups, group_size / 8, 16, 4); ``scales``, ``mins``: float16, or
    their bits as int16, (groups, out_features rounded up to 16). The layout is described in
    ``quantized_linear.cpp``.
    """
    return torch.ops.herd.int4_linear(x, codes, scales, mins, out_features, group_size)


def int8_linear(
    x: torch.Tensor, codes: torch.Tensor, scales: torch.Tensor, out_features: int
) -> torch.Tensor:
    """``x @ W.T`` for (rows, in) float32 ``x`` and the int8 weight of ``Int8Linear``'s tiled layout.

    ``codes``: uint8 codes + 128, (tiles, in / 4, 16, 4); ``scales``: float32 (out_features
    rounded up to 16). ``in`` must be a multiple of ``INT8_GROUP``.
    """
    return torch.ops.herd.int8_linear(x, codes, scales, out_features)
