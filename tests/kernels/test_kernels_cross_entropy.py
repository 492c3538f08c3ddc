"""herd's CPU output projection + cross-entropy kernel against float64 PyTorch, alone and inside the fused loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from herd.kernels import cross_entropy
from herd.model.cross_entropy import IGNORE_INDEX, linear_cross_entropy

pytestmark = pytest.mark.skipif(
    not cross_entropy.LIBRARY.available(), reason="needs an x86 CPU with AVX512F, MKL and g++"
)


def _inputs(rows: int, dim: int, vocab: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(rows, dim, generator=g)
    weight = torch.randn(vocab, dim, generator=g) * (3 / dim**0.5)
    targets = torch.randint(0, vocab, (rows,), generator=g)
    targets[::3] = IGNORE_INDEX
    return hidden, weight, targets


def _reference(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, ...]:
    h, w = hidden.double().requires_grad_(), weight.double().requires_grad_()
    loss = F.cross_entropy(h @ w.T, targets, ignore_index=IGNORE_INDEX, reduction="sum")
    loss.backward()
    return loss.detach(), h.grad, w.grad


@pytest.mark.parametrize(
    ("rows", "dim", "vocab", "chunk_rows"),
    [(50, 16, 37, 7), (64, 32, 1000, 64), (40, 64, 32000, 16), (3, 8, 1, 2), (100, 24, 515, 1000)],
)
def test_loss_and_gradients_equal_float64(rows: int, dim: int, vocab: int, chunk_rows: int) -> None:
    """The summed loss and both gradients match float64 ``F.cross_entropy`` of the full logits, for
    partial last chunks, one chunk larger than the input, and vocabularies that are no multiple of 16."""
    hidden, weight, targets = _inputs(rows, dim, vocab)
    loss, grad_hidden, grad_weight = cross_entropy.linear_cross_entropy(
        hidden, weight, targets, IGNORE_INDEX, chunk_rows, True
    )
    assert loss.dtype == torch.float32 and loss.shape == ()
    for got, want in zip((loss, grad_hidden, grad_weight), _reference(hidden, weight, targets), strict=True):
        assert (got.double() - want).abs().max() <= 1e-5 * max(1.0, want.abs().max().item())
    assert torch.all(grad_hidden[targets == IGNORE_INDEX] == 0)
    no_grad = cross_entropy.linear_cross_entropy(hidden, weight, targets, IGNORE_INDEX, chunk_rows, False)
    assert no_grad[0].item() == loss.item() and no_grad[1:] == (None, None)


def test_extreme_logits_stay_finite() -> None:
    """Logits ±1e4 apart give a finite loss and gradients of exact zeros and ones."""
    hidden = torch.tensor([[1.0], [-1.0]])
    weight = torch.tensor([[1e4], [-1e4], [0.0]])
    loss, grad_hidden, grad_weight = cross_entropy.linear_cross_entropy(
        hidden, weight, torch.tensor([1, 1]), IGNORE_INDEX, 8, True
    )
    assert loss.item() == pytest.approx(2e4)
    # row 0: softmax (1, 0, 0) - onehot(1) = (1, -1, 0); row 1: (0, 1, 0) - (0, 1, 0) = 0
    assert grad_hidden.tolist() == [[2e4], [0.0]]
    assert grad_weight.tolist() == [[1.0], [-1.0], [0.0]]


def test_no_rows() -> None:
    loss, grad_hidden, grad_weight = cross_entropy.linear_cross_entropy(
        torch.zeros(0, 8), torch.randn(5, 8), torch.zeros(0, dtype=torch.long), IGNORE_INDEX, 4, True
    )
    assert loss.item() == 0.0 and grad_hidden.shape == (0, 8) and torch.equal(grad_weight, torch.zeros(5, 8))


def test_bad_inputs_are_refused() -> None:
    hidden, weight, targets = _inputs(4, 8, 10)
    with pytest.raises(RuntimeError, match="target 10 of row 1 is outside the vocabulary of 10"):
        cross_entropy.linear_cross_entropy(hidden, weight, torch.tensor([0, 10, 1, 2]), IGNORE_INDEX, 4, True)
    with pytest.raises(RuntimeError, match="targets must be contiguous int64"):
        cross_entropy.linear_cross_entropy(hidden, weight, targets.int(), IGNORE_INDEX, 4, True)
    with pytest.raises(RuntimeError, match="must be contiguous float32 CPU matrices"):
        cross_entropy.linear_cross_entropy(hidden.double(), weight, targets, IGNORE_INDEX, 4, True)
    with pytest.raises(RuntimeError, match="does not take hidden size 8"):
        cross_entropy.linear_cross_entropy(hidden, weight[:, :6], targets, IGNORE_INDEX, 4, True)


@pytest.mark.parametrize("chunk_rows", [5, 64])
def test_fused_loss_is_the_same_with_and_without_the_kernel(
    monkeypatch: pytest.MonkeyPatch, chunk_rows: int
) -> None:
    """``linear_cross_entropy`` in fp32 gives the same loss and gradients through the kernel as through
    PyTorch's ops (both against float64), with a non-unit incoming gradient."""
    hidden, weight, targets = _inputs(50, 32, 1003, seed=1)

    def run(use_kernel: bool, dtype: torch.dtype) -> list[torch.Tensor]:
        monkeypatch.setattr(cross_entropy.LIBRARY, "loaded", use_kernel)
        h, w = (x.to(dtype, copy=True).requires_grad_() for x in (hidden, weight))
        loss = linear_cross_entropy(h, w, targets, chunk_rows=chunk_rows)
        (loss * 0.37).backward()
        return [loss.detach().double(), h.grad.double(), w.grad.double()]

    want = run(False, torch.float64)
    for use_kernel in (True, False):
        for got, ref in zip(run(use_kernel, torch.float32), want, strict=True):
            assert (got - ref).abs().max() <= 2e-6 * ref.abs().max(), use_kernel
