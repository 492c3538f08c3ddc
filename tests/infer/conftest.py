"""Fixtures of the inference tests: SmolLM2 in herd and transformers, tiny random models, a byte tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import herd
from herd.infer.byte_tokenizer import ByteTokenizer
from herd.model.transformer import Transformer
from herd.tokenizer import Tokenizer, load_tokenizer


@pytest.fixture(scope="session")
def smollm2(smollm2_gguf: Path) -> tuple[Transformer, Tokenizer]:
    """herd's SmolLM2-135M-Instruct (fp32, dequantized from the Q4_1 GGUF) and its tokenizer."""
    return herd.load_model(smollm2_gguf), load_tokenizer(smollm2_gguf)


@pytest.fixture(scope="session")
def smollm2_hf(smollm2_gguf: Path) -> torch.nn.Module:
    """transformers loading the same GGUF (its own reader and dequantization), fp32."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        smollm2_gguf.parent, gguf_file=smollm2_gguf.name, torch_dtype=torch.float32
    )
    return model.eval()


@pytest.fixture
def byte_tokenizer() -> ByteTokenizer:
    return ByteTokenizer()
