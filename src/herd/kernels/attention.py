"""herd's causal attention kernel for fp32 training and scoring on x86 CPUs (``attention.cpp``), and
:func:`scaled_dot_product_attention`, the one place that chooses between it and PyTorch's.

PyTorch's CPU flash attention multiplies, for sequences of up to 512 tokens,
every query block by all the keys, masked ones included: twice the work of
causal attention. herd's kernel multiplies each block of 64 queries by
exactly the keys they may see, through MKL's sgemm, and for packed documents
(Llama 3 §3.2) starts at the block's document instead of building a dense
mask: a sequence of 2,048 tokens in short documents costs a fraction of the
causal square. Measured on 2 cores (batch 4, 8 heads, 4 key/value heads,
512 tokens, head size 64): 19 ms for forward and backward against 32 ms.

The operators are registered with ``torch.library`` (an autograd formula and
fake shapes), so eager code and ``torch.compile`` graphs call the same
kernel. It serves float32 tensors on a CPU with AVX512F; everything else
(GPUs, other dtypes, KV-cached decoding, padding masks) goes through
``F.scaled_dot_product_attention``. ``HERD_CPU_KERNELS=0`` turns it off.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from herd.kernels.build import AVX512F_FLAGS, NativeLibrary


def _register() -> None:
    torch.library.register_fake("herd::causal_attention")(_fake_forward)
    torch.library.register_fake("herd::causal_attention_backward")(_fake_backward)
    torch.library.register_autograd("herd::causal_attention", _backward, setup_context=_setup_context)


LIBRARY = NativeLibrary(Path(__file__).with_name("attention.cpp"), AVX512F_FLAGS, ("avx512f",), _register)


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    first_key: torch.Tensor | None = None,
    cached: bool = False,
) -> torch.Tensor:
    """Softmax attention of ``q`` (batch, heads, seq, head_dim) over ``k``, ``v`` (batch, kv_heads, keys,
    head_dim), scaled by 1/√head_dim, each key/value head shared by ``heads / kv_heads`` query heads
    (grouped-query attention, Ainslie et al. 2023; Llama 2 §2.2).

    ``mask`` is a boolean (batch or 1, 1, seq, keys) "may attend" tensor. Without one, attention is
    causal over keys that coincide with the queries (a single query, a decode step, sees every key), and
    where :func:`takes_first_key` holds, query ``i`` sees only keys ``first_key[b, i]..i`` (its packed
    document's; int64 (batch, seq)); elsewhere packed documents must be in ``mask``. ``cached``: the keys
    and values come from a KV cache (decoding), which the kernel does not serve.

    herd's kernel computes it where :func:`takes_first_key` holds, PyTorch's
    ``scaled_dot_product_attention`` everywhere else (the fused memory-efficient kernel when there is no
    explicit mask, Llama 1 §2.4). The result is (batch, heads, seq, head_dim).
    """
    if takes_first_key(q, cached=cached, masked=mask is not None):
        return causal_attention(q, k, v, first_key)
    # Without a mask: causal when keys and queries coincide; a single decode step sees every cached key.
    return F.scaled_dot_product_attention(
        q,
        k,
        v,
        attn_mask=mask,
        is_causal=mask is None and q.shape[2] > 1,
        enable_gqa=q.shape[1] != k.shape[1],
    )


def takes_first_key(x: torch.Tensor, *, cached: bool, masked: bool) -> bool:
    """Whether :func:`scaled_dot_product_attention` runs herd's kernel for activations like ``x``, and so
    takes packed documents as ``first_key`` (each query's document start) rather than in a dense mask:
    causal self-attention over whole sequences (no KV cache, no other mask), where :func:`applies`.

    The Transformer asks once, before its layers, so as to build the dense mask only when it is needed.
    """
    return not cached and not masked and applies(x)


def applies(x: torch.Tensor) -> bool:
    """Whether the kernel serves attention over activations like ``x``: float32 on a CPU, outside
    autocast (whose products would hand the attention another dtype), with the kernel built."""
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")
        and LIBRARY.available()
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
