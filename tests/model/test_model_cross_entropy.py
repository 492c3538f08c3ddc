"""The chunked output projection + cross-entropy against PyTorch's plain logits → ``F.cross_entropy``."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from herd.model.build import build_model
from herd.model.cross_entropy import IGNORE_INDEX, linear_cross_entropy
from herd.model.presets import get_preset


def _inputs(rows: int = 50, dim: int = 16, vocab: int = 37, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(rows, dim, generator=g, dtype=torch.float64)
    weight = torch.randn(vocab, dim, generator=g, dtype=torch.float64)
    targets = torch.randint(0, vocab, (rows,), generator=g)
    targets[::4] = IGNORE_INDEX
    return hidden, weight, targets


LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _loss_and_grads(
    fn: LossFn, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    h = hidden.clone().requires_grad_()
    w = weight.clone().requires_grad_()
    loss = fn(h, w, targets)
    (loss * 0.37).backward()  # a non-unit incoming gradient, as the trainer's 1/tokens scale
    return loss.detach(), h.grad, w.grad


def _reference(h: torch.Tensor, w: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(h @ w.T, t, reduction="sum", ignore_index=IGNORE_INDEX)


@pytest.mark.parametrize("chunk_rows", [1, 7, 50, 64])
def test_matches_plain_cross_entropy(chunk_rows: int) -> None:
    """Loss and both gradients equal the unfused computation (fp64: to rounding), for any chunking."""
    hidden, weight, targets = _inputs()
    want = _loss_and_grads(_reference, hidden, weight, targets)
    got = _loss_and_grads(
        lambda h, w, t: linear_cross_entropy(h, w, t, chunk_rows=chunk_rows), hidden, weight, targets
    )
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a.double(), b, rtol=1e-6, atol=1e-6)


def test_ignored_targets_add_nothing() -> None:
    """Rows whose target is IGNORE_INDEX have zero gradient and leave the loss unchanged."""
    hidden, weight, targets = _inputs()
    _, grad_hidden, _ = _loss_and_grads(linear_cross_entropy, hidden, weight, targets)
    ignored = targets == IGNORE_INDEX
    assert torch.all(grad_hidden[ignored] == 0) and torch.all(grad_hidden[~ignored].abs().sum(-1) > 0)
    kept = linear_cross_entropy(hidden[~ignored], weight, targets[~ignored])
    torch.testing.assert_close(linear_cross_entropy(hidden, weight, targets), kept)


def test_no_grad_gives_the_same_loss() -> None:
    """Validation (no autograd) takes the loss-only path and agrees with the training path."""
    hidden, weight, targets = _inputs()
    with torch.no_grad():
        loss = linear_cross_entropy(hidden, weight, targets, chunk_rows=8)
    torch.testing.assert_close(loss, _reference(hidden, weight, targets).float(), rtol=1e-6, atol=1e-6)


def test_autocast_bf16_close_to_autocast_reference() -> None:
    """Under CPU bf16 autocast the matmuls run in bf16 and the softmax in fp32, as plain autocast does."""
    hidden, weight, targets = (x.float() if x.is_floating_point() else x for x in _inputs(rows=64, dim=32))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = _loss_and_grads(linear_cross_entropy, hidden, weight, targets)
        want = _loss_and_grads(
            lambda h, w, t: F.cross_entropy((h @ w.T).float(), t, reduction="sum"), hidden, weight, targets
        )
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a.float(), b.float(), rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied-embeddings"])
def test_model_targets_match_logits_loss(tied: bool) -> None:
    """``model(tokens, targets=)`` equals cross-entropy of ``model(tokens)``, gradients of every parameter too."""
    config = get_preset("llama3-tiny").replace(tie_embeddings=tied)
    model = build_model(config, seed=3)
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, config.vocab_size, (2, 24), generator=g)
    targets = torch.randint(0, config.vocab_size, (2, 24), generator=g)
    targets[:, :3] = IGNORE_INDEX
    fused = model(tokens, targets=targets)
    fused.backward()
    fused_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    plain = F.cross_entropy(model(tokens).flatten(0, 1), targets.flatten(), reduction="sum")
    plain.backward()
    torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-4)
    for name, p in model.named_parameters():
        torch.testing.assert_close(fused_grads[name], p.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_no_rows_give_zero_loss_and_gradients() -> None:
    hidden, weight, targets = _inputs()
    loss, grad_hidden, grad_weight = _loss_and_grads(linear_cross_entropy, hidden[:0], weight, targets[:0])
    assert loss == 0 and grad_hidden.shape == (0, 16) and torch.all(grad_weight == 0)


def test_mismatched_targets_are_refused() -> None:
    hidden, weight, targets = _inputs()
    with pytest.raises(ValueError, match="50 hidden rows but 49 targets"):
        linear_cross_entropy(hidden, weight, targets[:-1])


def test_second_backward_through_the_same_call_is_refused() -> None:
    """The gradients are scaled in place in their own buffers, so a retained second backward must not reuse them."""
    hidden, weight, targets = _inputs()
    loss = linear_cross_entropy(hidden.requires_grad_(), weight, targets)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_ignored_positions_never_enter_the_projection(dtype: torch.dtype) -> None:
    """Fine-tuning rows are mostly prompt: their hidden states are left out, so even NaN there changes nothing."""
    hidden, weight, targets = (t.to(dtype) if t.is_floating_point() else t for t in _inputs())
    poisoned = hidden.clone()
    poisoned[targets == IGNORE_INDEX] = float("nan")
    loss, grad_h, grad_w = _loss_and_grads(linear_cross_entropy, poisoned, weight, targets)
    want_loss, want_h, want_w = _loss_and_grads(_reference, hidden, weight, targets)
    tol = 1e-4  # the kernel accumulates in fp32 whatever the input dtype
    torch.testing.assert_close(loss.double(), want_loss.double(), rtol=1e-6, atol=0)  # an fp32 sum
    torch.testing.assert_close(grad_w, want_w, rtol=tol, atol=tol)
    assert torch.equal(grad_h[targets == IGNORE_INDEX], torch.zeros_like(grad_h[targets == IGNORE_INDEX]))
    torch.testing.assert_close(
        grad_h[targets != IGNORE_INDEX], want_h[targets != IGNORE_INDEX], rtol=tol, atol=tol
    )
