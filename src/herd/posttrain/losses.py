"""The losses of post-training, in float32: reward model, DPO, PPO, and the log-probabilities they need.

* :func:`reward_loss`: Llama 2's binary ranking loss with a rating margin
  (Llama 2 §3.2.2, Table 27; Llama 3 §4.1.2 drops the margin), with
  :func:`rating_margins` and :func:`reward_accuracy` per rating (Table 8).
* :func:`dpo_loss`: DPO's sigmoid loss with Llama 3's NLL term on the chosen
  response (Llama 3 §4.1.4), and the rewards it logs.
* :func:`ppo_policy_loss` / :func:`ppo_value_loss`: PPO's clipped surrogate
  and clipped value loss (Llama 2 §3.2.3), :func:`kl_penalty_rewards`, the
  per-token reward with the KL penalty to the reference policy, and
  :func:`llama2_reward`, the safety/helpfulness reward combination, with
  :func:`penalize_unfinished` for responses cut off before their end of turn.
* :func:`token_logprobs` / :func:`sequence_logprobs` from logits, and
  :func:`chunked_token_logprobs` / :func:`chunked_sequence_logprobs` from the
  final hidden states and the output weight, which never hold the logits of
  more than a chunk of rows (a 128,256-id vocabulary makes 1 MB of fp32 logits
  per token); DPO needs a log-probability per sequence, not the summed
  cross-entropy of :func:`herd.model.cross_entropy.linear_cross_entropy`.

Targets follow the model's convention: ``IGNORE_INDEX`` marks positions that
count for nothing (the prompt, padding), as :func:`herd.posttrain.data.next_token_targets` makes them.
Figures are from docs/spec.md §5.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from herd.errors import ConfigError, InputError
from herd.model.cross_entropy import IGNORE_INDEX
from herd.posttrain.advantages import at_least_fp32, masked_mean, whiten
from herd.posttrain.data import RATINGS

#: Reward-model margins m(r) by rating (Llama 2 Table 27, docs/spec.md §5.2); "none" is Llama 3's (§4.1.2).
MARGINS: dict[str, dict[str, float]] = {
    "none": dict.fromkeys(RATINGS, 0.0),
    "small": dict(zip(RATINGS, (1.0, 2 / 3, 1 / 3, 0.0), strict=True)),
    "large": dict(zip(RATINGS, (3.0, 2.0, 1.0, 0.0), strict=True)),
}
#: Llama 3's DPO settings (Llama 3 §4.1.4, docs/spec.md §5.6).
DPO_BETA = 0.1
DPO_NLL_WEIGHT = 0.2
#: Llama 2's PPO settings (Llama 2 §3.2.3, docs/spec.md §5.4): the clipping range, the KL
#: penalty β (0.005 for 34B and 70B) and the safety score under which the safety reward is used.
PPO_CLIP = 0.2
PPO_KL_BETA = 0.01
PPO_KL_BETA_LARGE = 0.005
SAFETY_THRESHOLD = 0.15
#: What the paper leaves open, from torchtune's PPO recipe (docs/spec.md §5.4): the weight of the
#: value loss and the score of a response that never emits its end-of-turn token.
PPO_VALUE_WEIGHT = 0.1
NO_END_OF_TURN_SCORE = -3.0
# Reward-model probabilities are kept this far from 0 and 1 before their logit.
_LOGIT_EPS = 1e-6
# Logit elements per chunk of :func:`chunked_token_logprobs` (64 MiB of fp32).
_CHUNK_ELEMENTS = 1 << 24


# --- reward model --------------------------------------------------------------------------------


def rating_margins(
    ratings: Sequence[str | None], kind: str = "none", device: torch.device | str | None = None
) -> torch.Tensor:
    """The fp32 margin of each pair's rating under ``kind`` (none, small, large); an unrated pair gets 0."""
    if kind not in MARGINS:
        raise ConfigError(f"unknown reward margin {kind!r} (expected {', '.join(MARGINS)})")
    table = MARGINS[kind]
    unknown = [r for r in ratings if r is not None and r not in table]
    if unknown:
        raise InputError(f"unknown preference rating {unknown[0]!r} (expected {', '.join(RATINGS)})")
    return torch.tensor([0.0 if r is None else table[r] for r in ratings], dtype=torch.float32, device=device)


def reward_loss(
    chosen: torch.Tensor, rejected: torch.Tensor, margin: torch.Tensor | float = 0.0
) -> torch.Tensor:
    """Mean of ``-log σ(r_chosen − r_rejected − m)`` over the pairs (Llama 2 §3.2.2, eq. 2), in fp32.

    The margin makes the model separate strongly preferred pairs further
    (Llama 2 Table 28: slightly better accuracy); ``logsigmoid`` keeps large
    negative differences finite.
    """
    difference = chosen.float() - rejected.float() - margin
    return -F.logsigmoid(difference).mean()


def reward_accuracy(
    chosen: torch.Tensor, rejected: torch.Tensor, ratings: Sequence[str | None]
) -> dict[str, tuple[int, int]]:
    """``(correct, total)`` pairs by rating and under ``"all"``: correct means chosen scored strictly higher.

    Counts rather than fractions, so batches and processes add up (Llama 2
    Table 8 reports accuracy per rating); unrated pairs count under ``"all"`` only.
    """
    correct = (chosen.detach() > rejected.detach()).tolist()
    if len(correct) != len(ratings):
        raise InputError(f"{len(correct)} scored pairs but {len(ratings)} ratings")
    counts: dict[str, tuple[int, int]] = {"all": (sum(correct), len(correct))}
    for rating in RATINGS:
        hits = [ok for ok, r in zip(correct, ratings, strict=True) if r == rating]
        if hits:
            counts[rating] = (sum(hits), len(hits))
    return counts


# --- DPO -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DPOLoss:
    """The loss to minimise and what a DPO step logs.

    ``loss`` = mean preference loss + ``nll_weight`` × ``nll``. Rewards are the
    implicit ones, ``β (log π − log π_ref)`` per pair, without gradient.
    """

    loss: torch.Tensor
    preference_loss: torch.Tensor
    nll: torch.Tensor | None
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor

    @property
    def reward_margins(self) -> torch.Tensor:
        """Chosen reward minus rejected reward, per pair."""
        return self.chosen_rewards - self.rejected_rewards

    @property
    def reward_accuracy(self) -> torch.Tensor:
        """The fraction of pairs whose chosen reward is strictly higher."""
        return (self.reward_margins > 0).float().mean()

    def metrics(self) -> dict[str, float]:
        """Scalars to log: the losses, mean rewards, mean margin and accuracy."""
        out = {
            "loss": self.loss.item(),
            "preference_loss": self.preference_loss.item(),
            "rewards/chosen": self.chosen_rewards.mean().item(),
            "rewards/rejected": self.rejected_rewards.mean().item(),
            "rewards/margin": self.reward_margins.mean().item(),
            "rewards/accuracy": self.reward_accuracy.item(),
        }
        if self.nll is not None:
            out["nll"] = self.nll.item()
        return out


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    beta: float = DPO_BETA,
    *,
    nll_weight: float = 0.0,
    chosen_tokens: torch.Tensor | None = None,
) -> DPOLoss:
    """DPO's sigmoid loss ``-log σ(β((π_c − π_r) − (ref_c − ref_r)))`` (Llama 3 §4.1.4), mean over pairs.

    Inputs are summed log-probabilities of each response, shape (pairs,), from
    :func:`sequence_logprobs`; the reference ones carry no gradient. With
    ``nll_weight`` (Llama 3: 0.2, :data:`DPO_NLL_WEIGHT`) the NLL of the chosen
    responses is added, normalised per token over the batch:
    ``-Σ π_c / Σ chosen_tokens``, the mean NLL of a chosen token (the same
    normalisation as the SFT loss, so its weight does not depend on the
    responses' lengths). ``chosen_tokens`` is the number of tokens counted in
    each ``policy_chosen``.
    """
    if beta <= 0:
        raise ConfigError(f"DPO beta must be positive, got {beta}")
    chosen_ratio = policy_chosen.float() - reference_chosen.float().detach()
    rejected_ratio = policy_rejected.float() - reference_rejected.float().detach()
    preference = -F.logsigmoid(beta * (chosen_ratio - rejected_ratio)).mean()
    nll = None
    loss = preference
    if nll_weight:
        if chosen_tokens is None:
            raise ConfigError(
                "the DPO NLL term (nll_weight) needs chosen_tokens, the chosen responses' lengths"
            )
        nll = -policy_chosen.float().sum() / chosen_tokens.sum().clamp(min=1)
        loss = preference + nll_weight * nll
    return DPOLoss(
        loss=loss,
        preference_loss=preference,
        nll=nll,
        chosen_rewards=beta * chosen_ratio.detach(),
        rejected_rewards=beta * rejected_ratio.detach(),
    )


# --- PPO ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClippedLoss:
    """A PPO loss and the fraction of tokens whose clipped term was the larger (the one used)."""

    loss: torch.Tensor
    clip_fraction: torch.Tensor


@dataclass(frozen=True)
class PolicyLoss(ClippedLoss):
    """:class:`ClippedLoss` plus ``approx_kl``: mean ``½ (log π − log π_old)²`` over the tokens (as TRL logs it)."""

    approx_kl: torch.Tensor


def ppo_policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip: float = PPO_CLIP,
) -> PolicyLoss:
    """PPO's clipped surrogate, mean over the masked tokens of the batch (Llama 2 §3.2.3, ε = 0.2).

    Per token, with ``ρ = exp(log π − log π_old)``:
    ``max(−A ρ, −A clip(ρ, 1 − ε, 1 + ε))`` (Schulman et al. 2017, eq. 7,
    as a loss). All inputs are (batch, T); ``old_logprobs`` (the rollout's)
    and ``advantages`` carry no gradient. The statistics are detached.
    """
    _check_clip(clip)
    weights = mask.to(torch.float32)
    log_ratio = at_least_fp32(logprobs) - at_least_fp32(old_logprobs).detach()
    ratio = torch.exp(log_ratio)
    advantages = at_least_fp32(advantages).detach()
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1 - clip, 1 + clip)
    return PolicyLoss(
        loss=masked_mean(torch.maximum(unclipped, clipped), weights),
        clip_fraction=masked_mean((clipped > unclipped).float(), weights).detach(),
        approx_kl=masked_mean(0.5 * log_ratio.detach() ** 2, weights),
    )


def ppo_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip: float = PPO_CLIP,
) -> ClippedLoss:
    """PPO's clipped value loss ``½ max((V − R)², (V_clip − R)²)``, mean over the masked tokens.

    ``V_clip = V_old + clip(V − V_old, −ε, ε)`` keeps one update from moving
    a value far from the rollout's (Llama 2 §3.2.3 trains the value model with
    the policy; the clipping follows OpenAI's baselines and TRL). ``returns``
    are GAE's (:func:`herd.posttrain.advantages.gae`); old values and returns
    carry no gradient.
    """
    _check_clip(clip)
    weights = mask.to(torch.float32)
    old_values, returns = at_least_fp32(old_values).detach(), at_least_fp32(returns).detach()
    values = at_least_fp32(values)
    clipped_values = old_values + (values - old_values).clamp(-clip, clip)
    unclipped = (values - returns) ** 2
    clipped = (clipped_values - returns) ** 2
    return ClippedLoss(
        loss=0.5 * masked_mean(torch.maximum(unclipped, clipped), weights),
        clip_fraction=masked_mean((clipped > unclipped).float(), weights).detach(),
    )


def kl_penalty_rewards(
    score: torch.Tensor,
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    mask: torch.Tensor,
    beta: float = PPO_KL_BETA,
) -> torch.Tensor:
    """Per-token rewards (batch, T): ``−β (log π − log π_0)`` on each response token, plus the score on its last.

    Llama 2 §3.2.3's final reward ``R = R̃_c − β D_KL(π_θ ‖ π_0)``, with the KL
    estimated per sampled token and the sequence's reward ``score`` (batch,)
    given where the response ends, as TRL's PPOTrainer does. The rewards are
    data for :func:`herd.posttrain.advantages.gae`: no gradient flows through
    them. 0 outside the mask; every row needs a response token.
    """
    if beta < 0:
        raise ConfigError(f"the PPO KL penalty beta must be >= 0, got {beta}")
    weights = mask.to(torch.float32)
    lengths = weights.sum(dim=1)
    if (lengths == 0).any():
        raise InputError(f"response {int((lengths == 0).nonzero()[0])} has no token to reward")
    kl = (at_least_fp32(logprobs) - at_least_fp32(ref_logprobs)).detach()
    rewards = -beta * kl * weights
    positions = torch.arange(weights.shape[1], device=weights.device)
    last = (positions * weights).argmax(dim=1, keepdim=True)
    return rewards.scatter_add(1, last, score.detach().to(rewards.dtype).unsqueeze(1))


def llama2_reward(
    helpful: torch.Tensor,
    safety: torch.Tensor,
    is_safety: torch.Tensor,
    threshold: float = SAFETY_THRESHOLD,
) -> torch.Tensor:
    """Llama 2's PPO reward ``WHITEN(LOGIT(R_c))`` (§3.2.3), one per response (batch,).

    ``R_c`` is the safety model's score for a prompt tagged as safety-related
    (``is_safety``) or a response whose safety score is below ``threshold``
    (0.15: precision 0.89, recall 0.55 on Meta's safety test set), else the
    helpfulness score. Scores are probabilities in (0, 1), ``σ`` of the
    reward models' outputs; the logit undoes the sigmoid (kept ``1e-6`` away
    from 0 and 1 so it stays finite) and whitening over the batch puts the
    two models' scores on one scale so the KL penalty weighs the same.
    """
    chosen = torch.where(is_safety.bool() | (safety < threshold), safety, helpful)
    return whiten(torch.logit(at_least_fp32(chosen), eps=_LOGIT_EPS))


def penalize_unfinished(
    score: torch.Tensor, ended: torch.Tensor, penalty: float = NO_END_OF_TURN_SCORE
) -> torch.Tensor:
    """``score`` (batch,) with ``penalty`` in place of the score of each response that did not end.

    ``ended`` is True where the response closed with its end-of-turn token. A
    response cut off at the token budget was never judged whole, and the
    reward model could score it well anyway; torchtune's PPO recipe replaces
    its score with a fixed −3 so the policy learns to finish (docs/spec.md §5.4).
    """
    return torch.where(ended.bool(), at_least_fp32(score), penalty)


def _check_clip(clip: float) -> None:
    """Raise :class:`ConfigError` unless the PPO clipping range is positive."""
    if not clip > 0:
        raise ConfigError(f"the PPO clip range must be positive, got {clip}")


# --- log-probabilities ---------------------------------------------------------------------------


def token_logprobs(
    logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """fp32 ``log p(target)`` at each position of ``logits`` (..., vocab); 0 where the target is ignored."""
    valid = targets != ignore_index
    safe = torch.where(valid, targets, 0).unsqueeze(-1)
    picked = torch.log_softmax(logits.float(), dim=-1).gather(-1, safe).squeeze(-1)
    return torch.where(valid, picked, 0.0)


def sequence_logprobs(
    logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """Summed log-probability of each sequence's targets (batch,), from logits (batch, seq, vocab)."""
    return token_logprobs(logits, targets, ignore_index).sum(-1)


def chunked_token_logprobs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    ignore_index: int = IGNORE_INDEX,
    chunk_rows: int | None = None,
) -> torch.Tensor:
    """:func:`token_logprobs` of ``hidden @ weight.T`` without materialising those logits.

    ``hidden`` (..., dim) are the model's final-norm hidden states
    (``Transformer.hidden_states``), ``weight`` (vocab, dim) its output
    projection. Only rows with a target are projected, ``chunk_rows`` at a
    time; with gradients each chunk is checkpointed, so the backward pass
    recomputes its logits instead of keeping them (peak memory: one chunk).
    """
    flat_targets = targets.reshape(-1)
    flat_hidden = hidden.reshape(-1, hidden.shape[-1])
    if flat_hidden.shape[0] != flat_targets.shape[0]:
        raise ValueError(f"{flat_hidden.shape[0]} hidden rows but {flat_targets.shape[0]} targets")
    rows = (flat_targets != ignore_index).nonzero().squeeze(1)
    step = chunk_rows or max(1, _CHUNK_ELEMENTS // weight.shape[0])
    grad = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    pieces = []
    for start in range(0, rows.shape[0], step):
        index = rows[start : start + step]
        h, t = flat_hidden.index_select(0, index), flat_targets.index_select(0, index)
        if grad:
            pieces.append(checkpoint(_picked_logprobs, h, weight, t, use_reentrant=False))
        else:
            pieces.append(_picked_logprobs(h, weight, t))
    if not pieces:  # no target at all: an empty product keeps the result on the graph (zero gradients)
        pieces.append(_picked_logprobs(flat_hidden[:0], weight, flat_targets[:0]))
    out = flat_hidden.new_zeros(flat_targets.shape, dtype=torch.float32).index_put((rows,), torch.cat(pieces))
    return out.reshape(targets.shape)


def chunked_sequence_logprobs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    ignore_index: int = IGNORE_INDEX,
    chunk_rows: int | None = None,
) -> torch.Tensor:
    """Summed log-probability of each sequence's targets (batch,), as :func:`chunked_token_logprobs` computes it."""
    return chunked_token_logprobs(hidden, weight, targets, ignore_index, chunk_rows).sum(-1)


def _picked_logprobs(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``log_softmax(hidden @ weight.T)[row, target]`` for a chunk of rows; the softmax in fp32."""
    logits = (hidden @ weight.T).float()
    return logits.gather(1, targets.unsqueeze(1)).squeeze(1) - torch.logsumexp(logits, dim=-1)
