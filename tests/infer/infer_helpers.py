"""Helpers shared by the inference tests (imported by name: the test directories have no packages)."""

from __future__ import annotations

import torch

from herd.model.build import build_model
from herd.model.config import ModelConfig
from herd.model.presets import get_preset
from herd.model.transformer import Transformer

# Prompts of different lengths and kinds (prose, story, code, Q&A) used across the SmolLM2 tests.
SMOLLM2_PROMPTS = [
    "The capital of France is",
    "Once upon a time, a small llama",
    "def fibonacci(n):\n",
    "Q: What is two plus three?\nA:",
    "The three primary colors are",
    "In 1969, the first humans",
]


def tiny_model(config: ModelConfig | str = "llama2-tiny", seed: int = 0, std: float = 0.02) -> Transformer:
    """A randomly initialised model of a config or preset name, in eval mode.

    A larger ``std`` gives peaked next-token distributions, so greedy choices
    are not decided by rounding noise.
    """
    if isinstance(config, str):
        config = get_preset(config)
    model = build_model(config, seed=seed)
    model.init_weights(std=std, seed=seed)
    return model.eval()


def random_prompts(vocab_size: int, lengths: list[int], seed: int = 0) -> list[list[int]]:
    """Token-id prompts of the given lengths."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab_size, (n,), generator=generator).tolist() for n in lengths]
