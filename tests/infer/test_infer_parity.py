"""Greedy generation equals transformers' ``generate`` token for token (SmolLM2 and every tiny family)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from infer_helpers import SMOLLM2_PROMPTS, random_prompts, tiny_model
from transformers import LlamaForCausalLM

from herd.checkpoint.base import CheckpointInfo
from herd.checkpoint.hf import write_hf
from herd.checkpoint.load import model_tensors
from herd.infer import Engine, generate, generate_ids
from herd.model.config import ModelConfig
from herd.model.transformer import Transformer
from herd.tokenizer import Tokenizer


def hf_greedy(model: torch.nn.Module, prompt: list[int], n: int, eos: int | None) -> list[int]:
    """transformers' greedy continuation of ``prompt`` (ids), stopping at ``eos`` if given."""
    ids = torch.tensor([prompt])
    with torch.no_grad():
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            do_sample=False,
            max_new_tokens=n,
            eos_token_id=eos,
            pad_token_id=0,
        )
    return out[0, len(prompt) :].tolist()


@pytest.mark.slow
def test_smollm2_greedy_equals_transformers(
    smollm2: tuple[Transformer, Tokenizer], smollm2_hf: torch.nn.Module
) -> None:
    model, tokenizer = smollm2
    completions = generate(model, tokenizer, SMOLLM2_PROMPTS[:4], max_new_tokens=24)
    for prompt, completion in zip(SMOLLM2_PROMPTS[:4], completions, strict=True):
        ids = tokenizer.encode(prompt)
        reference = hf_greedy(smollm2_hf, ids, 24, tokenizer.eos_id)
        assert completion.token_ids == reference, prompt
        assert completion.finish_reason == ("stop" if reference[-1] == tokenizer.eos_id else "length")


def test_every_family_greedy_equals_transformers(family_config: ModelConfig, tmp_path: Path) -> None:
    model = tiny_model(family_config, std=0.1)
    write_hf(tmp_path / "hf", CheckpointInfo(model.config), model_tensors(model))
    reference_model = LlamaForCausalLM.from_pretrained(tmp_path / "hf", torch_dtype=torch.float32).eval()
    prompts = random_prompts(family_config.vocab_size, [7, 3])
    results = generate_ids(Engine(model), prompts, max_new_tokens=12)
    for prompt, result in zip(prompts, results, strict=True):
        assert result.token_ids == hf_greedy(reference_model, prompt, 12, None)
        assert result.finish_reason == "length"
