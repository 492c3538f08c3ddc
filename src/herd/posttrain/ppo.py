"""PPO with four models, Llama 2's RLHF (Llama 2 §3.2.3, docs/spec.md §5.4): the recipe and its advantage step.

Llama 2 optimises the chat policy π_θ against a frozen reference π_0 (the
policy's initial weights), the helpfulness and safety reward models, and a
value model initialised from a reward model. The run is an
:class:`herd.train.objective.Objective` on herd's one trainer, which owns the
optimizer (AdamW 0.9/0.95, eps 1e-5, weight decay 0.1, clipping 1.0, constant
LR 1e-6), sharding, checkpoints and resume. One PPO iteration, in the
numbered style of torchtune's PPO recipe:

1. **Rollout** (:func:`herd.posttrain.rollout.rollout`): sample one response
   per prompt of a batch of 512 (``samples`` per prompt, at least 2 for
   ``advantage = "group"``) with the current policy through herd's KV-cache
   engine, at temperature 1; ``old_logprobs`` are recomputed by the forward
   training uses (:func:`herd.posttrain.rollout.response_logprobs`, in the
   reference's chunks), so the first step's KL to the reference is exactly 0
   and each rollout's first mini-batch has ratio 1 (the engine's agree to 1e-5).
2. **Score**: both reward models score each prompt and response;
   :func:`herd.posttrain.losses.llama2_reward` picks the safety score for
   safety-tagged prompts and unsafe responses (below 0.15), else the
   helpfulness one, and whitens its logit; a response cut off before its
   end-of-turn token gets a fixed score instead
   (:func:`herd.posttrain.losses.penalize_unfinished`). Beyond the papers,
   ``reward_program`` (:mod:`herd.posttrain.program_reward`) scores the
   responses instead, its raw score whitened (:meth:`PPOObjective._reward`).
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

**On herd's trainer** (:class:`PPOObjective`, :func:`ppo`): the trained
module (:class:`PolicyAndValue`) holds the policy as ``transformer`` (what the
trainer exports) and the value model as ``value`` (the trainer shards and
recomputes the blocks of both), a
:class:`~herd.posttrain.reward_model.RewardModel` read from ``reward_model``
whose head gives a value at every position (``advantage = "group"`` has no
value model). The frozen reference and the reward models live in the
objective (:meth:`PPOObjective.prepare_run`). Each optimizer step is one
mini-batch of ``mini_batch`` responses; a rollout of ``rollout_prompts ×
samples`` responses serves ``ppo_epochs`` passes of them, so :meth:`micro_batches`
rolls out with the current policy every ``steps_per_period`` steps. The
loss of a micro-batch is summed over its response tokens, so the trainer's
division by the step's tokens gives the mean over the mini-batch's tokens.

**Resume.** The checkpointed data position is the prompts drawn, the rollouts
drawn and the mini-batches served of the current one. Each rollout buffer
(steps 1–5: tokens, masks, old and reference log-probabilities, values,
scores, rewards, advantages, returns) is written atomically to
``<out_dir>/rollout.safetensors`` as it is drawn, replacing the previous one,
tagged with its rollout index and a key of what it depends on
(:meth:`PPOObjective._rollout_key`: the prompts, their order, the seed, the
settings that shape a rollout and the numerics); the mini-batch order is a
function of the seed, the rollout index and the pass, so it needs no saving.
A run resumed at a rollout boundary draws the next rollout; resumed in the
middle of a rollout period (any ``checkpoint.every``), it reads that period's
rollout back and serves the rest of its mini-batches, so either way it
continues exactly as an uninterrupted run (Llama 2 §3.2.3's iterations, same
curves). When the file is missing or was written for another rollout or run,
the rollout is redrawn (same prompts and seed) with the restored policy, as a
log line says, and the resumed curves differ from an uninterrupted run's.
Only the main process writes the file; every rank reads it back, and all
redraw the rollout together unless every one of them could.

**Several processes** (``torchrun``; DDP or FSDP2, ``parallel.tp`` = 1). The
trainer shards the blocks of both decoders, the policy's and the value
model's (:func:`herd.train.distributed.decoders`). Every data-parallel rank
draws the *whole* rollout, identically: the same prompts and seeds, with the
policy's full weights gathered once per rollout into a plain copy
(:meth:`PPOObjective._full_model`), not through the sharded blocks, which
would all-gather every block for every generated token (the Llama 2 paper
saw a 20× slowdown, §3.2.3, and gathered the full weights too); the copy is
freed after. Each rank then trains on its contiguous share of every
mini-batch. This was chosen over each rank rolling out a share of the
prompts because it gives exactly one process's rollout (the same batch, so
the same sampled tokens and, bit for bit, the same log-probabilities,
scores, whitening and advantages) and so the same losses up to the
gradients' reduction order; the cost is that generation is repeated on
every rank rather than split over them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast, get_args

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from herd.checkpoint.base import tensor_names
from herd.checkpoint.load import load_model
from herd.checkpoint.sequence_classification import SequenceClassificationReader
from herd.errors import ConfigError
from herd.io.atomic import atomic_file
from herd.model.build import empty_model
from herd.model.transformer import Transformer
from herd.posttrain.advantages import GAE_GAMMA, GAE_LAMBDA, gae, group_advantages, masked_mean, whiten
from herd.posttrain.config import SFTConfig, SFTDataConfig, SFTOptimConfig, SFTScheduleConfig, Start
from herd.posttrain.curves import Panel, plot_curves
from herd.posttrain.data import EpochStream, Message, SkipCounts, read_prompts
from herd.posttrain.losses import (
    PPO_CLIP,
    PPO_KL_BETA,
    PPO_VALUE_WEIGHT,
    kl_penalty_rewards,
    llama2_reward,
    penalize_unfinished,
    ppo_policy_loss,
    ppo_value_loss,
)
from herd.posttrain.program_reward import ProgramReward, parse_program_reward
from herd.posttrain.rejection_sampling import score_conversations
from herd.posttrain.reward_model import RewardModel
from herd.posttrain.rollout import Rollout, response_logprobs, response_values, rollout
from herd.posttrain.sft import FINAL_DIR
from herd.train.checkpointing import flatten, lookup
from herd.train.init import load_init_weights
from herd.train.loop import train
from herd.train.metrics import METRICS_FILE, read_metrics
from herd.train.objective import (
    BatchLayout,
    EarlyStopping,
    LossTerms,
    Objective,
    Placement,
    RunResult,
    copy_weights,
    full_copy,
    is_sharded,
    unwrap,
)

log = logging.getLogger("herd.posttrain")

#: The current rollout buffer in the run directory, read back by a run resumed in the middle of its period.
ROLLOUT_FILE = "rollout.safetensors"
#: The score and KL curves in the run directory: the reward must rise while the KL stays bounded.
REWARD_PLOT = "rewards.png"
REWARD_PANELS = (
    Panel("score", "score per answer", "reward-model (or program) score"),
    Panel("kl", "nats per answer token", "KL to the reference, log π − log π_ref"),
)
#: Settings besides the resume keys that change a rollout buffer: the KL penalty and GAE's discounts.
ROLLOUT_KEYS = ("beta", "gamma", "lam")

#: How advantages are estimated: Llama 2's GAE with a value model, or GRPO's group baseline.
Advantage = Literal["gae", "group"]
#: A per-token computation over (tokens, response mask) rows: log-probabilities or values, (batch, width).
TokenFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


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


# ---- the config ------------------------------------------------------------------------------------


@dataclass
class PPODataConfig(SFTDataConfig):
    """The prompts: ``train`` for the rollouts, ``val`` held out (scored after each validation).

    Rows are those :func:`herd.posttrain.data.read_prompts` reads, with an
    optional boolean ``safety`` tag (Llama 2 §3.2.3's safety prompts). A prompt
    is used when it and ``max_new_tokens`` fit in ``seq_len`` and the policy's
    context. ``epochs``: passes over the prompts when ``train.steps`` is 0.
    """

    seq_len: int = 4096
    epochs: int = 1
    max_prompts: int = 0  # use the file's first usable prompts up to this many; 0: all
    max_val_prompts: int = 0  # the same for data.val


@dataclass
class PPOOptimConfig(SFTOptimConfig):
    """AdamW β 0.9/0.95, eps 1e-5, weight decay 0.1, clipping 1.0, learning rate 1e-6 (Llama 2 §3.2.3)."""

    lr: float = 1e-6


@dataclass
class PPOScheduleConfig(SFTScheduleConfig):
    """Llama 2 §3.2.3's constant learning rate: no warmup, a cosine whose floor is its peak."""

    min_lr_ratio: float = 1.0


@dataclass
class PPOConfig(SFTConfig):
    """A PPO run (:mod:`herd.posttrain.ppo`): SFT's sections and keys, the reward models and PPO's settings.

    ``init`` is the SFT policy (also the frozen reference π_0); ``reward_model``
    the helpfulness reward model (``LlamaForSequenceClassification``
    directory), which also initialises the value model; ``safety_reward_model``
    (optional) the safety one, used by Llama 2's ``R_c`` rule
    (:func:`herd.posttrain.losses.llama2_reward`). A rollout samples
    ``samples`` responses of at most ``max_new_tokens`` to each of
    ``rollout_prompts`` prompts (Llama 2: 512 prompts, one sample each);
    each optimizer step takes ``mini_batch`` of them (Llama 2: 64), in
    ``train.micro_batch_size`` rows per forward pass, for ``ppo_epochs``
    passes. ``train.batch_tokens`` is not used.

    ``early_stop_patience`` (0: off) ends the run once the held-out
    ``eval_score`` has not risen above its best (the step-0 score included)
    for that many validations in a row: Llama 2 §3.2.3's early stopping on
    the held-out prompts' reward. It needs ``data.val`` and ``log.val_every``.

    ``reward_program`` (beyond the papers; :mod:`herd.posttrain.program_reward`,
    e.g. ``"length:20"``) scores the responses by a program instead of the
    reward models; ``reward_model`` may then be empty, and the value model
    (``advantage = "gae"``) starts from the policy's own trunk with a zero head.
    """

    out_dir: str = "runs/ppo"
    optim: PPOOptimConfig = field(default_factory=PPOOptimConfig)
    schedule: PPOScheduleConfig = field(default_factory=PPOScheduleConfig)
    data: PPODataConfig = field(default_factory=PPODataConfig)
    reward_model: str = ""
    safety_reward_model: str = ""
    reward_program: str = ""
    samples: int = 1
    max_new_tokens: int = 512
    rollout_prompts: int = 512
    mini_batch: int = 64
    ppo_epochs: int = 1
    beta: float = PPO_KL_BETA
    clip: float = PPO_CLIP
    gamma: float = GAE_GAMMA
    lam: float = GAE_LAMBDA
    advantage: Advantage = "gae"
    value_weight: float = PPO_VALUE_WEIGHT
    early_stop_patience: int = 0

    @property
    def rollout_size(self) -> int:
        """Responses per rollout: ``rollout_prompts × samples``."""
        return self.rollout_prompts * self.samples

    @property
    def steps_per_period(self) -> int:
        """Optimizer steps served by one rollout: ``ppo_epochs`` passes of its mini-batches."""
        return self.ppo_epochs * (self.rollout_size // self.mini_batch)

    def checks(self) -> list[tuple[bool, str]]:
        """SFT's checks (the prompts file named first), then the reward model and PPO's settings."""
        return [
            (bool(self.data.train), "data.train must name the prompts of the rollouts (a .jsonl file)"),
            *super().checks(),
            (
                bool(self.reward_model or self.reward_program),
                "reward_model must name the helpfulness reward model's directory (or set reward_program)",
            ),
            (
                not (self.reward_program and self.safety_reward_model),
                "safety_reward_model is Llama 2's rule over the reward models: leave it empty with reward_program",
            ),
            (self.samples >= 1, "samples must be at least 1"),
            (self.advantage != "group" or self.samples >= 2, 'advantage = "group" needs samples >= 2'),
            (self.max_new_tokens >= 1, "max_new_tokens must be at least 1"),
            (self.rollout_prompts >= 1, "rollout_prompts must be at least 1"),
            (self.rollout_size >= 2, "rollout_prompts × samples must be at least 2 (the reward is whitened)"),
            (
                self.mini_batch >= 1 and self.rollout_size % self.mini_batch == 0,
                "mini_batch must divide rollout_prompts × samples",
            ),
            (
                self.mini_batch % self.train.micro_batch_size == 0,
                "train.micro_batch_size must divide mini_batch",
            ),
            (self.ppo_epochs >= 1, "ppo_epochs must be at least 1"),
            (self.beta >= 0, "beta must be >= 0"),
            (self.clip > 0, "clip must be positive"),
            (0 < self.gamma <= 1, "gamma must be in (0, 1]"),
            (0 <= self.lam <= 1, "lam must be in [0, 1]"),
            (self.value_weight >= 0, "value_weight must be >= 0"),
            (self.early_stop_patience >= 0, "early_stop_patience must be >= 0 (0: off)"),
            (
                not self.early_stop_patience or bool(self.data.val and self.log.val_every),
                "early_stop_patience needs data.val and log.val_every (it watches the held-out eval_score)",
            ),
            (self.data.max_prompts >= 0, "data.max_prompts must be >= 0 (0: every prompt)"),
            (self.data.max_val_prompts >= 0, "data.max_val_prompts must be >= 0 (0: every prompt)"),
        ]

    def validate(self) -> PPOConfig:
        """The checks of :meth:`checks`, then ``reward_program``'s kind and argument; returns self."""
        super().validate()
        if self.reward_program:
            parse_program_reward(self.reward_program)
        return self


# ---- the prompts ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PPOPrompt:
    """A usable prompt: its messages, their rendering (what the policy continues) and its safety tag."""

    messages: tuple[Message, ...]
    ids: list[int]
    safety: bool


def read_ppo_prompts(path: str, start: Start, max_len: int, limit: int) -> tuple[list[PPOPrompt], SkipCounts]:
    """The first ``limit`` (0: all) prompts of ``path`` whose rendering is at most ``max_len`` ids; what was skipped."""
    skipped = SkipCounts()
    prompts = []
    too_long = []  # the rendered lengths of the prompts skipped as too long
    for prompt in read_prompts(path, skipped):
        if limit and len(prompts) == limit:
            break
        ids = start.chat.render_prompt(prompt.messages)
        if len(ids) > max_len:
            skipped["too long"] += 1
            too_long.append(len(ids))
            continue
        prompts.append(PPOPrompt(prompt.messages, ids, prompt.safety))
    if not prompts:
        lengths = f"the prompts render to {min(too_long)}–{max(too_long)} tokens and " if too_long else ""
        raise ConfigError(
            f"{path}: no prompt leaves room for max_new_tokens: {lengths}a prompt may have at most {max_len} "
            f"(the smaller of data.seq_len and the model's context, less max_new_tokens) ({skipped})"
        )
    return prompts, skipped


# ---- the model and the rollout buffer ---------------------------------------------------------------


class PolicyAndValue(nn.Module):
    """The trained module: the policy as ``transformer`` (exported) and the value model as ``value``; the trainer
    shards and recomputes the blocks of both (:func:`herd.train.distributed.decoders`)."""

    def __init__(self, transformer: Transformer, value: RewardModel | None) -> None:
        super().__init__()
        self.transformer = transformer
        self.value = value

    def forward(
        self, tokens: torch.Tensor, response_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(batch, width) log-probabilities of the response tokens, and their values (None without a value model)."""
        logprobs = response_logprobs(self.transformer, tokens, response_mask)
        if self.value is None:
            return logprobs, None
        return logprobs, response_values(self.value, tokens, response_mask)


@dataclass(frozen=True)
class RolloutBuffer:
    """One rollout, scored (steps 1–5): per response row, what its mini-batches need.

    ``score`` is the reward model's (helpfulness) output or ``reward_program``'s,
    ``reward`` the sequence reward PPO optimises (Llama 2's whitened ``R_c``,
    the program's whitened score, or the penalty for an unfinished response).
    """

    tokens: torch.Tensor
    mask: torch.Tensor
    old_logprobs: torch.Tensor
    ref_logprobs: torch.Tensor
    values: torch.Tensor | None
    advantages: torch.Tensor
    returns: torch.Tensor | None
    score: torch.Tensor
    reward: torch.Tensor
    ended: torch.Tensor


@dataclass(frozen=True)
class MiniBatch:
    """Rows of a rollout buffer for one forward pass, trimmed to their widest response.

    ``response_scale`` turns a per-response sum into its share of the step's
    mean per response once the trainer divides by the step's tokens.
    """

    buffer: RolloutBuffer
    response_scale: float

    def count(self) -> int:
        """The response tokens of the rows."""
        return int(self.buffer.mask.sum())


def _rows(buffer: RolloutBuffer, rows: torch.Tensor) -> RolloutBuffer:
    """``rows`` of ``buffer``, cut after the last column any of them uses."""
    width = int(buffer.mask[rows].any(dim=0).nonzero().max()) + 1
    return RolloutBuffer(
        **{
            name: None if value is None else (value[rows, :width] if value.dim() == 2 else value[rows])
            for name, value in vars(buffer).items()
        }
    )


def _read_rollout(path: Path, period: int, key: str, device: torch.device) -> RolloutBuffer | None:
    """The rollout buffer of ``path`` on ``device`` if it is rollout ``period`` drawn for ``key``; else None."""
    try:
        with safe_open(path, framework="pt", device=str(device)) as f:
            saved = f.metadata() or {}
            if saved.get("period") != str(period) or saved.get("key") != key:
                return None
            names = set(f.keys())
            return RolloutBuffer(
                **{
                    name: f.get_tensor(name) if name in names else None
                    for name in RolloutBuffer.__dataclass_fields__
                }
            )
    except (OSError, SafetensorError):
        return None


def _write_rollout(path: Path, buffer: RolloutBuffer, period: int, key: str) -> None:
    """Write ``buffer`` (rollout ``period``, drawn for ``key``) atomically, replacing the previous rollout's."""
    tensors = {name: value.contiguous().cpu() for name, value in vars(buffer).items() if value is not None}
    with atomic_file(path) as tmp:
        save_file(tensors, str(tmp), metadata={"period": str(period), "key": key})


def _chunked(fn: TokenFn, tokens: torch.Tensor, mask: torch.Tensor, rows: int) -> torch.Tensor:
    """``fn(tokens, mask)`` ``rows`` rows at a time, each chunk cut to its widest response; (batch, width)."""
    out = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
    for i in range(0, tokens.shape[0], rows):
        width = int(mask[i : i + rows].any(dim=0).nonzero().max()) + 1
        out[i : i + rows, :width] = fn(tokens[i : i + rows, :width], mask[i : i + rows, :width])
    return out


# ---- the objective -----------------------------------------------------------------------------------


@dataclass
class PPOResult(RunResult):
    """What a finished PPO run reports (also written to ``<out_dir>/summary.json``).

    ``eval_*`` are the held-out prompts' figures after training (``*_before``:
    at step 0): the mean reward-model score of one sampled response per
    prompt, the per-token KL to the reference, the response length and the
    share of responses that ended with the end-of-turn token.

    ``reward_start`` and ``reward_end`` are the mean score before and after
    training: the held-out one when ``data.val`` is set, else the first and
    last rollouts' (of this process, when resumed); ``kl_end`` the last
    held-out (else rollout) per-token KL to the reference; ``iterations`` the
    rollouts drawn (Llama 2 §3.2.3's PPO iterations); ``reward_plot`` the
    score and KL against step, each optimizer step's mini-batch and the
    held-out prompts at each validation.
    """

    reward_start: float | None = None
    reward_end: float | None = None
    kl_end: float | None = None
    iterations: int = 0
    eval_score: float | None = None
    eval_kl: float | None = None
    eval_response_length: float | None = None
    eval_ended: float | None = None
    eval_score_before: float | None = None
    eval_ended_before: float | None = None
    advantage: str = ""
    beta: float = PPO_KL_BETA
    rollouts: int = 0
    steps_per_rollout: int = 0
    final_dir: str | None = None
    tokenizer: str | None = None
    reward_plot: str | None = None
    prompts: dict[str, int] = field(default_factory=dict)
    epochs: float = 0.0
    skipped_prompts: dict[str, dict[str, int]] = field(default_factory=dict)


class PPOObjective(Objective[MiniBatch]):
    """PPO of ``init`` against the reward models on the prompts of ``data.train``; see the module docstring."""

    name = "ppo"
    resume_keys = (
        "init",
        "tokenizer",
        "chat_format",
        "reward_model",
        "safety_reward_model",
        "reward_program",
        "advantage",
        "data.train",
        "data.seq_len",
        "data.max_prompts",
        "train.seed",
        "train.micro_batch_size",
        "samples",
        "max_new_tokens",
        "rollout_prompts",
        "mini_batch",
        "ppo_epochs",
    )
    val_metric = "eval_score"

    def __init__(self, config: PPOConfig, placement: Placement) -> None:
        super().__init__(config, placement)
        if config.parallel.tp > 1:
            raise ConfigError("ppo does not run with tensor parallelism yet: set parallel.tp = 1")
        if config.mini_batch % (placement.dp_size * config.train.micro_batch_size):
            raise ConfigError(
                f"mini_batch ({config.mini_batch}) must be a multiple of the {placement.dp_size} data-parallel "
                f"processes × train.micro_batch_size ({config.train.micro_batch_size})"
            )
        self.config: PPOConfig = config
        data = config.data
        self.start = start = Start.of_run(config)
        self.model_config = start.model_config
        for key in ("reward_model", "safety_reward_model"):
            self._check_vocabulary(key, getattr(config, key))
        self.program: ProgramReward | None = (
            parse_program_reward(config.reward_program) if config.reward_program else None
        )
        max_len = min(data.seq_len, start.model_config.max_seq_len) - config.max_new_tokens
        self.splits = {"train": read_ppo_prompts(data.train, start, max_len, data.max_prompts)}
        if data.val:
            self.splits["val"] = read_ppo_prompts(data.val, start, max_len, data.max_val_prompts)
        self.prompts = self.splits["train"][0]
        self.pad_id = start.tokenizer.eos_id or 0
        self.seq_len = data.seq_len
        self.sequences_per_step = config.mini_batch
        self.steps_per_period = config.steps_per_period
        self.layout = BatchLayout(
            config.mini_batch, config.train.micro_batch_size, placement.dp_rank, placement.dp_size
        )
        self.stream = EpochStream(len(self.prompts), config.train.seed)
        periods = math.ceil(data.epochs * len(self.prompts) / config.rollout_prompts)
        self.steps = config.train.steps or periods * self.steps_per_period
        digest = hashlib.sha256()
        for prompt in self.prompts:
            digest.update(json.dumps([prompt.ids, prompt.safety]).encode())
        self.fingerprint = digest.hexdigest()
        self.periods = 0  # rollouts drawn
        self.served = 0  # mini-batches of the current rollout served
        self.buffer: RolloutBuffer | None = None
        self.rollout_path: Path | None = None
        self.model: PolicyAndValue | None = None
        self.reference: Transformer | None = None
        self.autocast_dtype: torch.dtype | None = None
        self.reward_models: dict[str, RewardModel] = {}
        self.before: dict[str, float] = {}
        self.early_stop = EarlyStopping(self.val_metric, config.early_stop_patience)
        self.rollout_score: tuple[float, float] | None = (
            None  # the mean score of the first and latest rollouts
        )
        self.rollout_kl: float | None = None  # the latest rollout's per-token KL to the reference

    def _check_vocabulary(self, key: str, path: str) -> None:
        """Raise a ConfigError unless the reward model at ``path`` (if any) reads the policy's vocabulary."""
        if not path:
            return
        with SequenceClassificationReader(path) as reader:
            theirs = reader.config.vocab_size
        if theirs != self.model_config.vocab_size:
            raise ConfigError(
                f"{key}: {path} has a vocabulary of {theirs} tokens but the policy "
                f"{self.config.init} has {self.model_config.vocab_size}; it must share the policy's tokenizer"
            )

    # ---- the model -------------------------------------------------------------------------------

    def build_model(self, device: torch.device | str) -> nn.Module:
        """A :class:`PolicyAndValue`: the init checkpoint's shape, and the reward model's for the value (GAE;
        the policy's shape without a reward model)."""
        value = None
        if self.config.advantage == "gae" and self.config.reward_model:
            with SequenceClassificationReader(self.config.reward_model) as reader:
                value = RewardModel(reader.config, pad_id=reader.pad_token_id, device=device)
        elif self.config.advantage == "gae":
            value = RewardModel(self.model_config, pad_id=self.pad_id, device=device)
        return PolicyAndValue(empty_model(self.model_config, device), value)

    def init_weights(self, model: nn.Module, device: torch.device) -> None:
        """The policy from ``init`` and the value model from ``reward_model`` (Llama 2 §3.2.3), in fp32.

        Without a reward model (``reward_program``), the value model is the
        policy's trunk with a zero head: every value starts at 0, so the first
        advantages are GAE's returns, not a random head's noise.
        """
        model = cast(PolicyAndValue, model)
        load_init_weights(model, device, self.start.init, model.transformer)
        if model.value is None:
            return
        source = self.config.reward_model or str(self.start.init)
        if self.config.reward_model:
            value = RewardModel.from_pretrained(source, dtype=torch.float32)
        else:
            # Read from the checkpoint, not the live policy, whose parameters are shards in a sharded run.
            value = RewardModel.from_pretrained_lm(source, dtype=torch.float32)
            value.score.weight.data.zero_()
        copy_weights(model.value, dict(value.named_parameters()), source)

    def prepare_run(self, model: nn.Module, out_dir: Path) -> None:
        """Keep the trained model (rollouts use the current policy); load the frozen reference and reward models.

        The reference π_0 is ``init`` read again; the reward models are read
        in fp32, all in eval mode without gradients. The held-out figures at
        step 0 are computed here. The run's autocast is noted: a rollout's
        log-probabilities and values are computed under it, as the loss's are.
        """
        self.model = cast(PolicyAndValue, unwrap(model))
        self.rollout_path = out_dir / ROLLOUT_FILE
        dev = self.device.type
        self.autocast_dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else None
        self.reference = load_model(self.start.init, dtype=torch.float32, device=self.device)
        self.reference.requires_grad_(False)
        for key in ("reward_model", "safety_reward_model"):
            path = getattr(self.config, key)
            if path and self.program is None:
                rm = RewardModel.from_pretrained(path, dtype=torch.float32, device=self.device)
                self.reward_models[key] = rm.eval().requires_grad_(False)
        if "val" in self.splits:
            self.before = self.validate(model)
            self.early_stop.update(self.before)

    # ---- steps 1–5: rollout, score, reference and values, rewards, advantages ------------------------

    def _full_model(self) -> PolicyAndValue:
        """The trained model with full weights, for generation and the rollout's forwards (every rank calls it).

        On one process or under DDP that is the model itself; under FSDP2 a
        plain copy with the full weights all-gathered once (:func:`full_copy`),
        freed when the caller drops it, so that generation does not gather
        every block for every token (Llama 2 §3.2.3).
        """
        assert self.model is not None
        if not is_sharded(self.model):
            return self.model
        return cast(PolicyAndValue, full_copy(self.model, self.build_model(self.device)))

    def _sample(self, policy: Transformer, prompts: Sequence[PPOPrompt], samples: int, seed: int) -> Rollout:
        """``samples`` responses to each prompt from ``policy`` at temperature 1 (step 1)."""
        return rollout(
            policy,
            [p.ids for p in prompts],
            samples=samples,
            max_new_tokens=self.config.max_new_tokens,
            stop_ids=self.start.tokenizer.stop_ids,
            seed=seed,
            pad_id=self.pad_id,
        )

    def _scores(self, key: str, prompts: Sequence[PPOPrompt], drawn: Rollout, samples: int) -> torch.Tensor:
        """(responses,) fp32 outputs of the reward model ``key``, each response rendered after its prompt."""
        conversations = [
            (prompts[r // samples].messages, text) for r, text in enumerate(drawn.texts(self.start.tokenizer))
        ]
        scores = score_conversations(
            self.reward_models[key],
            self.start.chat,
            conversations,
            batch_size=self.config.train.micro_batch_size,
        )
        return torch.tensor(scores, dtype=torch.float32, device=drawn.tokens.device)

    def _score(self, prompts: Sequence[PPOPrompt], drawn: Rollout, samples: int) -> torch.Tensor:
        """(responses,) the score PPO raises: ``reward_program``'s when set, else the helpfulness model's."""
        if self.program is None:
            return self._scores("reward_model", prompts, drawn, samples)
        program = self.program
        scores = [
            program(prompts[r // samples].messages, text)
            for r, text in enumerate(drawn.texts(self.start.tokenizer))
        ]
        return torch.tensor(scores, dtype=torch.float32, device=drawn.tokens.device)

    def _reward(
        self, prompts: Sequence[PPOPrompt], drawn: Rollout, samples: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Step 2: per response, its score (:meth:`_score`) and the sequence reward PPO optimises.

        With the reward models, Llama 2's ``WHITEN(LOGIT(R_c))``
        (:func:`~herd.posttrain.losses.llama2_reward`); with ``reward_program``,
        its raw score whitened over the rollout (there is no sigmoid to undo).
        Either way an unfinished response gets the fixed penalty
        (:func:`~herd.posttrain.losses.penalize_unfinished`) and the KL penalty
        is added per token afterwards (step 4).
        """
        score = self._score(prompts, drawn, samples)
        if self.program is not None:
            return score, penalize_unfinished(whiten(score), drawn.ended)
        safety = score
        if "safety_reward_model" in self.reward_models:
            safety = self._scores("safety_reward_model", prompts, drawn, samples)
        tagged = torch.tensor([p.safety for p in prompts for _ in range(samples)], device=score.device)
        chosen = llama2_reward(torch.sigmoid(score), torch.sigmoid(safety), tagged)
        return score, penalize_unfinished(chosen, drawn.ended)

    def _logprobs(self, model: Transformer, drawn: Rollout) -> torch.Tensor:
        """Per-token log-probabilities of the responses under ``model``, ``micro_batch_size`` rows a pass."""
        return _chunked(
            lambda t, m: response_logprobs(model, t, m),
            drawn.tokens,
            drawn.response_mask,
            self.config.train.micro_batch_size,
        )

    @torch.no_grad()
    def _rollout(self, indices: Sequence[int], seed: int) -> RolloutBuffer:
        """Steps 1–5 for the prompts ``indices`` with the current policy."""
        assert self.model is not None and self.reference is not None
        config, samples = self.config, self.config.samples
        prompts = [self.prompts[i] for i in indices]
        model = self._full_model()
        model.eval()
        try:
            drawn = self._sample(model.transformer, prompts, samples, seed)
            mask = drawn.response_mask
            helpful, reward = self._reward(prompts, drawn, samples)
            with torch.autocast(
                self.device.type, self.autocast_dtype, enabled=self.autocast_dtype is not None
            ):
                old = self._logprobs(model.transformer, drawn)
                ref = self._logprobs(self.reference, drawn)
                values = None
                if model.value is not None:
                    value_model = model.value
                    values = _chunked(
                        lambda t, m: response_values(value_model, t, m),
                        drawn.tokens,
                        mask,
                        config.train.micro_batch_size,
                    )
        finally:
            model.train()
        rewards = kl_penalty_rewards(reward, old, ref, mask, config.beta)
        adv, returns = advantages(
            config.advantage,
            rewards,
            mask,
            values=values,
            group_size=samples,
            gamma=config.gamma,
            lam=config.lam,
        )
        return RolloutBuffer(drawn.tokens, mask, old, ref, values, adv, returns, helpful, reward, drawn.ended)

    # ---- data ------------------------------------------------------------------------------------

    def _rollout_key(self, indices: Sequence[int], seed: int) -> str:
        """What a rollout buffer depends on besides the policy: the run's prompts, the rollout's prompts
        ``indices`` and ``seed``, the settings that shape it and the numerics (not the process: every rank
        draws the same rollout)."""
        settings = self.config.to_dict()
        keys: dict[str, Any] = {}
        for name in (*self.resume_keys, *ROLLOUT_KEYS):
            keys |= flatten(lookup(settings, name), name)
        dev = self.device.type
        dtype = self.autocast_dtype or torch.float32
        parts = [self.fingerprint, list(indices), seed, keys, dev, str(dtype)]
        return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()

    def _next_rollout(self, resumed: bool) -> RolloutBuffer:
        """The next rollout: read back from the run directory when ``resumed`` inside its period and written
        for it, else drawn (steps 1–5) and written there by the main process."""
        assert self.rollout_path is not None
        config, period = self.config, self.periods
        seed = config.train.seed + period * config.rollout_size
        indices = self.stream.take(config.rollout_prompts)
        key = self._rollout_key(indices, seed)
        if resumed:
            saved = _read_rollout(self.rollout_path, period, key, self.device)
            # All ranks read the main process's file; they redraw together unless all of them could read it.
            missing = self.placement.runtime.sum(torch.tensor(float(saved is None)))
            if saved is not None and not missing.item():
                return saved
            log.warning(
                "%s: no rollout %d drawn for this run; redrawing it with the restored policy "
                "(the resumed run differs from an uninterrupted one)",
                self.rollout_path,
                period,
            )
        buffer = self._rollout(indices, seed)
        if self.placement.runtime.is_main:
            _write_rollout(self.rollout_path, buffer, period, key)
        return buffer

    def micro_batches(self) -> list[MiniBatch]:
        """The next mini-batch of the current rollout in micro-batches; a new rollout when it is spent."""
        config = self.config
        if self.buffer is None or self.served == self.steps_per_period:
            served = self.served if self.buffer is None else 0  # resumed mid-period: the rest of that rollout
            self.buffer = buffer = self._next_rollout(served > 0)
            score = buffer.score.mean().item()
            self.rollout_score = (self.rollout_score[0] if self.rollout_score else score, score)
            self.rollout_kl = masked_mean(buffer.old_logprobs - buffer.ref_logprobs, buffer.mask).item()
            self.periods += 1
            self.served = served
        per_epoch = config.rollout_size // config.mini_batch
        epoch, k = divmod(self.served, per_epoch)
        order = torch.from_numpy(
            np.random.default_rng([config.train.seed, self.periods, epoch]).permutation(config.rollout_size)
        )
        rows = order[k * config.mini_batch : (k + 1) * config.mini_batch].to(self.buffer.mask.device)
        self.served += 1
        scale = int(self.buffer.mask[rows].sum()) / len(rows)
        # This rank's contiguous share of the mini-batch; the step is the whole mini-batch's global mean.
        return [
            MiniBatch(_rows(self.buffer, torch.tensor(part, device=rows.device)), scale)
            for part in self.layout.split(rows.tolist())
        ]

    def count(self, batch: MiniBatch) -> int:
        """The response tokens of ``batch``."""
        return batch.count()

    def state_dict(self) -> dict[str, Any]:
        """The prompts drawn, the rollouts drawn, the mini-batches served of the current one, and the early
        stopping rule's best held-out score and validations since."""
        position = {**self.stream.state_dict(), "periods": self.periods, "served": self.served}
        return position | {"early_stop": self.early_stop.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue after ``periods`` rollouts; in the middle of one, step back to it: the next mini-batch
        reads it back from the run directory (or redraws it)."""
        periods, served = state.get("periods"), state.get("served")
        for key, value in (("periods", periods), ("served", served)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{key}: expected an integer >= 0, got {value!r}")
        self.stream.load_state_dict(state)
        if "early_stop" in state:  # absent from checkpoints written before early stopping
            self.early_stop.load_state_dict(state["early_stop"])
        assert isinstance(periods, int) and isinstance(served, int)
        self.buffer = None
        self.periods, self.served = periods, served
        if periods and served < self.steps_per_period:
            self.periods -= 1
            self.stream.taken -= self.config.rollout_prompts
        else:
            self.served = 0

    # ---- step 6–7: loss and statistics, validation, export --------------------------------------------

    def loss(self, model: nn.Module, batch: MiniBatch) -> LossTerms:
        """The clipped policy loss plus ``value_weight`` × the clipped value loss, summed over response tokens."""
        b, config = batch.buffer, self.config
        dev = self.device
        mask = b.mask.to(dev)
        logprobs, values = model(b.tokens.to(dev), mask)
        tokens = mask.sum()
        policy = ppo_policy_loss(logprobs, b.old_logprobs, b.advantages, mask, config.clip)
        loss = policy.loss * tokens
        n, scale = tokens.item(), batch.response_scale
        stats = {
            "policy_loss": policy.loss.item() * n,
            "clip_fraction": policy.clip_fraction.item() * n,
            "approx_kl": policy.approx_kl.item() * n,
            "kl": ((b.old_logprobs - b.ref_logprobs) * mask).sum().item(),
            "score": b.score.sum().item() * scale,
            "reward": b.reward.sum().item() * scale,
            "response_length": n * scale,
            "ended": b.ended.float().sum().item() * scale,
        }
        if values is not None and b.values is not None and b.returns is not None:
            value = ppo_value_loss(values, b.values, b.returns, mask, config.clip)
            loss = loss + config.value_weight * value.loss * tokens
            stats["value_loss"] = value.loss.item() * n
            stats["value_clip_fraction"] = value.clip_fraction.item() * n
        return LossTerms(loss, stats)

    def validate(self, model: nn.Module) -> dict[str, float]:
        """One response per held-out prompt (seeded as at every validation): its score, KL, length and ending.

        Every rank samples every prompt with the full weights (:meth:`_full_model`), so all of them see the same
        figures and take the same early-stopping decision.
        """
        if "val" not in self.splits:
            return {}
        assert self.reference is not None
        prompts = self.splits["val"][0]
        policy = self._full_model().transformer
        drawn = self._sample(policy, prompts, 1, self.config.train.seed)
        mask = drawn.response_mask
        kl = self._logprobs(policy, drawn) - self._logprobs(self.reference, drawn)
        return {
            "eval_score": self._score(prompts, drawn, 1).mean().item(),
            "eval_kl": masked_mean(kl, mask).item(),
            "eval_response_length": mask.sum(dim=1).float().mean().item(),
            "eval_ended": drawn.ended.float().mean().item(),
        }

    def should_stop(self, validation: dict[str, float]) -> str | None:
        """Stop once ``eval_score`` has not beaten its best for ``early_stop_patience`` validations (Llama 2 §3.2.3)."""
        return self.early_stop.update(validation)

    def export(self, state: dict[str, torch.Tensor], out_dir: Path) -> Path:
        """``out_dir/final``: the policy in herd's Hugging Face layout with the tokenizer's files."""
        tensors = ((name, state[f"transformer.{name}"]) for name in tensor_names(self.model_config))
        return self.start.write_final(tensors, out_dir / FINAL_DIR)

    def result(
        self, figures: dict[str, Any], validation: dict[str, float], exported: Path | None
    ) -> PPOResult:
        held_out = "val" in self.splits
        start, end = self.rollout_score or (None, None)
        plot = None
        if self.placement.runtime.is_main:
            records = read_metrics(Path(self.config.out_dir) / METRICS_FILE)
            plot = plot_curves(
                records,
                self.before,
                REWARD_PANELS,
                Path(self.config.out_dir) / REWARD_PLOT,
                train_label="rollout mini-batches",
                held_label="held-out prompts",
            )
        return PPOResult(
            **figures,
            reward_start=self.before.get("eval_score") if held_out else start,
            reward_end=validation.get("eval_score") if held_out else end,
            kl_end=validation.get("eval_kl") if held_out else self.rollout_kl,
            iterations=self.periods,
            eval_score=validation.get("eval_score"),
            eval_kl=validation.get("eval_kl"),
            eval_response_length=validation.get("eval_response_length"),
            eval_ended=validation.get("eval_ended"),
            eval_score_before=self.before.get("eval_score"),
            eval_ended_before=self.before.get("eval_ended"),
            advantage=self.config.advantage,
            beta=self.config.beta,
            rollouts=self.periods,
            steps_per_rollout=self.steps_per_period,
            final_dir=str(exported) if exported else None,
            tokenizer=str(self.start.tokenizer_source),
            reward_plot=str(plot) if plot else None,
            prompts={name: len(prompts) for name, (prompts, _) in self.splits.items()},
            epochs=self.stream.epochs,
            skipped_prompts={name: dict(skipped) for name, (_, skipped) in self.splits.items()},
        )


def ppo(config: PPOConfig, *, resume: bool = False, overwrite: bool = False) -> PPOResult:
    """Run (or with ``resume`` continue) PPO (Llama 2 §3.2.3); see :func:`herd.train.loop.train`."""
    return cast(PPOResult, train(config, PPOObjective, resume=resume, overwrite=overwrite))
