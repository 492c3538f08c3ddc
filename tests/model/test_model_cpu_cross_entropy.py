"""herd's in-place softmax cross-entropy kernel against float64 PyTorch, alone and inside the fused loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from herd.model import cpu_cross_entropy
from herd.model.cross_entropy import IGNORE_INDEX, linear_cross_entropy

pytestmark = pytest.mark.skipif(
    not cpu_cross_entropy.available(), reason="needs an x86 CPU with AVX512F and g++"
)


def _logits(rows: int, vocab: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(rows, vocab, generator=g) * 4
    targets = torch.randint(0, vocab, (rows,), generator=g)
    targets[::3] = IGNORE_INDEX
    return logits, targets


@pytest.mark.parametrize(("rows", "vocab"), [(7, 37), (33, 1000), (4, 32000), (1, 1)])
def test_loss_and_gradient_equal_float64(rows: int, vocab: int) -> None:
    """The summed loss and the rows replaced by softmax - onehot (zero where ignored) match fp64 PyTorch."""
    logits, targets = _logits(rows, vocab)
    ref = logits.double().requires_grad_()
    want = F.cross_entropy(ref, targets, ignore_index=IGNORE_INDEX, reduction="sum")
    want.backward()
    got_grad = logits.clone()
    loss = cpu_cross_entropy.softmax_cross_entropy_(got_grad, targets, IGNORE_INDEX, True)
    assert loss.dtype == torch.float32 and loss.shape == ()
    assert abs(loss.item() - want.item()) <= 1e-5 * max(1.0, abs(want.item()))
    assert (got_grad.double() - ref.grad).abs().max().item() < 1e-5  # PyTorch in fp32: 2.4e-6 at 32,000
    untouched = logits.clone()
    assert cpu_cross_entropy.softmax_cross_entropy_(untouched, targets, IGNORE_INDEX, False).item() == loss.item()
    assert torch.equal(untouched, logits)  # without write_grad the logits stay as they were


def test_extreme_logits_stay_finite() -> None:
    """Logits far apart (±1e4) give a finite loss and a gradient of exact zeros and ones."""
    logits = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0]])
    targets = torch.tensor([1, 1])
    loss = cpu_cross_entropy.softmax_cross_entropy_(logits, targets, IGNORE_INDEX, True)
    assert loss.item() == pytest.approx(2e4)
    assert logits.tolist() == [[1.0, -1.0, 0.0], [0.0, 0.0, 0.0]]


def test_bad_targets_are_refused() -> None:
    logits, targets = _logits(4, 10)
    with pytest.raises(RuntimeError, match="target 10 of row 1 is outside the vocabulary of 10"):
        cpu_cross_entropy.softmax_cross_entropy_(logits, torch.tensor([0, 10, 1, 2]), IGNORE_INDEX, True)
    with pytest.raises(RuntimeError, match="targets must be contiguous int64"):
        cpu_cross_entropy.softmax_cross_entropy_(logits, targets.int(), IGNORE_INDEX, True)
    with pytest.raises(RuntimeError, match="logits must be a float32 CPU matrix"):
        cpu_cross_entropy.softmax_cross_entropy_(logits.double(), targets, IGNORE_INDEX, True)


@pytest.mark.parametrize("chunk_rows", [5, 64])
def test_fused_loss_is_the_same_with_and_without_the_kernel(
    monkeypatch: pytest.MonkeyPatch, chunk_rows: int
) -> None:
    """``linear_cross_entropy`` in fp32 gives the same loss and gradients through the kernel as through
    PyTorch's ops (both against float64)."""
    g = torch.Generator().manual_seed(1)
    hidden, weight = torch.randn(50, 32, generator=g), torch.randn(1003, 32, generator=g) * 0.3
    targets = torch.randint(0, 1003, (50,), generator=g)
    targets[::7] = IGNORE_INDEX

    def run(use_kernel: bool, dtype: torch.dtype) -> list[torch.Tensor]:
        monkeypatch.setattr(cpu_cross_entropy, "_built", [use_kernel])
        h, w = (x.to(dtype, copy=True).requires_grad_() for x in (hidden, weight))
        loss = linear_cross_entropy(h, w, targets, chunk_rows=chunk_rows)
        (loss * 0.37).backward()
        return [loss.detach().double(), h.grad.double(), w.grad.double()]

    want = run(False, torch.float64)
    for use_kernel in (True, False):
        for got, ref in zip(run(use_kernel, torch.float32), want, strict=True):
            assert (got - ref).abs().max() <= 2e-6 * ref.abs().max(), use_kernel
