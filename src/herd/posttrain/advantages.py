"""Advantages for PPO: whitening, GAE over response tokens, and GRPO-style group baselines.

* :func:`whiten`: shift and scale to zero mean and unit variance over the
  tokens a mask selects; Llama 2 §3.2.3 whitens the reward
  (``WHITEN(LOGIT(R_c))``) and, as PPO implementations do, the advantages.
* :func:`gae`: generalized advantage estimation (Schulman et al. 2016) over
  (batch, T) per-token rewards and values, with ``γ = 1, λ = 0.95`` as
  defaults (Llama 2 §3.2.3 leaves them open; torchtune's PPO recipe, as
  docs/spec.md §5.4 records); computed backwards with a running
  ``lastgaelam``, as TRL's PPOTrainer does.
* :func:`group_advantages`: each sample's reward against the mean and spread of
  the other samples of its prompt (GRPO, Shao et al. 2024, DeepSeekMath §4.1).
  This is beyond the Llama papers: herd offers it as ``advantage = "group"``,
  a critic-free alternative to GAE.

Every tensor is computed in float32 or wider (float64 stays float64); masks
are 1/True on the response tokens and 0/False on the prompt and the padding,
which contribute nothing.
"""

from __future__ import annotations

import torch

from herd.errors import ConfigError, InputError

#: GAE's discount and trace decay for Llama 2's PPO (torchtune's, docs/spec.md §5.4).
GAE_GAMMA = 1.0
GAE_LAMBDA = 0.95
# Added to the variance before its inverse square root, as TRL's masked_whiten does.
_WHITEN_EPS = 1e-8


def at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32, or as it is when float64 (the tests' hand computations run in float64)."""
    return x if x.dtype == torch.float64 else x.float()


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of ``x`` over the positions ``mask`` selects (all of them without a mask)."""
    if mask is None:
        return x.mean()
    return (x * mask).sum() / mask.sum()


def whiten(x: torch.Tensor, mask: torch.Tensor | None = None, shift_mean: bool = True) -> torch.Tensor:
    """``(x − mean) / sqrt(var + 1e-8)`` over the masked positions (TRL's ``masked_whiten``).

    The variance is the unbiased one (Bessel's correction), as TRL computes
    it. With ``shift_mean=False`` the mean is added back: only the scale
    changes, which keeps the sign of rewards. Positions outside the mask come
    out as 0. Raises :class:`InputError` for fewer than two selected values,
    whose variance is undefined.
    """
    x = at_least_fp32(x)
    weights = torch.ones_like(x) if mask is None else mask.to(x.dtype)
    count = weights.sum()
    if count.item() < 2:
        raise InputError(f"whitening needs at least two values, got {int(count.item())}")
    mean = masked_mean(x, weights)
    variance = masked_mean((x - mean) ** 2, weights) * count / (count - 1)
    whitened = (x - mean) * torch.rsqrt(variance + _WHITEN_EPS)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * weights


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    gamma: float = GAE_GAMMA,
    lam: float = GAE_LAMBDA,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE advantages and returns (both (batch, T)) of per-token ``rewards`` and ``values``.

    ``δ_t = r_t + γ V_{t+1} − V_t`` and ``A_t = δ_t + γλ A_{t+1}``, backwards
    from the last position; the return (the value target) is ``A_t + V_t``.
    A masked-out position ends the episode: the value and advantage after the
    last response token count as 0, so right padding contributes nothing, and
    every output outside the mask is 0. The advantages are not whitened here:
    PPO whitens them over the whole batch (:func:`whiten`).
    """
    if not rewards.shape == values.shape == mask.shape or rewards.dim() != 2:
        raise InputError(
            f"gae needs (batch, T) rewards, values and mask of one shape, got "
            f"{tuple(rewards.shape)}, {tuple(values.shape)}, {tuple(mask.shape)}"
        )
    rewards = at_least_fp32(rewards)
    weights = mask.to(rewards.dtype)
    rewards, values = rewards * weights, values.to(rewards.dtype) * weights
    next_values = torch.cat([values[:, 1:], torch.zeros_like(values[:, :1])], dim=1)
    advantages = torch.zeros_like(rewards)
    lastgaelam = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):  # masked positions hold 0, so an episode ends there
        delta = rewards[:, t] + gamma * next_values[:, t] - values[:, t]
        lastgaelam = (delta + gamma * lam * lastgaelam) * weights[:, t]
        advantages[:, t] = lastgaelam
    return advantages, (advantages + values) * weights


def group_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-6) -> torch.Tensor:
    """``(r − mean of its group) / (std of its group + eps)`` for each sample, shape (samples,).

    ``rewards`` (prompts × ``group_size``,) holds the ``group_size`` samples of
    each prompt next to each other, as ``generate_ids(..., num_samples=G)``
    orders them. The standard deviation is the unbiased one, as TRL's
    GRPOTrainer computes it; ``eps`` keeps a group of equal rewards at 0. The
    advantage is the same for every token of a response: broadcast it over the
    response mask. GRPO's baseline (DeepSeekMath §4.1), beyond the Llama papers.
    """
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 2:
        raise ConfigError(f"group advantages need a group_size of at least 2, got {group_size!r}")
    if rewards.dim() != 1 or rewards.shape[0] % group_size:
        raise InputError(
            f"group advantages need (prompts × {group_size},) rewards, got shape {tuple(rewards.shape)}"
        )
    groups = at_least_fp32(rewards).view(-1, group_size)
    mean = groups.mean(dim=1, keepdim=True)
    std = groups.std(dim=1, keepdim=True)
    return ((groups - mean) / (std + eps)).reshape(-1)
