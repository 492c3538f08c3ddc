"""Output projection fused with next-token cross-entropy, computed in chunks of rows.

The usual loss materialises the logits of every position (batch × seq ×
vocab, 262 MB in fp32 for 2,048 tokens of a 32,000 vocabulary; 4 GB at
Llama 3's 128,256 and 8k tokens), then log-softmax, its gradient and the
gradient of the logits are each another pass over a tensor of that size.
Here the rows are processed in chunks small enough to stay in cache: for each
chunk the logits are computed, turned into log-probabilities (the loss is the
target's), in place into the gradient ``softmax - one_hot``, and multiplied straight into the
gradients of the hidden states and of the output weight. The backward pass then
only scales those by the incoming gradient. The matmul FLOPs are the same as
the plain loss; the elementwise passes and the peak memory are not
(the idea of Liger-Kernel's fused linear cross-entropy, written for PyTorch ops).
In float32 on a CPU the whole loop runs in herd's kernel
(:mod:`herd.kernels.cross_entropy`, which chooses): the weight packed once for
the logits products, each row's softmax and gradient computed in cache.
"""

from __future__ import annotations

import torch

from herd.kernels.cross_entropy import fused_linear_cross_entropy

IGNORE_INDEX = -100

# Logit elements per chunk: 32 MiB of fp32 on a CPU (measured fastest there from 8 to 128 MiB for a
# 32,000 vocabulary); accelerators want big matmuls.
_CHUNK_ELEMENTS = {"cpu": 1 << 23}
_DEFAULT_CHUNK_ELEMENTS = 1 << 27


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    ignore_index: int = IGNORE_INDEX,
    chunk_rows: int | None = None,
) -> torch.Tensor:
    """Summed cross-entropy (fp32 scalar) of ``hidden @ weight.T`` against ``targets``.

    ``hidden`` (..., dim) and ``targets`` (...) are flattened; positions whose
    target is ``ignore_index`` add nothing to the loss or the gradients: they
    are left out before the projection, since fine-tuning trains on answers
    only, often a small share of a packed row, and the vocabulary projection
    is the costliest matmul of a small model. Equal
    to ``F.cross_entropy(hidden @ weight.T, targets, reduction="sum")`` up to
    fp32 rounding, with gradients for both inputs. Under autocast the matmuls
    run in the autocast dtype and the softmax in fp32, as autocast would.
    """
    device = hidden.device.type
    if torch.is_autocast_enabled(device):
        compute_dtype = torch.get_autocast_dtype(device)
    else:
        compute_dtype = torch.promote_types(hidden.dtype, weight.dtype)
    if chunk_rows is None:
        elements = _CHUNK_ELEMENTS.get(device, _DEFAULT_CHUNK_ELEMENTS)
        chunk_rows = max(1, elements // weight.shape[0])
    flat_hidden = hidden.reshape(-1, hidden.shape[-1])
    flat_targets = targets.reshape(-1)
    if flat_targets.shape[0] != flat_hidden.shape[0]:
        raise ValueError(f"{flat_hidden.shape[0]} hidden rows but {flat_targets.shape[0]} targets")
    trained = (flat_targets != ignore_index).nonzero().squeeze(1)
    if trained.numel() < flat_targets.numel():  # fine-tuning: only the answers' positions are projected
        flat_hidden, flat_targets = flat_hidden[trained], flat_targets[trained]
    needs_grad = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    return _LinearCrossEntropy.apply(
        flat_hidden, weight, flat_targets, ignore_index, chunk_rows, compute_dtype, needs_grad
    )


class _LinearCrossEntropy(torch.autograd.Function):
    """Loss and both gradients in one chunked pass (see the module docstring)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        targets: torch.Tensor,
        ignore_index: int,
        chunk_rows: int,
        compute_dtype: torch.dtype,
        needs_grad: bool,
    ) -> torch.Tensor:
        with torch.autocast(hidden.device.type, enabled=False):
            total, grad_hidden, grad_weight = fused_linear_cross_entropy(
                hidden,
                weight.to(compute_dtype),
                targets,
                ignore_index,
                chunk_rows,
                needs_grad,
                fallback=_chunked,
            )
        if needs_grad:
            ctx.save_for_backward(grad_hidden.to(hidden.dtype), grad_weight.to(weight.dtype))
        return total

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad_output: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        grad_hidden, grad_weight = ctx.saved_tensors
        # Scaled in place: these are this call's own buffers. A second backward through the same graph
        # (retain_graph) is refused by autograd's version check on saved tensors, not scaled twice.
        return grad_hidden.mul_(grad_output), grad_weight.mul_(grad_output), None, None, None, None, None


def _chunked(
    hidden: torch.Tensor,
    w: torch.Tensor,
    targets: torch.Tensor,
    ignore_index: int,
    chunk_rows: int,
    needs_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """The chunk loop in PyTorch ops, the products in ``w``'s dtype: summed loss, and with ``needs_grad``
    the gradients of ``hidden`` and (fp32) of the weight."""
    compute_dtype = w.dtype
    grad_hidden = torch.empty_like(hidden) if needs_grad else None
    grad_weight = None
    total = torch.zeros((), dtype=torch.float32, device=hidden.device)
    # One check per call (a device sync on GPUs) spares a pass over every chunk when nothing is ignored.
    masked = bool((targets == ignore_index).any())
    for start in range(0, hidden.shape[0], chunk_rows):
        h = hidden[start : start + chunk_rows].to(compute_dtype)
        loss, grad = _softmax_cross_entropy(
            h @ w.T, targets[start : start + chunk_rows], ignore_index, masked, needs_grad
        )
        total += loss
        if grad_hidden is None:
            continue
        grad = grad.to(compute_dtype)
        grad_hidden[start : start + chunk_rows] = grad @ w
        if grad_weight is None:
            grad_weight = (grad.T @ h).float()
        elif grad.dtype == torch.float32:
            grad_weight.addmm_(grad.T, h)
        else:  # low-precision products, summed over the chunks in fp32
            grad_weight.add_(grad.T @ h)
    if needs_grad and grad_weight is None:  # no rows at all
        grad_weight = torch.zeros_like(w, dtype=torch.float32)
    return total, grad_hidden, grad_weight


def _softmax_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, ignore_index: int, masked: bool, needs_grad: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """With PyTorch ops: the chunk's summed loss and its fp32 gradient ``softmax - onehot`` (zero rows
    where ignored; the log-probabilities, unused, without ``needs_grad``)."""
    valid = targets != ignore_index
    safe = torch.where(valid, targets, 0).unsqueeze(1)
    # One row of logits is in cache while log_softmax reads it: cheaper than logsumexp + sub.
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    loss = -torch.where(valid, log_probs.gather(1, safe).squeeze(1), 0.0).sum()
    if not needs_grad:
        return loss, log_probs
    grad = log_probs.exp_()  # softmax, in place
    grad.scatter_add_(1, safe, torch.full_like(safe, -1, dtype=grad.dtype))
    if masked:
        grad.mul_(valid.unsqueeze(1))
    return loss, grad
