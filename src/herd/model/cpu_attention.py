"""herd's causal attention kernel for fp32 training and scoring on x86 CPUs (``cpu_attention.cpp``).

PyTorch's CPU flash attention multiplies, for sequences of up to 512 tokens,
every query block by all the keys, masked ones included: twice the work of
causal attention. herd's kernel multiplies each block of 64 queries by
exactly the keys they may see, through MKL's sgemm, and for packed documents
(Llama 3 §3.4.1) starts at the block's document instead of building a dense
mask: a sequence of 2,048 tokens in short documents costs a fraction of the
causal square. Measured on 2 cores (batch 4, 8 heads, 4 key/value heads,
512 tokens, head size 64): 19 ms for forward and backward against 32 ms.

The operators are registered with ``torch.library`` (an autograd formula and
fake shapes), so eager code and ``torch.compile`` graphs call the same
kernel. It serves float32 tensors on a CPU with AVX512F; everything else
(GPUs, other dtypes, KV-cached decoding, padding masks) goes through
``scaled_dot_product_attention``. ``HERD_CPU_KERNELS=0`` turns it off.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from herd import native

SOURCE = Path(__file__).with_name("cpu_attention.cpp")
FLAGS = native.AVX512F_FLAGS

_built: list[bool] = []  # the answer of ``available``, once known


@torch.compiler.assume_constant_result  # compiled code takes the answer as given, without tracing the build
def available() -> bool:
    """Whether ``torch.ops.herd.causal_attention`` can run here; builds and loads it on the first call."""
    return native.load_once(_built, SOURCE, FLAGS, ("avx512f",), _register)


def applies(x: torch.Tensor) -> bool:
    """Whether the kernel serves attention over activations like ``x``: float32 on a CPU, outside
    autocast (whose products would hand the attention another dtype), with the kernel built."""
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")
        and available()
    )


def causal_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, first_key: torch.Tensor | None = None
) -> torch.Tensor:
    """Causal attention of ``q`` (batch, heads, seq, head_dim) over ``k``, ``v`` (batch, kv_heads, seq,
    head_dim), scaled by 1/√head_dim; query ``i`` sees keys ``first_key[b, i]..i`` (int64 (batch, seq),
    non-decreasing: the start of its packed document), or ``0..i`` without ``first_key``.

    The result is (batch, heads, seq, head_dim), a transposed view of (batch, seq, heads, head_dim)
    memory, so merging the heads afterwards copies nothing.
    """
    out, _ = torch.ops.herd.causal_attention(q, k, v, first_key)
    return out


def _register() -> None:
    torch.library.register_fake("herd::causal_attention")(_fake_forward)
    torch.library.register_fake("herd::causal_attention_backward")(_fake_backward)
    torch.library.register_autograd("herd::causal_attention", _backward, setup_context=_setup_context)


def _fake_forward(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, first_key: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    batch, heads, seq, head_dim = q.shape
    out = q.new_empty(batch, seq, heads, head_dim).transpose(1, 2)
    return out, q.new_empty(batch, heads, seq)


def _fake_backward(
    grad_out: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    first_key: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[torch.Tensor, torch.Tensor]) -> None:
    q, k, v, first_key = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, out, lse)
    ctx.first_key = first_key


def _backward(
    ctx: Any, grad_out: torch.Tensor, grad_lse: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, None]:
    # lse is an internal output (the backward's softmax normaliser); nothing downstream differentiates it.
    q, k, v, out, lse = ctx.saved_tensors
    dq, dk, dv = torch.ops.herd.causal_attention_backward(grad_out, q, k, v, out, lse, ctx.first_key)
    return dq, dk, dv, None
