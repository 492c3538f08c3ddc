"""herd.posttrain.rollout on a tiny random fp32 model: the engine's log-probabilities are the training forward's.

The classic RLHF bug is a rollout whose sampling log-probabilities disagree
with the ones the trainer recomputes (positions shifted by padding, an
off-by-one between logits and tokens): PPO's ratio is then not 1 at step 0
and the KL to the reference not 0. These tests pin both.
"""

from __future__ import annotations

import copy

import pytest
import torch

from herd.infer.engine import Engine
from herd.infer.generate import generate_ids
from herd.infer.sampling import SamplingParams
from herd.model.build import build_model
from herd.model.presets import get_preset
from herd.model.transformer import Transformer
from herd.posttrain.losses import kl_penalty_rewards, ppo_policy_loss
from herd.posttrain.rollout import Rollout, response_logprobs, rollout

STOP = 3
PROMPTS = [[5, 9, 11, 2, 7], [8, 1], [4, 4, 6]]  # different lengths: the engine left-pads them


@pytest.fixture(scope="module")
def policy() -> Transformer:
    """llama2-tiny with a 64-id vocabulary, fp32; the stop id made likely so some responses end early."""
    model = build_model(get_preset("llama2-tiny").replace(vocab_size=64), dtype=torch.float32, seed=0)
    model.init_weights(std=0.1, seed=0)
    with torch.no_grad():
        model.output.weight[STOP] *= 8
    return model


@pytest.fixture(scope="module")
def sampled(policy: Transformer) -> Rollout:
    return rollout(policy, PROMPTS, samples=3, max_new_tokens=12, stop_ids=[STOP], seed=7)


def test_rollout_logprobs_equal_recomputed(policy: Transformer, sampled: Rollout) -> None:
    assert {"stop", "length"} <= set(sampled.finish_reasons)  # rows of different lengths, padded
    with torch.no_grad():
        recomputed = response_logprobs(policy, sampled.tokens, sampled.response_mask)
    torch.testing.assert_close(recomputed, sampled.logprobs, atol=1e-5, rtol=0)
    assert not recomputed[~sampled.response_mask].any()


def test_rollout_layout_is_the_engines_samples(policy: Transformer, sampled: Rollout) -> None:
    expected = generate_ids(
        Engine(policy),
        PROMPTS,
        max_new_tokens=12,
        sampling=SamplingParams(temperature=1.0, seed=7),
        stop_ids=[STOP],
        num_samples=3,
    )
    assert sampled.tokens.shape[0] == sampled.response_mask.shape[0] == 9
    for r, result in enumerate(expected):
        prompt = PROMPTS[r // 3]
        end = len(prompt) + len(result.token_ids)
        assert sampled.tokens[r, :end].tolist() == prompt + result.token_ids
        assert not sampled.tokens[r, end:].any()  # pad id 0
        assert sampled.response_mask[r].nonzero().squeeze(1).tolist() == list(range(len(prompt), end))
        assert sampled.ended[r].item() == (result.token_ids[-1] == STOP)
    assert sampled.finish_reasons == [g.finish_reason for g in expected]


def test_kl_and_ratio_at_step_zero(policy: Transformer, sampled: Rollout) -> None:
    """A reference copy of the policy gives KL exactly 0; the policy's ratio to its rollout is 1."""
    reference = copy.deepcopy(policy)
    mask = sampled.response_mask
    logprobs = response_logprobs(policy, sampled.tokens, mask)
    with torch.no_grad():
        ref_logprobs = response_logprobs(reference, sampled.tokens, mask)
    rewards = kl_penalty_rewards(torch.zeros(mask.shape[0]), logprobs, ref_logprobs, mask)
    assert torch.equal(rewards, torch.zeros_like(rewards))
    out = ppo_policy_loss(logprobs, sampled.logprobs, torch.ones_like(logprobs), mask)
    assert out.clip_fraction.item() == 0 and out.approx_kl.item() < 1e-10
    out.loss.backward()  # the recomputed log-probabilities train the policy
    assert policy.output.weight.grad is not None and policy.output.weight.grad.abs().sum() > 0
    policy.zero_grad(set_to_none=True)


def test_rollout_restores_training_mode(policy: Transformer) -> None:
    policy.train()
    rollout(policy, PROMPTS[:1], samples=2, max_new_tokens=2, stop_ids=[STOP])
    assert policy.training
