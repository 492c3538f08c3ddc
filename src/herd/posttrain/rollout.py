"""PPO's rollouts: sample responses with the policy, then recompute their log-probabilities in one forward.

Llama 2 §3.2.3 optimises the policy on its own samples: each PPO iteration
generates responses to a batch of prompts, scores them, and takes gradient
steps on the ratio ``π_θ(a_t | s_t) / π_old(a_t | s_t)`` of every response
token. :func:`rollout` samples through herd's batched KV-cache engine
(:func:`herd.infer.generate.generate_ids` with ``num_samples``, as rejection
sampling does) and lays the results out for training: right-padded
``prompt + response`` rows, a mask of the response tokens, and the engine's
log-probability of each sampled token. :func:`response_logprobs` recomputes
those log-probabilities with a training forward (no cache, one pass), as the
policy, the reference model and later updates need them.

The classic RLHF bug is a mismatch between the two (other positions, padding
on the wrong side, a different softmax): at step 0 the ratio must be 1 and
the KL to the reference 0. The tests check that the engine's and the
forward's log-probabilities agree to 1e-5 on a random fp32 model.

Both log-probabilities are under the model's own distribution, before
temperature and filters (:func:`herd.infer.sampling.token_logprobs`): sample
PPO rollouts at temperature 1 without top-k/top-p, so that they are also the
distribution the tokens were drawn from.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from herd.infer.engine import Engine
from herd.infer.generate import FinishReason, generate_ids
from herd.infer.sampling import SamplingParams
from herd.model.cross_entropy import IGNORE_INDEX
from herd.model.transformer import Transformer
from herd.posttrain.losses import chunked_token_logprobs
from herd.posttrain.reward_model import RewardModel
from herd.tokenizer import Tokenizer


@dataclass(frozen=True)
class Rollout:
    """Sampled responses laid out for training; row ``i * samples + j`` is sample ``j`` of prompt ``i``.

    ``tokens`` (batch, width) holds each prompt, its response, then ``pad_id``;
    ``response_mask`` is True on the response tokens (the end-of-turn token
    included when the response stopped); ``logprobs`` holds the engine's fp32
    log-probability of each response token at its position, 0 elsewhere.
    """

    tokens: torch.Tensor
    response_mask: torch.Tensor
    logprobs: torch.Tensor
    finish_reasons: list[FinishReason]

    @property
    def ended(self) -> torch.Tensor:
        """(batch,) bool: whether each response ended with a stop id (False: cut off, to be penalised)."""
        return torch.tensor([r == "stop" for r in self.finish_reasons], device=self.tokens.device)

    def texts(self, tokenizer: Tokenizer) -> list[str]:
        """Each response decoded without its end-of-turn token and stripped: what a reward model scores."""
        texts = []
        for r, ended in enumerate(self.ended.tolist()):
            ids = self.tokens[r][self.response_mask[r]].tolist()
            texts.append(tokenizer.decode(ids[:-1] if ended else ids).strip())
        return texts


def rollout(
    policy: Transformer,
    prompts: Sequence[Sequence[int]],
    *,
    samples: int,
    max_new_tokens: int,
    stop_ids: Collection[int],
    temperature: float = 1.0,
    seed: int = 0,
    pad_id: int = 0,
) -> Rollout:
    """Sample ``samples`` responses to each prompt (token ids rendered by the chat format) with ``policy``.

    ``stop_ids`` are the tokenizer's end-of-turn ids (``Tokenizer.stop_ids``).
    Row ``r`` samples with seed ``seed + r`` (:func:`generate_ids`), so a
    rollout is reproducible. The policy's train/eval mode is restored after
    sampling (the engine switches it to eval).
    """
    training = policy.training
    engine = Engine(policy)
    generated = generate_ids(
        engine,
        prompts,
        max_new_tokens=max_new_tokens,
        sampling=SamplingParams(temperature=temperature, seed=seed),
        stop_ids=stop_ids,
        num_samples=samples,
    )
    policy.train(training)
    rows = [list(p) for p in prompts for _ in range(samples)]
    width = max(len(p) + len(g.token_ids) for p, g in zip(rows, generated, strict=True))
    tokens = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    logprobs = torch.zeros(len(rows), width, dtype=torch.float32)
    for r, (prompt, result) in enumerate(zip(rows, generated, strict=True)):
        start, end = len(prompt), len(prompt) + len(result.token_ids)
        tokens[r, :end] = torch.tensor(prompt + result.token_ids)
        mask[r, start:end] = True
        logprobs[r, start:end] = torch.tensor(result.logprobs)
    return Rollout(
        tokens=tokens.to(engine.device),
        response_mask=mask.to(engine.device),
        logprobs=logprobs.to(engine.device),
        finish_reasons=[g.finish_reason for g in generated],
    )


def response_logprobs(model: Transformer, tokens: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """fp32 (batch, width): ``log p(token)`` at each response position of ``tokens``, 0 elsewhere.

    One causal forward over the right-padded rows (positions start at 0 in
    every row, as the engine's left-padded prefill makes them); the token at
    column ``t`` is predicted from column ``t − 1``, and only response
    positions are projected onto the vocabulary
    (:func:`herd.posttrain.losses.chunked_token_logprobs`), so the result
    aligns with :attr:`Rollout.logprobs` and carries gradients when enabled.
    """
    targets = torch.where(response_mask[:, 1:], tokens[:, 1:], IGNORE_INDEX)
    hidden = model.hidden_states(tokens[:, :-1])
    return F.pad(chunked_token_logprobs(hidden, model.output.weight, targets), (1, 0))


def response_values(
    value_model: RewardModel, tokens: torch.Tensor, response_mask: torch.Tensor
) -> torch.Tensor:
    """fp32 (batch, width): the value model's estimate before each response token of ``tokens``, 0 elsewhere.

    The value of the token at column ``t`` is the score head read at column
    ``t − 1`` (:meth:`RewardModel.token_scores`), the state it is sampled
    from, as TRL's PPOTrainer reads it; so values align with
    :func:`response_logprobs` and the per-token rewards of
    :func:`herd.posttrain.losses.kl_penalty_rewards` (Llama 2 §3.2.3).
    """
    scores = value_model.token_scores(tokens[:, :-1]).float()
    return F.pad(scores, (1, 0)) * response_mask
