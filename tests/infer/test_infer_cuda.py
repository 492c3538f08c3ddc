"""Generation on a GPU: parity with transformers, CUDA-graph decoding, batching, bf16 and quantized weights.

Skipped without CUDA (CI has no GPU); run on a GPU machine with
``python -m pytest tests/infer/test_infer_cuda.py``.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from infer_helpers import random_prompts, tiny_model
from transformers import LlamaForCausalLM

from herd.checkpoint.base import CheckpointInfo
from herd.checkpoint.hf import write_hf
from herd.checkpoint.load import model_tensors
from herd.infer import Engine, generate_ids, quantize_model
from herd.kernels import quantized_linear
from herd.model.config import ModelConfig

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CUDA = torch.device("cuda")


def _ids(engine: Engine, prompts: list[list[int]], n: int = 12) -> list[list[int]]:
    return [r.token_ids for r in generate_ids(engine, prompts, max_new_tokens=n)]


def test_cuda_greedy_equals_transformers_every_family(family_config: ModelConfig, tmp_path: Path) -> None:
    model = tiny_model(family_config, std=0.1)
    write_hf(tmp_path / "hf", CheckpointInfo(model.config), model_tensors(model))
    reference = LlamaForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32).to(CUDA).eval()
    engine = Engine(model.to(CUDA))
    for prompt in random_prompts(family_config.vocab_size, [7, 3]):
        ids = torch.tensor([prompt], device=CUDA)
        with torch.no_grad():
            out = reference.generate(
                ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=12, pad_token_id=0
            )
        assert _ids(engine, [prompt]) == [out[0, len(prompt) :].tolist()]


def test_cuda_batched_equals_one_by_one() -> None:
    engine = Engine(tiny_model("llama3-tiny", std=0.1).to(CUDA))
    prompts = random_prompts(4096, [9, 2, 5, 1], seed=1)
    assert _ids(engine, prompts) == [_ids(engine, [p])[0] for p in prompts]


def test_cuda_graph_decode_equals_eager() -> None:
    """compile=True on a GPU: static cache, one CUDA graph per batch size, replayed every step."""
    model = tiny_model("llama2-tiny-gqa", std=0.1).to(CUDA)
    prompts = random_prompts(512, [6, 3, 8], seed=4)
    eager = Engine(model)
    graphed = Engine(model, compile=True)
    assert graphed.static_cache
    assert _ids(graphed, prompts) == _ids(eager, prompts)
    assert _ids(graphed, prompts[:1], 20) == _ids(eager, prompts[:1], 20)
    # the same prompt again reuses the cached prefix; a larger batch reallocates the cache (a new graph)
    assert _ids(graphed, prompts[:1], 20) == _ids(eager, prompts[:1], 20)
    more = random_prompts(512, [200, 5, 17, 64, 9], seed=5)
    assert _ids(graphed, more, 8) == _ids(eager, more, 8)


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_cuda_quantized_products_match_their_cpu_values(mode: str) -> None:
    """The fused (compiled) and dequantized products on the GPU equal the CPU's float product of the
    same dequantized weight, within fp32 (the CPU's own kernels round activations; not compared)."""
    module = quantize_model(torch.nn.Sequential(torch.nn.Linear(256, 384, bias=False)), mode)
    layer = module[0]
    weight = (
        layer.dequantized(torch.float32)
        if mode == "int4"
        else layer.codes(torch.float32) * layer.scales[:384, None]
    )
    gpu = copy.deepcopy(module).to(CUDA)
    fused = torch.compile(gpu, dynamic=False, fullgraph=True)
    for rows in (1, 4, 32):
        x = torch.randn(rows, 256)
        with torch.no_grad():
            expected = x @ weight.T
            assert torch.allclose(gpu(x.to(CUDA)).cpu(), expected, atol=1e-4, rtol=1e-4)
            assert torch.allclose(fused(x.to(CUDA)).cpu(), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("variant", ["bf16", "int8", "int4"])
def test_cuda_reduced_precision_matches_the_cpu(variant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """bf16 / int8 / int4 weights give the GPU the CPU's logits (within the variant's rounding), and
    CUDA-graph decoding equals eager decoding of the same weights. The CPU side uses the float
    products the GPU computes too, not herd's CPU kernels (which round activations)."""
    monkeypatch.setattr(quantized_linear.LIBRARY, "loaded", False)
    model = tiny_model("llama3-tiny", std=0.1)
    model = model.to(torch.bfloat16) if variant == "bf16" else quantize_model(model, variant)
    tokens = torch.tensor(random_prompts(4096, [64, 64], seed=2))
    with torch.no_grad():
        expected = model(tokens).float()
        model = model.to(CUDA)
        got = model(tokens.to(CUDA)).float().cpu()
    assert ((got - expected).norm() / expected.norm()).item() < (2e-2 if variant == "bf16" else 1e-4)
    prompts = random_prompts(4096, [9, 4], seed=3)
    assert _ids(Engine(model, compile=True), prompts, 16) == _ids(Engine(model), prompts, 16)
