"""PPO with four models, Llama 2's RLHF (Llama 2 §3.2.3, docs/spec.md §5.4): the recipe and its advantage step.

Llama 2 optimises the chat policy π_θ against a frozen reference π_0 (the
policy's initial weights), the helpfulness and safety reward models, and a
value model initialised from a reward model. The run will be an
:class:`herd.train.objective.Objective` on herd's one trainer, which owns the
optimizer (AdamW 0.9/0.95, eps 1e-5, weight decay 0.1, clipping 1.0, constant
LR 1e-6), sharding, checkpoints and resume. One PPO iteration, in the
numbered style of torchtune's PPO recipe:

1. **Rollout** (:func:`herd.posttrain.rollout.rollout`): sample one response
   per prompt of a batch of 512 (or ``group_size`` per prompt for
   ``advantage = "group"``) with the current policy through herd's KV-cache
   engine, at temperature 1, keeping the engine's log-probabilities as
   ``old_logprobs``.
2. **Score**: both reward models score each prompt and response;
   :func:`herd.posttrain.losses.llama2_reward` picks the safety score for
   safety-tagged prompts and unsafe responses (below 0.15), else the
   helpfulness one, and whitens its logit; a response cut off before its
   end-of-turn token gets a fixed score instead
   (:func:`herd.posttrain.losses.penalize_unfinished`).
3. **Reference and values**: the frozen reference's per-token
   log-probabilities (:func:`herd.posttrain.rollout.response_logprobs`) and
   the value model's per-token values of the rollout, without gradient.
4. **Rewards**: ``−β (log π_old − log π_0)`` per response token with the
   score on its last token (:func:`herd.posttrain.losses.kl_penalty_rewards`,
   β 0.01, 0.005 for 34B and 70B).
5. **Advantages** (:func:`advantages`): GAE (γ 1, λ 0.95) whitened over the
   batch, with returns as the value targets; or GRPO-style group baselines.
6. **Updates**: the batch of 512 in mini-batches of 64, each one optimizer
   step of the clipped policy loss plus 0.1 × the clipped value loss
   (:func:`herd.posttrain.losses.ppo_policy_loss`,
   :func:`herd.posttrain.losses.ppo_value_loss`), the policy's log-probabilities
   and values recomputed with gradient.
7. **Log** reward, KL to the reference, clip fractions, approximate KL to the
   rollout policy, response length and the fraction that ended; repeat from 1.

Only step 5's switch is implemented here so far; the objective comes next.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch

from herd.errors import ConfigError
from herd.posttrain.advantages import GAE_GAMMA, GAE_LAMBDA, gae, group_advantages, whiten

#: How advantages are estimated: Llama 2's GAE with a value model, or GRPO's group baseline.
Advantage = Literal["gae", "group"]


def advantages(
    kind: Advantage,
    rewards: torch.Tensor,
    mask: torch.Tensor,
    *,
    values: torch.Tensor | None = None,
    group_size: int | None = None,
    gamma: float = GAE_GAMMA,
    lam: float = GAE_LAMBDA,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token advantages (batch, T) of the rollout's per-token ``rewards``, and the value targets.

    ``"gae"`` (Llama 2 §3.2.3): :func:`~herd.posttrain.advantages.gae` over
    ``values``, the advantages whitened over the batch's response tokens;
    returns GAE's returns as the value model's targets.

    ``"group"`` (GRPO, DeepSeekMath §4.1; beyond the Llama papers): each
    response's total reward (its score plus its tokens' KL penalties, the sum
    of its ``rewards``) against the other ``group_size`` samples of its
    prompt, the same advantage on every token of the response; there is no
    value model, so no value targets (None).
    """
    if kind == "gae":
        if values is None:
            raise ConfigError('advantage = "gae" needs the value model\'s values')
        raw, returns = gae(rewards, values, mask, gamma, lam)
        return whiten(raw, mask), returns
    if kind == "group":
        if group_size is None:
            raise ConfigError('advantage = "group" needs group_size, the samples per prompt')
        totals = (rewards * mask).sum(dim=1)
        return group_advantages(totals, group_size).unsqueeze(1) * mask, None
    raise ConfigError(f"unknown advantage {kind!r} (expected {', '.join(get_args(Advantage))})")
