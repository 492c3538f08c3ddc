"""Direct preference optimisation (Llama 3 §4.1.4) as an :class:`~herd.train.objective.Objective` of the one trainer.

``dpo(config)`` trains the checkpoint ``init`` on preference pairs with the
trainer every herd run uses (:func:`herd.train.loop.train`), so checkpoints,
exact resume, FSDP/TP, bad-step handling, crash restarts and metrics are
pretraining's. What is particular to DPO:

* **Start**: the weights, tokenizer and chat format of ``init``, chosen as for
  SFT (:class:`herd.posttrain.config.Start`), trained in fp32 (bf16 autocast on
  a GPU).
* **Reference**: DPO compares the policy's log-probabilities with those of the
  initial model. They are computed once, before the first step, in one pass
  without gradients over every training and held-out pair
  (:meth:`DPOObjective.prepare_run`), and written atomically to
  ``OUTPUT/reference_logps.safetensors``; a resumed or restarted run reads them
  back (when the data, ``init`` and numerics they were computed for are the
  same). No second model is held while training: the memory of a DPO step is
  that of an SFT step.
* **Data** (:mod:`herd.posttrain.data`): each row of ``data.train`` is a pair
  ``{prompt | messages, chosen, rejected}`` or a ranking (every ordered pair of
  its responses is a pair). Both responses are rendered after the prompt in the
  chat format; their log-probabilities count the response tokens only. With
  ``variant = "llama3"`` the header and end-of-turn (termination) tokens are
  masked out of both ("we mask out special formatting tokens including header
  and termination tokens", Llama 3 §4.1.4); ``"standard"`` keeps the token that
  ends the turn, as DPO (Rafailov et al. 2023) and TRL do. A pair's two
  sequences are packed next to each other into rows of ``data.seq_len`` tokens,
  each sequence its own document (attention stays inside it and its positions
  start at 0, so it is computed as it would be alone); rows are filled greedily
  with whole pairs. A step is ``train.batch_tokens / data.seq_len`` rows (its
  number of pairs varies with their lengths), ``train.micro_batch_size`` rows
  per forward pass. Pairs longer than a row, and rows that cannot be used, are
  counted by reason and skipped; ``data.max_pairs`` and ``data.max_val_pairs``
  keep a file's first pairs. Each epoch visits the pairs in a fresh order
  (:class:`~herd.posttrain.data.EpochStream`), whose position is saved with
  every checkpoint, so a resumed run sees exactly the pairs an uninterrupted
  one would.
* **Loss** (:func:`herd.posttrain.losses.dpo_loss`): the mean over the step's
  pairs of ``−log σ(β((log π(y_c) − log π_ref(y_c)) − (log π(y_r) − log π_ref(y_r))))``
  with β = ``beta`` (0.1), plus, for ``llama3``, 0.2 × the mean negative
  log-likelihood of the chosen responses' tokens (Llama 3 §4.1.4; the NLL is
  normalised over the chosen tokens of the whole step, as TRL's ``sft`` loss
  term is over its batch). Both are exact for the global step however it is
  split over micro-batches and processes: the trainer divides by the step's
  pairs, and each micro-batch's NLL is scaled by the step's pairs over its
  chosen tokens. Log-probabilities come from the final hidden states through
  :func:`~herd.posttrain.losses.chunked_token_logprobs`, so the logits of a
  49,152- or 128,256-id vocabulary are never held for more than a chunk of
  positions.
* **Logged** each step and on the held-out pairs (``eval_*``): the loss, the
  implicit rewards ``β(log π − log π_ref)`` of chosen and rejected responses,
  their margin, the reward accuracy (pairs whose chosen reward is strictly
  higher) and the chosen and rejected log-probabilities. The held-out values
  at step 0 (the policy is the reference: margin 0, accuracy 0, preference
  loss log 2) are reported as ``*_before``.
* **Output**: ``OUTPUT/final/``, the weights in herd's Hugging Face layout
  with the tokenizer's files (transformers' ``AutoModelForCausalLM`` and
  ``AutoTokenizer`` load it alone), ``summary.json`` with the held-out
  accuracy and margin before and after and the skipped rows by reason, and
  ``rewards.png``, the reward margin and accuracy against step on the
  training and held-out pairs.

Llama 3 runs DPO for six rounds, each on the preference data collected with the
previous round's model, and averages the models of runs with different data or
hyperparameters (§4.1.5, ``herd average``); a run here is one such training.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any, Literal, cast

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from herd.checkpoint.base import tensor_names
from herd.errors import InputError
from herd.io.atomic import atomic_file
from herd.model.build import empty_model
from herd.model.cross_entropy import IGNORE_INDEX
from herd.model.transformer import Transformer
from herd.posttrain.config import SFTConfig, SFTDataConfig, SFTOptimConfig, Start
from herd.posttrain.curves import Panel, plot_curves
from herd.posttrain.data import (
    EpochStream,
    PairExample,
    SkipCounts,
    next_token_targets,
    read_preferences,
    render_pairs,
)
from herd.posttrain.losses import DPO_BETA, DPO_NLL_WEIGHT, chunked_token_logprobs, dpo_loss
from herd.posttrain.sft import FINAL_DIR
from herd.train.init import load_init_weights
from herd.train.loop import train
from herd.train.metrics import read_metrics
from herd.train.objective import (
    LossTerms,
    Objective,
    Placement,
    RunResult,
    batch_layout,
    decoder,
)

#: The reference log-probabilities in the run directory: a (pairs, 2) float32 tensor per split.
REFERENCE_FILE = "reference_logps.safetensors"
#: The implicit rewards' margin and accuracy against step, on the training and held-out pairs.
REWARD_PLOT = "rewards.png"
SPLITS = ("train", "val")

# ---- the config ------------------------------------------------------------------------------------


@dataclass
class DPODataConfig(SFTDataConfig):
    """The preference pairs (JSON Lines or Parquet, :mod:`herd.posttrain.data`) and how they are packed.

    ``seq_len`` is the length of a packed row; a pair (prompt + chosen and
    prompt + rejected) must fit in one. The papers give no number of epochs for
    DPO: one pass over each round's preferences.
    """

    epochs: int = 1
    max_pairs: int = 0  # use the file's first pairs up to this many; 0: all
    max_val_pairs: int = 0  # the same for data.val


@dataclass
class DPOOptimConfig(SFTOptimConfig):
    """AdamW at Llama 3's DPO learning rate 1e-5 (§4.1.4), weight decay 0.1."""

    lr: float = 1e-5


@dataclass
class DPOConfig(SFTConfig):
    """A DPO run (:mod:`herd.posttrain.dpo`): SFT's sections and keys, plus ``beta``, ``variant`` and the pair limits.

    ``init``, ``tokenizer``, ``chat_format``, ``data.train``/``val``/``seq_len``/
    ``epochs`` and the schedule mean what they mean for SFT. ``beta``: DPO's β
    (Llama 3: 0.1). ``variant``: ``llama3`` masks header and end-of-turn tokens
    out of the log-probabilities and adds the NLL of the chosen response with
    weight 0.2; ``standard`` is plain DPO.
    """

    out_dir: str = "runs/dpo"
    optim: DPOOptimConfig = field(default_factory=DPOOptimConfig)
    data: DPODataConfig = field(default_factory=DPODataConfig)
    beta: float = DPO_BETA
    variant: Literal["llama3", "standard"] = "llama3"

    @property
    def nll_weight(self) -> float:
        """The weight of the chosen responses' NLL: Llama 3's 0.2, or 0 for plain DPO."""
        return DPO_NLL_WEIGHT if self.variant == "llama3" else 0.0

    def checks(self) -> list[tuple[bool, str]]:
        """SFT's checks (the preference file named first), then β and the pair limits."""
        return [
            (bool(self.data.train), "data.train must name the training preferences (a .jsonl file)"),
            *super().checks(),
            (self.beta > 0, "beta must be positive"),
            (self.data.max_pairs >= 0, "data.max_pairs must be >= 0 (0: every pair)"),
            (self.data.max_val_pairs >= 0, "data.max_val_pairs must be >= 0 (0: every pair)"),
        ]


# ---- the data --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairSplit:
    """One file of preference pairs, rendered: per pair, both sequences end to end, and what was skipped.

    ``tokens[i]`` is prompt + chosen then prompt + rejected (``chosen_len[i]``
    ids, then the rest); ``targets[i]`` the next-token targets of each
    sequence (``IGNORE_INDEX`` outside the response: prompt, masked tokens, a
    sequence's last position); ``chosen_tokens[i]`` the chosen response's
    targets.
    """

    path: str
    tokens: list[torch.Tensor]
    targets: list[torch.Tensor]
    chosen_len: list[int]
    chosen_tokens: torch.Tensor
    skipped: SkipCounts

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def lengths(self) -> list[int]:
        """Tokens of each pair (both sequences)."""
        return [len(t) for t in self.tokens]

    def fingerprint(self) -> str:
        """A digest of the rendered pairs (tokens and targets): the same exactly when the data is."""
        digest = hashlib.sha256()
        for tokens, targets, split in zip(self.tokens, self.targets, self.chosen_len, strict=True):
            digest.update(tokens.numpy().tobytes() + targets.numpy().tobytes() + split.to_bytes(4, "little"))
        return digest.hexdigest()


def read_pairs(path: str, start: Start, seq_len: int, max_pairs: int, *, mask_special: bool) -> PairSplit:
    """Read and render the preference pairs of ``path`` (its first ``max_pairs``; 0: all).

    A sequence longer than the model's context, or a pair longer than
    ``seq_len``, is skipped as "too long". An :class:`InputError` naming the
    file when no pair is usable.
    """
    skipped = SkipCounts()
    preferences = chain.from_iterable(group.preferences() for group in read_preferences(path, skipped))
    max_len = min(seq_len, start.model_config.max_seq_len)
    tokens, targets, chosen_len, chosen_tokens = [], [], [], []
    for pair in render_pairs(start.chat, preferences, max_len, skipped, mask_special=mask_special):
        if len(pair.chosen_ids) + len(pair.rejected_ids) > seq_len:
            skipped["too long"] += 1
            continue
        tokens.append(torch.tensor(pair.chosen_ids + pair.rejected_ids))
        targets.append(torch.tensor(_targets(pair)))
        chosen_len.append(len(pair.chosen_ids))
        chosen_tokens.append(sum(pair.chosen_mask))
        if len(tokens) == max_pairs:
            break
    if not tokens:
        raise InputError(f"{path}: no preference pair fits in data.seq_len {seq_len} tokens: {skipped}")
    return PairSplit(path, tokens, targets, chosen_len, torch.tensor(chosen_tokens), skipped)


def _targets(pair: PairExample) -> list[int]:
    return next_token_targets(pair.chosen_ids, pair.chosen_mask) + next_token_targets(
        pair.rejected_ids, pair.rejected_mask
    )


def pack_pairs(
    upcoming: Iterable[int], lengths: Sequence[int], seq_len: int, rows: int | None = None
) -> list[list[int]]:
    """The pairs of ``upcoming``, in order, packed greedily into rows of at most ``seq_len`` tokens.

    A pair that does not fit in the current row starts the next one. With
    ``rows``, packing stops before the pair that would start row ``rows + 1``
    (``upcoming`` may be endless); without, every pair is packed.
    """
    packed: list[list[int]] = []
    used = seq_len
    for pair in upcoming:
        if used + lengths[pair] > seq_len:
            if len(packed) == rows:
                break
            packed.append([])
            used = 0
        packed[-1].append(pair)
        used += lengths[pair]
    return packed


@dataclass(frozen=True)
class PairBatch:
    """Rows of packed pairs for one forward pass.

    ``tokens``, ``targets`` and ``document_ids`` are (rows, width), ``width``
    the longest row; the chosen sequence of the batch's ``j``-th pair is
    document ``2j``, its rejected one ``2j + 1`` and padding ``2 × pairs``.
    ``pairs`` indexes the split (and its reference log-probabilities).
    ``nll_scale`` is the step's pairs over its chosen tokens, which turns a
    summed NLL into its share of the step's mean per chosen token, per pair.
    """

    tokens: torch.Tensor
    targets: torch.Tensor
    document_ids: torch.Tensor
    pairs: torch.Tensor
    nll_scale: float = 0.0

    @property
    def documents(self) -> int:
        """Documents of the batch: two per pair and the padding."""
        return 2 * len(self.pairs) + 1


def collate(
    split: PairSplit, rows: Sequence[Sequence[int]], pad_id: int, nll_scale: float = 0.0
) -> PairBatch:
    """Pack the pairs of ``rows`` (indices into ``split``) into a :class:`PairBatch`."""
    width = max(sum(len(split.tokens[i]) for i in row) for row in rows)
    pairs = [i for row in rows for i in row]
    tokens = torch.full((len(rows), width), pad_id, dtype=torch.long)
    targets = torch.full_like(tokens, IGNORE_INDEX)
    documents = torch.full_like(tokens, 2 * len(pairs))
    j = 0
    for r, row in enumerate(rows):
        start = 0
        for i in row:
            end = start + len(split.tokens[i])
            tokens[r, start:end] = split.tokens[i]
            targets[r, start:end] = split.targets[i]
            documents[r, start : start + split.chosen_len[i]] = 2 * j
            documents[r, start + split.chosen_len[i] : end] = 2 * j + 1
            start, j = end, j + 1
    return PairBatch(tokens, targets, documents, torch.tensor(pairs), nll_scale)


# ---- the model -------------------------------------------------------------------------------------


class SequenceLogprobs(nn.Module):
    """A decoder whose forward gives the summed log-probability of each packed document's targets.

    The trainer trains ``transformer``; the forward runs through this module,
    so DDP and FSDP see it, and projects only the positions with a target, a
    chunk at a time (:func:`~herd.posttrain.losses.chunked_token_logprobs`).
    """

    def __init__(self, transformer: Transformer) -> None:
        super().__init__()
        self.transformer = transformer

    def forward(
        self, tokens: torch.Tensor, document_ids: torch.Tensor, targets: torch.Tensor, documents: int
    ) -> torch.Tensor:
        """fp32 (documents,): per document id, the sum of ``log p(target)`` over its positions."""
        hidden = self.transformer.hidden_states(tokens, document_ids=document_ids)
        per_token = chunked_token_logprobs(hidden, self.transformer.output.weight, targets)
        return per_token.new_zeros(documents).index_add(0, document_ids.flatten(), per_token.flatten())


# ---- the objective -----------------------------------------------------------------------------------


@dataclass
class DPOResult(RunResult):
    """What a finished DPO run reports (also written to ``<out_dir>/summary.json``).

    ``eval_*`` are the held-out metrics after training, ``eval_*_before``
    those at step 0 (the policy is the reference: margin 0, accuracy 0).
    ``pairs`` and ``skipped_rows`` are per file (``train``, ``val``).
    """

    eval_loss: float | None = None
    eval_reward_accuracy: float | None = None
    eval_reward_margin: float | None = None
    eval_loss_before: float | None = None
    eval_reward_accuracy_before: float | None = None
    eval_reward_margin_before: float | None = None
    beta: float = DPO_BETA
    variant: str = ""
    final_dir: str | None = None
    tokenizer: str | None = None
    reference_logps: str | None = None
    reward_plot: str | None = None
    pairs: dict[str, int] = field(default_factory=dict)
    epochs: float = 0.0
    skipped_rows: dict[str, dict[str, int]] = field(default_factory=dict)


class DPOObjective(Objective[PairBatch]):
    """DPO of ``init`` on the preference pairs of ``data.train``; see the module docstring."""

    name = "dpo"
    resume_keys = (
        "init",
        "tokenizer",
        "chat_format",
        "variant",
        "data.train",
        "data.seq_len",
        "data.max_pairs",
        "train.seed",
        "train.batch_tokens",
    )
    val_metric = "eval_loss"

    def __init__(self, config: DPOConfig, placement: Placement) -> None:
        super().__init__(config, placement)
        self.config: DPOConfig = config
        data = config.data
        self.start = start = Start.of_run(config)
        self.model_config = start.model_config
        mask = config.variant == "llama3"
        self.splits = {
            "train": read_pairs(data.train, start, data.seq_len, data.max_pairs, mask_special=mask)
        }
        if data.val:
            self.splits["val"] = read_pairs(
                data.val, start, data.seq_len, data.max_val_pairs, mask_special=mask
            )
        self.pad_id = start.tokenizer.eos_id or 0
        self.seq_len = data.seq_len
        self.layout = batch_layout(config.train, self.seq_len, placement)
        self.sequences_per_step = self.layout.sequences
        self.lengths = self.splits["train"].lengths
        self.stream = EpochStream(len(self.lengths), config.train.seed)
        self.steps = config.train.steps or self._steps_for_epochs()
        self.fingerprint = self.splits["train"].fingerprint()
        self.reference: dict[str, torch.Tensor] = {}
        self.before: dict[str, float] = {}

    def _steps_for_epochs(self) -> int:
        """Steps that draw ``data.epochs`` passes over the pairs (the last one rounded up), found by packing them."""
        stream = EpochStream(len(self.lengths), self.config.train.seed)
        steps = 0
        while stream.epochs < self.config.data.epochs:
            rows = pack_pairs(stream.upcoming(), self.lengths, self.seq_len, self.layout.sequences)
            stream.take(sum(map(len, rows)))
            steps += 1
        return steps

    # ---- the model -------------------------------------------------------------------------------

    def build_model(self, device: torch.device | str) -> nn.Module:
        """A :class:`SequenceLogprobs` on a decoder of the init checkpoint's shape; weights not set."""
        return SequenceLogprobs(empty_model(self.model_config, device))

    def init_weights(self, model: nn.Module, device: torch.device) -> None:
        """The weights of ``init``, in fp32; a sharded model keeps its slices of them."""
        load_init_weights(model, device, self.start.init, decoder(model))

    def prepare_run(self, model: nn.Module, out_dir: Path) -> None:
        """The reference log-probabilities of every pair: read from ``out_dir`` if computed for this run, else computed.

        Every process computes them (as every process validates), so all run the
        same forward passes, whatever the sharding; the main process writes
        them. A split is read back only if every process finds it computed for
        the same data, ``init`` and numerics.
        """
        runtime = self.placement.runtime
        path = out_dir / REFERENCE_FILE
        keys = {name: self._reference_key(name, split) for name, split in self.splits.items()}
        saved = _read_reference(path, keys)
        lacking = runtime.sum(torch.tensor([float(name not in saved) for name in self.splits])).tolist()
        missing = [name for name, n in zip(self.splits, lacking, strict=True) if n]
        self.reference = {name: saved[name] for name in self.splits if name not in missing}
        if missing:
            self.reference |= self._compute_reference(model, missing)
            if runtime.is_main:
                _write_reference(path, self.reference, keys)
        if "val" in self.splits:
            reference = self.reference["val"]
            self.before = self._metrics(reference, reference, self.splits["val"].chosen_tokens)

    def _reference_key(self, name: str, split: PairSplit) -> str:
        """What the reference log-probabilities of ``split`` depend on: its pairs, ``init`` and the numerics."""
        dev = self.device.type
        dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else torch.float32
        init = self.start.init
        files = sorted(init.iterdir()) if init.is_dir() else [init]
        stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files if p.is_file()]
        parts = [name, split.fingerprint(), str(init.resolve()), stats, dev, str(dtype)]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()

    def _compute_reference(self, model: nn.Module, names: Sequence[str]) -> dict[str, torch.Tensor]:
        """(pairs, 2) log-probabilities of the chosen and rejected sequences of each split in ``names``."""
        return {name: self._pair_logprobs(model, self.splits[name]) for name in names}

    # ---- data ------------------------------------------------------------------------------------

    def micro_batches(self) -> list[PairBatch]:
        """The next ``sequences_per_step`` rows of pairs from the epoch stream; this rank's share in micro-batches."""
        rows = pack_pairs(self.stream.upcoming(), self.lengths, self.seq_len, self.layout.sequences)
        taken = self.stream.take(sum(map(len, rows)))
        chosen_tokens = int(self.splits["train"].chosen_tokens[taken].sum())
        scale = len(taken) / max(chosen_tokens, 1)
        return [collate(self.splits["train"], mine, self.pad_id, scale) for mine in self.layout.split(rows)]

    def count(self, batch: PairBatch) -> int:
        """The pairs of ``batch``."""
        return len(batch.pairs)

    def state_dict(self) -> dict[str, Any]:
        return self.stream.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stream.load_state_dict(state)

    # ---- loss, validation, export -----------------------------------------------------------------

    def _logprobs(self, model: nn.Module, batch: PairBatch) -> torch.Tensor:
        """(pairs, 2) fp32 log-probabilities of each pair's chosen and rejected response."""
        dev = self.device
        sums = model(batch.tokens.to(dev), batch.document_ids.to(dev), batch.targets.to(dev), batch.documents)
        return sums[:-1].view(-1, 2)

    def loss(self, model: nn.Module, batch: PairBatch) -> LossTerms:
        """Summed DPO loss of the batch's pairs plus its share of the step's NLL term; the logged sums."""
        policy = self._logprobs(model, batch)
        reference = self.reference["train"][batch.pairs].to(policy.device)
        terms = dpo_loss(policy[:, 0], policy[:, 1], reference[:, 0], reference[:, 1], self.config.beta)
        pairs = len(batch.pairs)
        nll = -policy[:, 0].sum() * batch.nll_scale
        margins = terms.reward_margins
        stats = {
            "preference_loss": terms.preference_loss.item() * pairs,
            "nll": nll.item(),
            "reward_margin": margins.sum().item(),
            "reward_accuracy": (margins > 0).sum().item(),
            "rewards_chosen": terms.chosen_rewards.sum().item(),
            "rewards_rejected": terms.rejected_rewards.sum().item(),
            "logps_chosen": policy[:, 0].detach().sum().item(),
            "logps_rejected": policy[:, 1].detach().sum().item(),
        }
        return LossTerms(terms.preference_loss * pairs + self.config.nll_weight * nll, stats)

    def _pair_logprobs(self, model: nn.Module, split: PairSplit) -> torch.Tensor:
        """(pairs, 2) log-probabilities of every pair of ``split``, in file order, ``micro_batch_size`` rows a pass."""
        rows = pack_pairs(range(len(split)), split.lengths, self.seq_len)
        mb = self.config.train.micro_batch_size
        out = torch.empty(len(split), 2)
        for i in range(0, len(rows), mb):
            batch = collate(split, rows[i : i + mb], self.pad_id)
            out[batch.pairs] = self._logprobs(model, batch).float().cpu()
        return out

    def _metrics(
        self, policy: torch.Tensor, reference: torch.Tensor, chosen_tokens: torch.Tensor
    ) -> dict[str, float]:
        """The held-out metrics of (pairs, 2) policy log-probabilities against the reference ones."""
        terms = dpo_loss(
            policy[:, 0],
            policy[:, 1],
            reference[:, 0],
            reference[:, 1],
            self.config.beta,
            nll_weight=self.config.nll_weight,
            chosen_tokens=chosen_tokens,
        )
        return {
            "eval_loss": terms.loss.item(),
            "eval_reward_accuracy": terms.reward_accuracy.item(),
            "eval_reward_margin": terms.reward_margins.mean().item(),
            "eval_rewards_chosen": terms.chosen_rewards.mean().item(),
            "eval_rewards_rejected": terms.rejected_rewards.mean().item(),
            "eval_logps_chosen": policy[:, 0].mean().item(),
            "eval_logps_rejected": policy[:, 1].mean().item(),
        }

    def validate(self, model: nn.Module) -> dict[str, float]:
        """The held-out loss, reward accuracy and margin, rewards and log-probabilities; empty without ``data.val``."""
        if "val" not in self.splits:
            return {}
        split = self.splits["val"]
        return self._metrics(self._pair_logprobs(model, split), self.reference["val"], split.chosen_tokens)

    def export(self, state: dict[str, torch.Tensor], out_dir: Path) -> Path:
        """``out_dir/final``: herd's Hugging Face layout with the tokenizer's files (:meth:`Start.write_final`)."""
        tensors = ((name, state[f"transformer.{name}"]) for name in tensor_names(self.model_config))
        return self.start.write_final(tensors, out_dir / FINAL_DIR)

    def result(
        self, figures: dict[str, Any], validation: dict[str, float], exported: Path | None
    ) -> DPOResult:
        out_dir = Path(self.config.out_dir)
        plot = None
        if self.placement.runtime.is_main:
            plot = plot_rewards(read_metrics(out_dir / "metrics.jsonl"), self.before, out_dir / REWARD_PLOT)
        return DPOResult(
            **figures,
            eval_loss=validation.get("eval_loss"),
            eval_reward_accuracy=validation.get("eval_reward_accuracy"),
            eval_reward_margin=validation.get("eval_reward_margin"),
            eval_loss_before=self.before.get("eval_loss"),
            eval_reward_accuracy_before=self.before.get("eval_reward_accuracy"),
            eval_reward_margin_before=self.before.get("eval_reward_margin"),
            beta=self.config.beta,
            variant=self.config.variant,
            final_dir=str(exported) if exported else None,
            tokenizer=str(self.start.tokenizer_source),
            reference_logps=str(out_dir / REFERENCE_FILE),
            reward_plot=str(plot) if plot else None,
            pairs={name: len(split) for name, split in self.splits.items()},
            epochs=self.stream.epochs,
            skipped_rows={name: dict(split.skipped) for name, split in self.splits.items()},
        )


#: DPO's plotted figures: the implicit rewards' margin and accuracy (Llama 3 §4.1.4).
REWARD_PANELS = (
    Panel("reward_margin", "reward margin", "chosen minus rejected reward, β(log π − log π_ref)"),
    Panel("reward_accuracy", "reward accuracy", "pairs whose chosen reward is higher"),
)


def plot_rewards(records: Sequence[dict[str, Any]], before: dict[str, float], dst: Path) -> Path | None:
    """The implicit rewards' margin and accuracy against step: each training step's pairs, and the held-out
    pairs at step 0 (``before``) and at each validation; None when no step was logged."""
    return plot_curves(
        records, before, REWARD_PANELS, dst, train_label="training pairs", held_label="held-out pairs"
    )


def _read_reference(path: Path, keys: dict[str, str]) -> dict[str, torch.Tensor]:
    """The splits of ``path`` computed for ``keys`` (split → key); none if the file is missing or unreadable."""
    try:
        with safe_open(path, framework="pt") as f:
            saved = f.metadata() or {}
            return {name: f.get_tensor(name) for name, key in keys.items() if saved.get(name) == key}
    except (OSError, SafetensorError):
        return {}


def _write_reference(path: Path, reference: dict[str, torch.Tensor], keys: dict[str, str]) -> None:
    """Write ``reference`` (split → (pairs, 2)) atomically, each split tagged with its key."""
    with atomic_file(path) as tmp:
        save_file({name: t.contiguous() for name, t in reference.items()}, str(tmp), metadata=keys)


def dpo(config: DPOConfig, *, resume: bool = False, overwrite: bool = False) -> DPOResult:
    """Run (or with ``resume`` continue) DPO; see :func:`herd.train.loop.train`."""
    return cast(DPOResult, train(config, DPOObjective, resume=resume, overwrite=overwrite))
