"""AdamW with decoupled weight decay on the weight matrices only (Llama 1 §2.2).

The papers give weight decay 0.1 but not which tensors it applies to. herd
decays every parameter with two or more dimensions (the linear layers, the
token embedding and the output projection) and not the RMSNorm gains, whose
pull towards 0 would shrink the residual stream rather than regularise; this
is the GPT-2/nanoGPT convention most Llama reproductions follow.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributed.tensor import DTensor

from herd.train.config import OptimConfig


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: matrices (decayed) and vectors (not), each in a stable order."""
    decay, no_decay = [], []
    for _, param in model.named_parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


_FUSED_DEVICES = ("cpu", "cuda")


def build_optimizer(model: nn.Module, config: OptimConfig) -> torch.optim.AdamW:
    """AdamW with the configured β, eps and decay; the LR is set each step by the schedule.

    PyTorch's fused kernel (one pass over parameter, gradient and both moments;
    4.5x faster than the multi-tensor path on a 2-core CPU for a 58M-parameter
    model) is used on the devices that have it, as transformers' Trainer does; not
    where tensor parallelism made only some parameters DTensors (the kernel takes
    one kind per call).
    """
    params = list(model.parameters())
    one_kind = len({isinstance(p, DTensor) for p in params}) == 1
    fused = one_kind and all(p.device.type in _FUSED_DEVICES for p in params)
    return torch.optim.AdamW(
        param_groups(model, config.weight_decay),
        lr=config.lr,
        betas=(config.beta1, config.beta2),
        eps=config.eps,
        fused=fused or None,
    )


def clip_grad_norm(model: nn.Module, max_norm: float, mixed_dtensor: bool) -> float:
    """Clip the global L2 norm of the gradients to ``max_norm`` (Llama 1 §2.2: 1.0); returns the norm.

    ``torch.nn.utils.get_total_norm`` handles plain and FSDP-sharded gradients
    with fused kernels but refuses a model where tensor parallelism made only
    some gradients DTensors; then each gradient's norm is reduced over its own
    mesh before the global sum. The norm is read on the host anyway (it is
    logged), so gradients within the limit are left alone rather than multiplied
    by 1 (``clip_grad_norm_`` would: a pass over every gradient, 1% of a CPU step).
    """
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    norm = None
    if mixed_dtensor:
        squares = []
        for grad in grads:
            part = torch.linalg.vector_norm(grad, dtype=torch.float32)
            squares.append((part.full_tensor() if isinstance(part, DTensor) else part).square())
        total = float(torch.stack(squares).sum().sqrt())
    else:
        norm = nn.utils.get_total_norm(grads)
        total = float(norm.full_tensor() if isinstance(norm, DTensor) else norm)
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        if norm is not None:  # fused over the whole list, plain or FSDP-sharded
            nn.utils.clip_grads_with_norm_(model.parameters(), max_norm, norm)
        else:
            for grad in grads:
                grad.mul_(coef)
    return total
