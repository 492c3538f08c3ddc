"""herd's CPU causal attention kernel against float64 ``scaled_dot_product_attention`` with a dense mask."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from herd.kernels import attention
from herd.model.presets import get_preset
from herd.model.transformer import Transformer, document_starts

pytestmark = pytest.mark.skipif(
    not attention.LIBRARY.available(), reason="needs an x86 CPU with AVX512F and g++"
)


def _inputs(
    batch: int, heads: int, kv_heads: int, seq: int, head_dim: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q in the transposed (batch, seq, heads, head_dim) layout the model produces; k, v contiguous."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, seq, heads, head_dim, generator=g).transpose(1, 2)
    k = torch.randn(batch, kv_heads, seq, head_dim, generator=g)
    v = torch.randn(batch, kv_heads, seq, head_dim, generator=g)
    return q, k, v


def _first_key(batch: int, seq: int, seed: int) -> torch.Tensor:
    """Packed documents of random lengths (1 to seq / 3 tokens), different in each row."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.cumsum(torch.rand(batch, seq, generator=g) < 3 / seq, dim=1)
    return document_starts(ids)


def _reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, first_key: torch.Tensor | None, grad: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    """Output and input gradients in float64 through SDPA with the equivalent boolean mask."""
    q, k, v = (t.detach().double().requires_grad_() for t in (q, k, v))
    seq = q.shape[2]
    idx = torch.arange(seq)
    mask = (idx[None, :] <= idx[:, None])[None]
    if first_key is not None:
        mask = mask & (idx[None, None, :] >= first_key[:, :, None])
    out = F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask[:, None], enable_gqa=q.shape[1] != k.shape[1]
    )
    out.backward(grad.double())
    return out, q.grad, k.grad, v.grad


def _kernel(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, first_key: torch.Tensor | None, grad: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    q, k, v = (t.detach().clone().requires_grad_() for t in (q, k, v))
    out = attention.causal_attention(q, k, v, first_key)
    out.backward(grad)
    return out, q.grad, k.grad, v.grad


@pytest.mark.parametrize(
    ("batch", "heads", "kv_heads", "seq", "head_dim"),
    [
        (2, 4, 2, 200, 32),  # grouped-query heads, a partial last block of queries
        (1, 3, 3, 64, 64),  # multi-head, exactly one block
        (3, 9, 3, 130, 64),  # SmolLM2's 3 queries per key/value head
        (2, 2, 1, 1, 16),  # one token
        (1, 2, 2, 300, 24),  # a head size that is no multiple of 16
    ],
)
@pytest.mark.parametrize("documents", [False, True])
def test_kernel_equals_masked_sdpa(
    batch: int, heads: int, kv_heads: int, seq: int, head_dim: int, documents: bool
) -> None:
    """Output and the three input gradients match float64 attention with the dense mask (fp32 rounding;
    errors relative to the largest value, or absolute below 1: one token's dq is exactly 0)."""
    q, k, v = _inputs(batch, heads, kv_heads, seq, head_dim)
    first_key = _first_key(batch, seq, seed=seq) if documents else None
    grad = torch.randn(batch, heads, seq, head_dim, generator=torch.Generator().manual_seed(1))
    for name, got, want in zip(
        ("out", "dq", "dk", "dv"),
        _kernel(q, k, v, first_key, grad),
        _reference(q, k, v, first_key, grad),
        strict=True,
    ):
        error = (got.double() - want).abs().max().item() / max(want.abs().max().item(), 1.0)
        assert error < 1e-5, (name, error)


def test_output_layout_merges_heads_without_a_copy() -> None:
    """The output is a transposed view of (batch, seq, heads, head_dim) memory."""
    out = attention.causal_attention(*_inputs(2, 4, 2, 70, 32))
    assert out.transpose(1, 2).is_contiguous()


def test_documents_cost_less_and_stay_apart() -> None:
    """A query attends only inside its document: changing an earlier document changes nothing after it."""
    q, k, v = _inputs(1, 2, 2, 160, 32)
    first_key = document_starts(torch.tensor([[0] * 100 + [1] * 60]))
    out = attention.causal_attention(q, k, v, first_key)
    k2, v2 = k.clone(), v.clone()
    k2[:, :, :100] += 1.0
    v2[:, :, :100] -= 1.0
    again = attention.causal_attention(q, k2, v2, first_key)
    assert torch.equal(out[:, :, 100:], again[:, :, 100:])
    assert not torch.allclose(out[:, :, :100], again[:, :, :100])


def test_bad_inputs_are_refused() -> None:
    q, k, v = _inputs(1, 4, 2, 8, 16)
    with pytest.raises(RuntimeError, match="first_key\\[0, 3\\] = 4 is not a non-decreasing key index"):
        attention.causal_attention(q, k, v, torch.tensor([[0, 0, 0, 4, 4, 4, 4, 4]]))
    with pytest.raises(RuntimeError, match="first_key\\[0, 2\\] = 0 is not a non-decreasing"):
        attention.causal_attention(q, k, v, torch.tensor([[0, 1, 0, 3, 3, 3, 3, 3]]))
    with pytest.raises(RuntimeError, match="first_key must be contiguous int64"):
        attention.causal_attention(q, k, v, torch.zeros(1, 8, dtype=torch.int32))
    with pytest.raises(RuntimeError, match="4 query heads are not a multiple of 3"):
        attention.causal_attention(q, torch.randn(1, 3, 8, 16), torch.randn(1, 3, 8, 16))
    with pytest.raises(RuntimeError, match="must be 4-D float32 CPU tensors"):
        attention.causal_attention(q.double(), k, v)
    with pytest.raises(RuntimeError, match="k and v must be"):
        attention.causal_attention(q, k[:, :, :4], v[:, :, :4])


def test_compiled_equals_eager() -> None:
    """Inside a ``torch.compile`` graph the registered operator and its backward give the eager results."""
    q, k, v = _inputs(2, 4, 2, 96, 32)
    first_key = _first_key(2, 96, seed=3)

    def loss(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return (attention.causal_attention(q * 1.5, k, v, first_key) ** 2).sum()

    grads = []
    for fn in (loss, torch.compile(loss, fullgraph=True)):
        inputs = [t.detach().clone().requires_grad_() for t in (q, k, v)]
        fn(*inputs).backward()
        grads.append([t.grad for t in inputs])
    for eager, compiled in zip(*grads, strict=True):
        assert torch.allclose(eager, compiled, atol=1e-5)


def test_entry_point_takes_the_kernel_only_where_it_serves(monkeypatch: pytest.MonkeyPatch) -> None:
    """``scaled_dot_product_attention`` calls the kernel for unmasked, uncached float32 attention (packed
    documents as ``first_key``), and PyTorch's with a mask, a KV cache or another dtype, which give the
    same attention from the dense mask, the plain causal one, or the float64 reference."""
    q, k, v = _inputs(2, 4, 2, 40, 16)
    first_key = _first_key(2, 40, seed=4)
    idx = torch.arange(40)
    causal = idx[None, :] <= idx[:, None]
    mask = (causal & (idx[None, None, :] >= first_key[:, :, None]))[:, None]
    calls: list[int] = []
    kernel = attention.causal_attention
    monkeypatch.setattr(attention, "causal_attention", lambda *a: calls.append(1) or kernel(*a))
    documents = attention.scaled_dot_product_attention(q, k, v, first_key=first_key)
    assert calls == [1]
    masked = attention.scaled_dot_product_attention(q, k, v, mask, first_key=first_key)
    cached = attention.scaled_dot_product_attention(q, k, v, first_key=first_key, cached=True)
    double = attention.scaled_dot_product_attention(q.double(), k.double(), v.double(), causal[None, None])
    assert calls == [1]
    assert torch.allclose(masked, documents, atol=1e-5)
    assert torch.allclose(cached, kernel(q, k, v), atol=1e-5)  # a cache's keys: plain causal attention
    assert torch.allclose(double.float(), cached, atol=1e-5)
    assert attention.takes_first_key(q, cached=False, masked=False)
    assert not attention.takes_first_key(q, cached=True, masked=False)
    assert not attention.takes_first_key(q, cached=False, masked=True)


@pytest.mark.parametrize("documents", [False, True])
def test_model_takes_the_kernel_and_matches_sdpa(monkeypatch: pytest.MonkeyPatch, documents: bool) -> None:
    """A training forward/backward of the model gives SDPA's loss and gradients, and calls the kernel."""
    model = Transformer(get_preset("llama3-tiny"))
    model.init_weights(seed=0)
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, model.config.vocab_size, (2, 97), generator=g)
    doc_ids = torch.cumsum(torch.rand(2, 96, generator=g) < 0.05, dim=1) if documents else None
    calls = []
    kernel = attention.causal_attention
    monkeypatch.setattr(attention, "causal_attention", lambda *a: calls.append(1) or kernel(*a))

    def loss_and_grads(use_kernel: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        monkeypatch.setattr(attention.LIBRARY, "loaded", use_kernel)
        model.zero_grad()
        loss = model(tokens[:, :-1], document_ids=doc_ids, targets=tokens[:, 1:])
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    loss, grads = loss_and_grads(True)
    assert len(calls) == model.config.n_layers
    ref_loss, ref_grads = loss_and_grads(False)
    assert len(calls) == model.config.n_layers  # the SDPA path does not call the kernel
    assert torch.allclose(loss, ref_loss, rtol=1e-5)
    # fp32 sums in another order: errors relative to each gradient's largest value
    for got, want in zip(grads, ref_grads, strict=True):
        assert (got - want).abs().max() <= 1e-5 * want.abs().max()


@torch.no_grad()
def test_autocast_keeps_the_document_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under CPU autocast the projections are bf16, so the kernel does not apply and the model builds
    the dense document mask: the logits equal those of a run with the kernel switched off."""
    model = Transformer(get_preset("llama3-tiny"))
    model.init_weights(seed=0)
    tokens = torch.randint(0, model.config.vocab_size, (1, 40), generator=torch.Generator().manual_seed(0))
    doc_ids = torch.tensor([[0] * 15 + [1] * 25])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not attention.applies(torch.zeros(1))
        logits = model(tokens, document_ids=doc_ids)
        monkeypatch.setattr(attention.LIBRARY, "loaded", False)
        assert torch.equal(model(tokens, document_ids=doc_ids), logits)
