"""herd's output projection + cross-entropy for fp32 on x86 CPUs (``cross_entropy.cpp``), and
:func:`fused_linear_cross_entropy`, the one place that chooses between it and the PyTorch-ops loop.

The chunked loop of :func:`herd.model.cross_entropy.linear_cross_entropy` in one
C++ operator: the output weight is packed once per call into MKL's internal
layout for the chunks' logits products (about 25% faster than plain sgemm at
262 × 512 × 32,000), and each row of logits becomes its loss and gradient
``softmax - onehot`` in cache, with one exponential per logit (PyTorch's ops take
``log_softmax``, ``exp_``, a scatter and a mask: four passes over a chunk larger
than the cache). Without AVX512F, a compiler, MKL, or with ``HERD_CPU_KERNELS=0``,
the loop of PyTorch ops runs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from herd.kernels.build import AVX512F_FLAGS, NativeLibrary

# (hidden, weight, targets, ignore_index, chunk_rows, needs_grad) -> (summed loss, grad_hidden, grad_weight)
LossAndGradients = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor, int, int, bool],
    tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None],
]


def _register() -> None:
    torch.library.register_fake("herd::linear_cross_entropy")(_fake)


LIBRARY = NativeLibrary(Path(__file__).with_name("cross_entropy.cpp"), AVX512F_FLAGS, ("avx512f",), _register)


def fused_linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    ignore_index: int,
    chunk_rows: int,
    needs_grad: bool,
    *,
    fallback: LossAndGradients,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """The summed loss of ``hidden @ weight.T`` against ``targets`` (and with ``needs_grad`` the gradients
    of both), ``chunk_rows`` rows of logits at a time: herd's kernel where :func:`applies` to ``weight``'s
    dtype (the compute dtype), else ``fallback``, the same loop written in PyTorch ops."""
    if applies(weight.dtype, hidden.device):
        return linear_cross_entropy(
            hidden.to(weight.dtype), weight, targets, ignore_index, chunk_rows, needs_grad
        )
    return fallback(hidden, weight, targets, ignore_index, chunk_rows, needs_grad)


def applies(compute_dtype: torch.dtype, device: torch.device) -> bool:
    """Whether the kernel serves a loss computed in this dtype on this device (float32 on a CPU, built)."""
    return device.type == "cpu" and compute_dtype == torch.float32 and LIBRARY.available()


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    ignore_index: int,
    chunk_rows: int,
    needs_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Summed cross-entropy (float32 scalar) of ``hidden @ weight.T`` against ``targets``, rows whose target
    is ``ignore_index`` skipped, and with ``needs_grad`` its gradients for ``hidden`` and ``weight``.

    ``hidden`` (rows, dim) and ``weight`` (vocab, dim) float32, ``targets`` (rows,) int64; ``chunk_rows``
    rows of logits are held at a time."""
    loss, grad_hidden, grad_weight = torch.ops.herd.linear_cross_entropy(
        hidden.contiguous(), weight.contiguous(), targets.contiguous(), ignore_index, chunk_rows, needs_grad
    )
    return (loss, grad_hidden, grad_weight) if needs_grad else (loss, None, None)


def _fake(hidden: torch.Tensor, weight: torch.Tensor, *args: object) -> tuple[torch.Tensor, ...]:
    """The operator's outputs for tracing; ``args`` end with ``needs_grad`` (no gradients: empty)."""
    needs_grad = bool(args[-1])
    dim = hidden.shape[1]
    return (
        hidden.new_empty(()),
        hidden.new_empty(hidden.shape[0] if needs_grad else 0, dim),
        hidden.new_empty(weight.shape[0] if needs_grad else 0, dim),
    )
