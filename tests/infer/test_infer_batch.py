"""Batched generation equals one-by-one generation; compiled equals eager; the cache is reused correctly."""

from __future__ import annotations

import pytest
import torch
from infer_helpers import SMOLLM2_PROMPTS, random_prompts, tiny_model

from herd.infer import Engine, SamplingParams, generate, generate_ids
from herd.infer.engine import PaddedBatch
from herd.model.config import ModelConfig
from herd.model.transformer import Transformer
from herd.tokenizer import Tokenizer


def one_by_one(engine: Engine, prompts: list[list[int]], n: int, sampling: SamplingParams) -> list[list[int]]:
    """Each prompt alone; prompt ``i`` sampled with seed ``seed + i`` as a batch would."""
    out = []
    for i, prompt in enumerate(prompts):
        seed = None if sampling.seed is None else sampling.seed + i
        single = SamplingParams(**{**sampling.__dict__, "seed": seed})
        out.append(generate_ids(engine, [prompt], max_new_tokens=n, sampling=single)[0].token_ids)
    return out


def test_left_padded_layout() -> None:
    batch = PaddedBatch([[5, 6, 7], [8]], pad_id=0, device=torch.device("cpu"))
    assert batch.tokens.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert batch.positions(0, 3).tolist() == [[0, 1, 2], [0, 0, 0]]
    assert batch.positions(3, 4).tolist() == [[3], [1]]
    batch.make_key_mask(5)
    assert batch.key_mask is not None
    assert batch.key_mask.tolist() == [[True] * 5, [False, False, True, True, True]]
    assert PaddedBatch([[1, 2], [3, 4]], 0, torch.device("cpu")).positions(0, 2) is None


@pytest.mark.parametrize(
    "sampling",
    [SamplingParams(), SamplingParams(temperature=0.9, top_k=50, top_p=0.95, seed=3)],
    ids=["greedy", "sampled"],
)
def test_batched_equals_one_by_one_every_family(family_config: ModelConfig, sampling: SamplingParams) -> None:
    engine = Engine(tiny_model(family_config, std=0.1))
    prompts = random_prompts(family_config.vocab_size, [9, 2, 5, 1], seed=1)
    batched = [r.token_ids for r in generate_ids(engine, prompts, max_new_tokens=10, sampling=sampling)]
    assert batched == one_by_one(engine, prompts, 10, sampling)


@pytest.mark.slow
def test_smollm2_batched_equals_one_by_one_with_stops(smollm2: tuple[Transformer, Tokenizer]) -> None:
    model, tokenizer = smollm2
    engine = Engine(model)
    stop = ["\n\n", " llama"]
    batched = generate(engine, tokenizer, SMOLLM2_PROMPTS, max_new_tokens=20, stop=stop)
    for prompt, completion in zip(SMOLLM2_PROMPTS, batched, strict=True):
        alone = generate(engine, tokenizer, prompt, max_new_tokens=20, stop=stop)[0]
        assert completion.token_ids == alone.token_ids
        assert (completion.text, completion.finish_reason) == (alone.text, alone.finish_reason)
    reasons = {c.finish_reason for c in batched}
    assert reasons == {"stop", "length"}, "the prompt set should exercise per-sequence stops"


def test_prefix_reuse_equals_fresh_cache() -> None:
    model = tiny_model("llama3-tiny", std=0.1)
    engine = Engine(model)
    first, second = random_prompts(4096, [12, 6], seed=2)
    generate_ids(engine, [first], max_new_tokens=5)
    # The second prompt shares the first 12 tokens; only the rest is prefilled.
    extended = [*first, *second]
    reused = generate_ids(engine, [extended], max_new_tokens=8)[0].token_ids
    assert reused == generate_ids(Engine(model), [extended], max_new_tokens=8)[0].token_ids
    # A batch in between invalidates what row 0 holds.
    generate_ids(engine, [second, first], max_new_tokens=3)
    assert generate_ids(engine, [extended], max_new_tokens=8)[0].token_ids == reused


def test_static_cache_decode_equals_dynamic(family_config: ModelConfig) -> None:
    """Attending over the whole cache with a mask (the CUDA-graph form) gives the same logits."""
    model = tiny_model(family_config, std=0.1)
    for lengths in ([7], [9, 2, 5]):
        prompts = random_prompts(family_config.vocab_size, lengths, seed=5)
        dynamic = generate_ids(Engine(model), prompts, max_new_tokens=10)
        static = generate_ids(Engine(model, static_cache=True), prompts, max_new_tokens=10)
        for d, s in zip(dynamic, static, strict=True):
            assert s.token_ids == d.token_ids
            assert s.logprobs == pytest.approx(d.logprobs, abs=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("static_cache", [False, True], ids=["dynamic", "static"])
def test_compiled_decode_equals_eager(static_cache: bool) -> None:
    model = tiny_model("llama2-tiny-gqa", std=0.1)
    prompts = random_prompts(512, [6, 3], seed=4)
    eager = [r.token_ids for r in generate_ids(Engine(model), prompts, max_new_tokens=12)]
    compiled = Engine(model, compile=True, static_cache=static_cache)
    assert [r.token_ids for r in generate_ids(compiled, prompts, max_new_tokens=12)] == eager
    assert generate_ids(compiled, prompts[:1], max_new_tokens=12)[0].token_ids == eager[0]
