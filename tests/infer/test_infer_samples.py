"""K samples per prompt from one prefill (``generate_ids(..., num_samples=K)``, Llama 2 §3.2.3).

The reference is the engine's ordinary batched generation with every prompt
repeated K times (row ``i * K + j`` seeded ``seed + i * K + j`` in both); the
prompt forwards are counted on the model itself.
"""

from __future__ import annotations

import pytest
import torch
from infer_helpers import random_prompts, tiny_model

from herd.errors import HerdError
from herd.infer import Engine, SamplingParams, generate_ids
from herd.infer.engine import PaddedBatch
from herd.model.config import ModelConfig
from herd.model.presets import get_preset
from herd.model.transformer import Transformer

K = 3
# Multi-head and grouped-query attention (the cache rows copied have n_kv_heads heads), head_dim != dim / heads.
CONFIGS = {
    "mha": get_preset("llama2-tiny"),
    "gqa": get_preset("llama2-tiny-gqa"),
    "head-dim": get_preset("llama2-tiny-gqa").replace(head_dim=24),
}
LENGTHS = [7, 2, 5]  # left padding of 0, 5 and 2 columns


def repeated(prompts: list[list[int]], k: int) -> list[list[int]]:
    return [p for p in prompts for _ in range(k)]


def count_forwards(model: Transformer, monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The (batch, positions) shape of every forward the model runs from now on."""
    shapes: list[tuple[int, int]] = []
    forward = model.hidden_states

    def counted(tokens: torch.Tensor, **kwargs: object) -> torch.Tensor:
        shapes.append(tuple(tokens.shape))
        return forward(tokens, **kwargs)

    monkeypatch.setattr(model, "hidden_states", counted)
    return shapes


@pytest.mark.parametrize(
    "sampling",
    [
        SamplingParams(temperature=1.2, seed=11),
        SamplingParams(temperature=0.9, top_p=0.9, top_k=40, repetition_penalty=1.3, seed=5),
    ],
    ids=["t1.2", "filtered+penalty"],
)
@pytest.mark.parametrize("config", list(CONFIGS.values()), ids=list(CONFIGS))
def test_k_samples_equal_the_prompts_repeated_k_times(config: ModelConfig, sampling: SamplingParams) -> None:
    model = tiny_model(config, std=0.1)
    prompts = random_prompts(config.vocab_size, LENGTHS, seed=2)
    stop = {3, 17}  # rows stop at different steps
    ours = generate_ids(
        Engine(model), prompts, max_new_tokens=12, sampling=sampling, stop_ids=stop, num_samples=K
    )
    theirs = generate_ids(
        Engine(model), repeated(prompts, K), max_new_tokens=12, sampling=sampling, stop_ids=stop
    )
    assert len(ours) == len(prompts) * K
    assert [r.token_ids for r in ours] == [r.token_ids for r in theirs]
    assert [r.finish_reason for r in ours] == [r.finish_reason for r in theirs]
    for a, b in zip(ours, theirs, strict=True):
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4)
    # the samples of one prompt differ from each other (they are K draws, not K copies of one)
    for i in range(len(prompts)):
        assert len({tuple(r.token_ids) for r in ours[i * K : (i + 1) * K]}) > 1


def test_greedy_samples_all_equal_greedy_generation() -> None:
    model = tiny_model("llama2-tiny-gqa", std=0.1)
    prompts = random_prompts(model.config.vocab_size, LENGTHS, seed=4)
    engine = Engine(model)
    samples = generate_ids(engine, prompts, max_new_tokens=10, num_samples=4)
    for i, prompt in enumerate(prompts):
        alone = generate_ids(Engine(model), [prompt], max_new_tokens=10)[0].token_ids
        assert [r.token_ids for r in samples[i * 4 : (i + 1) * 4]] == [alone] * 4


def test_the_prompts_run_through_the_model_once(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_model("llama2-tiny", std=0.1)
    prompts = random_prompts(model.config.vocab_size, LENGTHS, seed=3)
    shapes = count_forwards(model, monkeypatch)
    generate_ids(
        Engine(model),
        prompts,
        max_new_tokens=6,
        sampling=SamplingParams(temperature=1.0, seed=0),
        num_samples=8,
    )
    width = max(LENGTHS)
    # one prefill of the 3 prompts (not 24 rows), then 5 decode steps of all 24 samples, one token each
    assert shapes == [(3, width)] + [(3 * 8, 1)] * 5


def test_one_prompt_k_samples_then_the_cache_serves_the_next_call() -> None:
    """After K samples of one prompt (row 0 holding it), the engine's prefix reuse still gives exact results."""
    model = tiny_model("llama2-tiny-gqa", std=0.1)
    prompt, longer = random_prompts(model.config.vocab_size, [6, 3], seed=5)
    longer = prompt + longer
    engine = Engine(model)
    generate_ids(engine, [prompt], max_new_tokens=3)  # a 1-row cache, grown to K rows below
    sampling = SamplingParams(temperature=1.0, seed=1)
    ours = generate_ids(engine, [prompt], max_new_tokens=8, sampling=sampling, num_samples=K)
    theirs = generate_ids(Engine(model), [prompt] * K, max_new_tokens=8, sampling=sampling)
    assert [r.token_ids for r in ours] == [r.token_ids for r in theirs]
    after = generate_ids(engine, [longer], max_new_tokens=8)[0].token_ids
    assert after == generate_ids(Engine(model), [longer], max_new_tokens=8)[0].token_ids


def test_repeat_rows_layout() -> None:
    batch = PaddedBatch([[5, 6, 7], [8]], pad_id=0, device=torch.device("cpu"))
    batch.make_key_mask(4)
    twice = batch.repeat_rows(2)
    assert twice.tokens.tolist() == [[5, 6, 7], [5, 6, 7], [0, 0, 8], [0, 0, 8]]
    assert twice.pad == [0, 0, 2, 2] and twice.width == 3
    assert twice.positions(3, 4).tolist() == [[3], [3], [1], [1]]
    assert twice.key_mask is not None
    assert twice.key_mask.tolist() == [[True] * 4] * 2 + [[False, False, True, True]] * 2
    assert batch.tokens.shape == (2, 3)  # the original is unchanged


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_num_samples_must_be_a_positive_integer(bad: object) -> None:
    engine = Engine(tiny_model("llama2-tiny"))
    with pytest.raises(HerdError, match="num_samples must be a positive integer"):
        generate_ids(engine, [[1, 2]], max_new_tokens=2, num_samples=bad)  # type: ignore[arg-type]
