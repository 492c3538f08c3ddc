"""The int4 decode kernel for x86 CPUs (``int4_cpu.cpp``), built on first use.

Batch-1 decoding with int4 weights is bound by unpacking and multiplying codes,
not by memory: the float reduction inductor writes for ``Int4Linear`` spends
about two instructions per weight. The C++ kernel uses llama.cpp's method
(int8 activations per group, ``VPDPBUSD`` integer dot products), about a tenth
of that, and serves up to ``FUSED_MAX_ROWS`` rows eagerly and under
``torch.compile`` alike (it is a registered operator, ``torch.ops.herd.int4_linear``).

No installable library provides this for PyTorch on x86: ATen's
``_weight_int4pack_mm_for_cpu`` is 10× slower than fp32 here (see
``docs/inference.md``), and torchao's CPU kernels are absent from its PyPI
wheels. The source is compiled with the C++ compiler that ``torch.compile``
already needs, once per machine (about 20 s; cached under
``~/.cache/torch_extensions``). Without AVX512-VNNI, without a compiler, or
with ``HERD_CPU_KERNELS=0``, ``Int4Linear`` keeps its portable PyTorch paths.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("int4_cpu.cpp")
FLAGS = ["-O3", "-fopenmp", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512vnni", "-mfma", "-mf16c"]


def _cpu_has_vnni() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_vnni" in flags and "avx512bw" in flags


_built: list[bool] = []  # the answer of ``available``, once known


@torch.compiler.assume_constant_result  # compiled code takes the answer as given, without tracing the build
def available() -> bool:
    """Whether ``torch.ops.herd.int4_linear`` can run here; builds and loads it on the first call."""
    if not _built:
        _built.append(_build())
    return _built[0]


def _build() -> bool:
    if os.environ.get("HERD_CPU_KERNELS", "1") == "0" or not _cpu_has_vnni():
        return False
    try:
        from torch.utils.cpp_extension import load

        load(
            name="herd_int4_cpu",
            sources=[str(SOURCE)],
            extra_cflags=FLAGS,
            extra_ldflags=["-fopenmp"],
            is_python_module=False,
        )
    except Exception as error:  # no compiler, or one that rejects the flags: the PyTorch paths still work
        log.warning("int4 CPU kernel unavailable (%s); using the PyTorch int4 product", error)
        return False
    torch.library.register_fake("herd::int4_linear")(_shape)
    return True


def _shape(
    x: torch.Tensor,
    codes: torch.Tensor,
    scales: torch.Tensor,
    mins: torch.Tensor,
    out_features: int,
    group_size: int,
) -> torch.Tensor:
    return x.new_empty(x.shape[0], out_features)


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
    ``int4_cpu.cpp``.
    """
    return torch.ops.herd.int4_linear(x, codes, scales, mins, out_features, group_size)
