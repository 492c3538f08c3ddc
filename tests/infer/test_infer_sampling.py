"""Sampling: masks checked by hand on small logits, seeded reproducibility, penalties, bad values."""

from __future__ import annotations

import math

import pytest
import torch
from infer_helpers import random_prompts, tiny_model

from herd.errors import HerdError
from herd.infer import Engine, SamplingParams, generate_ids
from herd.infer.sampling import (
    Sampler,
    apply_repetition_penalty,
    generator_seed,
    min_p_mask,
    process_logits,
    token_logprobs,
    top_k_mask,
    top_p_mask,
)

INF = math.inf


def kept(logits: torch.Tensor) -> list[list[int]]:
    return [torch.nonzero(row > -INF).flatten().tolist() for row in logits]


def test_top_k_by_hand() -> None:
    logits = torch.tensor([[1.0, 4.0, 3.0, 2.0], [0.0, 0.0, 5.0, -1.0]])
    assert kept(top_k_mask(logits, 2)) == [[1, 2], [0, 1, 2]]  # ties at the k-th value survive
    assert torch.equal(top_k_mask(logits, 10), logits)


def test_top_p_by_hand() -> None:
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log()
    assert kept(top_p_mask(logits, 0.5)) == [[0]]  # 0.5 alone reaches p
    assert kept(top_p_mask(logits, 0.6)) == [[0, 1]]
    assert kept(top_p_mask(logits, 0.81)) == [[0, 1, 2]]
    assert kept(top_p_mask(logits, 0.01)) == [[0]]  # the top token always survives
    shuffled = logits[:, [2, 0, 3, 1]]  # order of the vocabulary does not matter
    assert kept(top_p_mask(shuffled, 0.6)) == [[1, 3]]


def test_min_p_by_hand() -> None:
    logits = torch.tensor([[0.4, 0.3, 0.2, 0.1]]).log()
    assert kept(min_p_mask(logits, 0.45)) == [[0, 1, 2]]  # threshold 0.18
    assert kept(min_p_mask(logits, 0.76)) == [[0]]  # threshold 0.304
    assert kept(min_p_mask(logits, 0.0)) == [[0, 1, 2, 3]]


def test_repetition_penalty_by_hand() -> None:
    logits = torch.tensor([[2.0, -2.0, 1.0]])
    seen = torch.tensor([[True, True, False]])
    assert apply_repetition_penalty(logits, seen, 2.0).tolist() == [[1.0, -4.0, 1.0]]


def test_processing_order_temperature_then_filters() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    out = process_logits(logits, SamplingParams(temperature=0.5, top_k=3), None)
    assert out[0, :3].tolist() == [4.0, 2.0, 0.0] and out[0, 3] == -INF
    assert torch.equal(
        process_logits(logits, SamplingParams(top_k=1), None), logits
    )  # greedy ignores filters


def test_sampler_follows_the_filtered_distribution() -> None:
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log().expand(1, 4)
    sampler = Sampler(SamplingParams(temperature=1.0, top_p=0.6, seed=0), 1, 4, torch.device("cpu"))
    draws = [sampler.sample(logits).item() for _ in range(2000)]
    assert set(draws) == {0, 1}
    assert abs(draws.count(0) / 2000 - 0.5 / 0.8) < 0.05


def test_logprobs_are_the_model_distribution() -> None:
    logits = torch.tensor([[1.0, 2.0, 3.0]])
    expected = 3.0 - math.log(math.exp(1) + math.exp(2) + math.exp(3))
    assert token_logprobs(logits, torch.tensor([2])).item() == pytest.approx(expected)


def test_seeded_sampling_is_reproducible_and_seed_dependent() -> None:
    engine = Engine(tiny_model("llama3-tiny"))
    prompts = random_prompts(4096, [4, 7])

    def run(seed: int) -> list[list[int]]:
        params = SamplingParams(temperature=1.0, top_p=0.9, min_p=0.01, seed=seed)
        return [r.token_ids for r in generate_ids(engine, prompts, max_new_tokens=16, sampling=params)]

    assert run(7) == run(7)
    assert run(7) != run(8)
    assert run(7 + 2**32) != run(7)  # torch's CPU generator alone would draw the same: it keeps 32 bits


def test_generator_seeds_keep_32_bit_seeds_and_mix_wider_ones() -> None:
    assert [generator_seed(s) for s in (0, 7, 2**32 - 1)] == [0, 7, 2**32 - 1]
    wide = [generator_seed(7 + r * 2**32) for r in range(1, 5)] + [generator_seed(-1)]
    assert len(set(wide)) == 5 and all(0 <= s < 2**32 for s in wide)
    assert 7 not in wide


def test_repetition_penalty_changes_greedy_output() -> None:
    engine = Engine(tiny_model("llama2-tiny", std=0.1))
    prompt = random_prompts(512, [6], seed=3)
    plain = generate_ids(engine, prompt, max_new_tokens=24)[0].token_ids
    penalised = generate_ids(
        engine, prompt, max_new_tokens=24, sampling=SamplingParams(repetition_penalty=1e6)
    )[0].token_ids
    assert len(set(penalised)) == 24 and not set(penalised) & set(prompt[0])  # nothing seen is chosen again
    assert penalised != plain


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("temperature", -0.1, "temperature must be"),
        ("temperature", math.nan, "temperature must be"),
        ("top_k", 0, "top_k must be"),
        ("top_k", 2.5, "top_k must be"),
        ("top_p", 0.0, "top_p must be"),
        ("top_p", 1.5, "top_p must be"),
        ("min_p", -0.1, "min_p must be"),
        ("repetition_penalty", 0.0, "repetition_penalty must be"),
        ("seed", "x", "seed must be"),
    ],
)
def test_invalid_sampling_values(field: str, value: object, message: str) -> None:
    with pytest.raises(HerdError, match=message):
        SamplingParams(**{field: value})
