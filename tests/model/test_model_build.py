"""herd.model.build: random and empty models, the dtype vocabulary, and the names herd.checkpoint.load keeps."""

from __future__ import annotations

import importlib

import pytest
import torch

from herd.errors import ConfigError
from herd.model.build import build_model, empty_model, parse_dtype
from herd.model.presets import get_preset


@pytest.mark.parametrize(
    ("name", "dtype"),
    [
        ("fp32", torch.float32),
        ("bf16", torch.bfloat16),
        ("fp16", torch.float16),
        ("float32", torch.float32),
        ("bfloat16", torch.bfloat16),
        ("float16", torch.float16),
        (torch.bfloat16, torch.bfloat16),
        (None, None),
    ],
)
def test_dtype_names_and_their_synonyms(name: str | torch.dtype | None, dtype: torch.dtype | None) -> None:
    assert parse_dtype(name) is dtype


def test_an_unknown_dtype_is_a_config_error_listing_the_names() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_dtype("fp8")
    assert (
        str(caught.value)
        == "unknown dtype 'fp8'; use one of fp32, bf16, fp16 (or float32, bfloat16, float16)"
    )


def test_build_model_is_seeded_and_cast() -> None:
    config = get_preset("llama3-tiny")
    a, b = build_model(config, seed=7), build_model(config, seed=7)
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q), name
    assert not torch.equal(a.tok_embeddings.weight, build_model(config, seed=8).tok_embeddings.weight)
    assert {p.dtype for p in build_model(config, torch.bfloat16).parameters()} == {torch.bfloat16}


def test_empty_model_allocates_without_initialising() -> None:
    config = get_preset("llama3-tiny")
    meta = empty_model(config, "meta")
    assert all(p.is_meta for p in meta.parameters())
    cpu = empty_model(config, "cpu")
    assert all(p.device.type == "cpu" for p in cpu.parameters())
    assert sum(p.numel() for p in cpu.parameters()) == sum(p.numel() for p in meta.parameters())


@pytest.mark.parametrize(
    ("name", "new"),
    [
        ("build_model", "herd.model.build"),
        ("parse_dtype", "herd.model.build"),
        ("GGUF_MAGIC", "herd.io.gguf"),
    ],
)
def test_checkpoint_load_keeps_the_moved_names_as_deprecated_aliases(name: str, new: str) -> None:
    """``herd.checkpoint.load.build_model`` etc. still import, warning where they moved, and are the same objects."""
    old = importlib.import_module("herd.checkpoint.load")
    with pytest.warns(DeprecationWarning, match=f"herd.checkpoint.load.{name} moved to {new}.{name}"):
        value = getattr(old, name)
    assert value is getattr(importlib.import_module(new), name)
    with pytest.raises(AttributeError):
        old.nonexistent  # noqa: B018
