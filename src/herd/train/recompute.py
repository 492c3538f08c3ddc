"""Activation checkpointing: trade recomputation for memory (Llama 1 §2.4).

``full`` keeps only each Transformer block's input and recomputes the block in
the backward pass. ``selective`` follows Llama 1 §2.4 ("we save the
activations that are expensive to compute, such as the outputs of linear
layers"): inside each block the matmul and attention outputs are kept and the
cheap element-wise ops (norms, RoPE, SiLU, products) are recomputed. The block's
``forward`` is wrapped in place, so parameter names (and checkpoints) do not change.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.checkpoint import CheckpointPolicy, checkpoint, create_selective_checkpoint_contexts

from herd.model.transformer import Transformer

# By name: herd's CPU attention operator exists only once its library is loaded.
_SAVE = {
    "aten::mm",
    "aten::addmm",
    "aten::bmm",
    "aten::_scaled_dot_product_efficient_attention",
    "aten::_scaled_dot_product_flash_attention",
    "aten::_scaled_dot_product_flash_attention_for_cpu",
    "herd::causal_attention",
}


def _policy(ctx: Any, op: Any, *args: Any, **kwargs: Any) -> CheckpointPolicy:
    return CheckpointPolicy.MUST_SAVE if op.name() in _SAVE else CheckpointPolicy.PREFER_RECOMPUTE


def _checkpointed(forward: Callable[..., torch.Tensor], selective: bool, *args: Any) -> torch.Tensor:
    context_fn = functools.partial(create_selective_checkpoint_contexts, _policy) if selective else None
    if context_fn is None:
        return checkpoint(forward, *args, use_reentrant=False)
    return checkpoint(forward, *args, use_reentrant=False, context_fn=context_fn)


def apply_activation_checkpointing(model: Transformer, mode: str) -> None:
    """Wrap every block's forward for ``mode`` (``none``, ``selective`` or ``full``)."""
    if mode == "none":
        return
    for block in model.layers:
        block.forward = functools.partial(_checkpointed, block.forward, mode == "selective")
