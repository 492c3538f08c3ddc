"""The Transformer against transformers' LlamaForCausalLM, the KV cache and document masking."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import LlamaForCausalLM

from herd.checkpoint.base import CheckpointInfo
from herd.checkpoint.hf import write_hf
from herd.checkpoint.load import load_model, model_tensors
from herd.model.build import build_model
from herd.model.config import ModelConfig
from herd.model.presets import get_preset
from herd.model.transformer import document_starts

TOL = 1e-4


def _tokens(config: ModelConfig, batch: int = 2, seq: int = 48, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, config.vocab_size, (batch, seq), generator=g)


@torch.no_grad()
def test_herd_to_transformers(family_config: ModelConfig, tmp_path: Path) -> None:
    """herd writes an HF dir; transformers loads it unchanged and computes the same logits."""
    model = build_model(family_config, seed=1)
    write_hf(tmp_path / "m", CheckpointInfo(family_config), model_tensors(model))
    hf = LlamaForCausalLM.from_pretrained(tmp_path / "m", torch_dtype=torch.float32).eval()
    tokens = _tokens(family_config)
    diff = (model(tokens) - hf(tokens).logits).abs().max().item()
    assert diff <= TOL


@torch.no_grad()
def test_transformers_to_herd(family_config: ModelConfig, tmp_path: Path) -> None:
    """A transformers ``save_pretrained`` directory loads in herd with the same logits."""
    from transformers import LlamaConfig

    from herd.checkpoint.hf import config_to_hf

    torch.manual_seed(2)
    hf = LlamaForCausalLM(LlamaConfig(**config_to_hf(family_config))).eval()
    # transformers initialises norms to 1; perturb them so the test sees the weights really load.
    for name, p in hf.named_parameters():
        if "norm" in name:
            p.add_(torch.rand_like(p) * 0.1)
    hf.save_pretrained(tmp_path / "hf")
    model = load_model(tmp_path / "hf")
    assert model.config.rope_scaling == family_config.rope_scaling
    tokens = _tokens(family_config, seed=3)
    assert (model(tokens) - hf(tokens).logits).abs().max().item() <= TOL


@torch.no_grad()
def test_long_context_rope_scaling_differs() -> None:
    """Llama 3.1 scaling changes the low frequencies: same weights, different logits past the original context."""
    scaled = build_model(get_preset("llama3.1-tiny"), seed=0)
    plain = build_model(get_preset("llama3.1-tiny").replace(rope_scaling=None), seed=0)
    tokens = _tokens(scaled.config, batch=1, seq=200)
    assert not torch.allclose(scaled(tokens), plain(tokens), atol=1e-3)


@torch.no_grad()
def test_kv_cache_matches_full_forward(family_config: ModelConfig) -> None:
    """Prefill then one token at a time through the static cache gives the full pass's logits."""
    model = build_model(family_config, seed=4)
    tokens = _tokens(family_config, batch=2, seq=24)
    full = model(tokens)
    cache = model.make_cache(batch=2, max_seq_len=32)
    steps = [model(tokens[:, :10], cache=cache)]
    steps += [model(tokens[:, p : p + 1], start_pos=p, cache=cache) for p in range(10, 16)]
    steps.append(model(tokens[:, 16:], start_pos=16, cache=cache))
    assert (torch.cat(steps, dim=1) - full).abs().max().item() <= TOL


def test_kv_cache_overflow_is_clear() -> None:
    from herd.errors import HerdError

    model = build_model(get_preset("llama2-tiny"))
    cache = model.make_cache(batch=1, max_seq_len=8)
    with pytest.raises(HerdError, match="KV cache overflow"):
        model(torch.zeros(1, 9, dtype=torch.long), cache=cache)


@torch.no_grad()
def test_document_mask_equals_separate_documents() -> None:
    """A packed sequence with document ids gives each document's own logits (Llama 3 §3.2)."""
    model = build_model(get_preset("llama3-tiny"), seed=5)
    lengths = [7, 12, 1, 20]
    docs = [_tokens(model.config, batch=1, seq=n, seed=10 + i) for i, n in enumerate(lengths)]
    packed = torch.cat(docs, dim=1)
    doc_ids = torch.cat([torch.full((1, n), i) for i, n in enumerate(lengths)], dim=1)
    packed_logits = model(packed, document_ids=doc_ids)
    separate = torch.cat([model(d) for d in docs], dim=1)
    assert (packed_logits - separate).abs().max().item() <= TOL
    # Without the mask the later documents see the earlier ones.
    assert (model(packed) - separate).abs().max().item() > 1e-3


def test_document_starts() -> None:
    """Each token's document begins where its run of equal ids does (a reused id starts a new one)."""
    ids = torch.tensor([[0, 0, 0, 1, 1, 2, 2, 2, 2], [5, 5, 6, 5, 5, 5, 7, 7, 7]])
    assert document_starts(ids).tolist() == [[0, 0, 0, 3, 3, 5, 5, 5, 5], [0, 0, 2, 3, 3, 3, 6, 6, 6]]


@torch.no_grad()
def test_left_padding_with_positions_and_key_mask() -> None:
    """A left-padded row with explicit positions and a key mask equals the unpadded sequence."""
    model = build_model(get_preset("llama2-tiny-gqa"), seed=6)
    seq = _tokens(model.config, batch=1, seq=10)
    pad = 5
    padded = torch.cat([torch.zeros(1, pad, dtype=torch.long), seq], dim=1)
    positions = torch.clamp(torch.arange(pad + 10) - pad, min=0)[None]
    key_mask = torch.arange(pad + 10)[None] >= pad
    out = model(padded, positions=positions, key_mask=key_mask)[:, pad:]
    assert (out - model(seq)).abs().max().item() <= TOL


def test_init_is_llama_style_and_seeded() -> None:
    config = get_preset("llama2-tiny")
    a, b = build_model(config, seed=7), build_model(config, seed=7)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb), name
    std = a.layers[0].attention.wq.weight.std().item()
    assert 0.015 < std < 0.025
    assert torch.all(a.norm.weight == 1)
    assert a.layers[0].attention.wo.weight.std().item() < std


def test_tied_embeddings_share_storage() -> None:
    model = build_model(get_preset("smollm2-135m").replace(n_layers=1))
    assert model.output.weight is model.tok_embeddings.weight
