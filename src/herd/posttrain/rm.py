"""Reward-model training (Llama 2 §3.2.2, Llama 3 §4.1.2) as an :class:`~herd.train.objective.Objective` of the one trainer.

``train_rm(config)`` trains a :class:`~herd.posttrain.reward_model.RewardModel`
with the trainer every herd run uses (:func:`herd.train.loop.train`), so
checkpoints, exact resume, FSDP/TP, bad-step handling, crash restarts and
metrics are pretraining's. What is particular to the reward model:

* **Start**: the decoder of ``init`` with its next-token head replaced by a
  new scalar head (:meth:`RewardModel.from_pretrained_lm`; Llama 2 starts from
  the chat model, Llama 3 from the pretrained checkpoint), trained in fp32
  (bf16 autocast on a GPU). The tokenizer and chat format are chosen as for
  SFT (:class:`herd.posttrain.config.Start`).
* **Data** (:mod:`herd.posttrain.data`): each row of ``data.train`` is a
  preference pair or a ranking of two or more responses (Llama 3 §4.2.1:
  edited > chosen > rejected). ``data.safety`` keeps every row, only those
  marked ``safety: true`` (the safety reward model) or only the others (the
  helpfulness one); Llama 2 trains the two models separately (§3.2.2). Each
  response is rendered after its prompt in the chat format, and all responses
  of a row are packed into one row of at most ``data.seq_len`` tokens, each
  response its own document (attention stays inside it, its positions start at
  0), so every response is scored exactly once, as it would be alone, at its
  last token. Rows that cannot be used (unreadable, too long, left out by
  ``data.safety``) are counted by reason. ``data.max_pairs`` keeps a sample
  of the rows drawn from ``train.seed`` (a file may be sorted by source). Each epoch visits the rows in a fresh order
  (:class:`~herd.posttrain.data.EpochStream`); the position in that stream is
  saved with every checkpoint, so a resumed run sees exactly the rows an
  uninterrupted one would.
* **Loss**: ``−log σ(r(x, y_c) − r(x, y_r) − m(r))`` summed over every ordered
  pair of a row's responses (a pair row: one; a ranking of n: n(n−1)/2), with
  the margin ``m`` of the pair's rating (Llama 2 Table 27: ``margin = "small"``
  or ``"large"``; ``"none"`` is Llama 3's loss, and a ranked pair has no rating,
  so no margin). A step's loss is that sum over its pairs, counted over every
  micro-batch and process, divided by their number (:mod:`herd.train.objective`).
* **Validation** on ``data.val``, before training (the initial weights) and
  after: the mean loss (``eval_loss``), the accuracy (chosen scored strictly
  higher) overall and per rating (``eval_accuracy/<rating>``, Llama 2
  Table 8's layout), and the mean and spread of the chosen and rejected
  scores, drawn as histograms in ``OUTPUT/scores.png``.
* **Output**: ``OUTPUT/final/``, a ``LlamaForSequenceClassification``
  directory with the tokenizer (:meth:`RewardModel.save_pretrained`; transformers'
  ``AutoModelForSequenceClassification`` loads it alone and gives herd's
  scores), and ``summary.json`` with the accuracy table and the skipped rows.

**The pad id** that the export records (transformers scores each row at its
rightmost token that is not the pad id) is the tokenizer's padding token if
it has one (Llama 3: ``<|finetune_right_pad_id|>``), else its BOS token, which
no rendered answer ends with; a data set where one does is refused.

**Defaults** are Llama 2's recipe (docs/spec.md §5.2): one epoch, peak
learning rate 1e-5 (5e-6 for 70B), cosine decay to 10% of it after a warmup
over 3% of the steps, 512 pairs per step, the small margins.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import torch
from torch import nn

from herd.errors import ConfigError, InputError
from herd.io.plot import pyplot, save_png
from herd.posttrain.config import Start
from herd.posttrain.data import (
    RATINGS,
    EpochStream,
    Preference,
    PreferenceGroup,
    SkipCounts,
    SkippedRow,
    read_preferences,
    render_pairs,
)
from herd.posttrain.losses import rating_margins, reward_accuracy, reward_loss
from herd.posttrain.reward_model import RewardModel
from herd.tokenizer.base import Tokenizer
from herd.tokenizer.chat import ChatFormat
from herd.train.config import OptimConfig, RunConfig, ScheduleConfig, TrainConfig
from herd.train.loop import train
from herd.train.objective import (
    LossTerms,
    Objective,
    Placement,
    RunResult,
    batch_layout,
    copy_weights,
    is_meta,
)

FINAL_DIR = "final"
SCORE_PLOT = "scores.png"
#: The document id of the padding at the end of a packed row (response d of a row is document d).
PADDING_DOCUMENT = -1
#: Tokens reserved for padding, by name, in the order they are looked for (Llama 3 reserves the first).
PAD_TOKENS = ("<|finetune_right_pad_id|>", "<pad>", "<|pad|>", "[PAD]")
#: Llama 2's preference levels as Table 8 heads its columns, and its average.
LEVEL_NAMES = {
    "significantly_better": "significantly better",
    "better": "better",
    "slightly_better": "slightly better",
    "negligibly_better": "negligibly better / unsure",
    "all": "all",
}

# ---- the config ------------------------------------------------------------------------------------


@dataclass
class RMDataConfig:
    """The preference rows (JSON Lines or Parquet, :mod:`herd.posttrain.data`) and how they are used."""

    train: str = ""
    val: str = ""  # empty: no validation
    seq_len: int = 8192  # tokens of one packed row: all of a row's responses, each after its prompt
    epochs: int = 1  # passes over the training rows when train.steps is 0 (Llama 2 §3.2.2)
    # The rows marked safety: true: kept with the others, the only ones kept, or left out.
    safety: Literal["all", "only", "exclude"] = "all"
    max_pairs: int = 0  # a sample of the rows (drawn from train.seed) up to this many pairs; 0: every row
    max_val_pairs: int = 0  # the same for data.val


@dataclass
class RMOptimConfig(OptimConfig):
    """AdamW as in pretraining, at Llama 2's reward-model peak learning rate 1e-5 (§3.2.2; 5e-6 for 70B)."""

    lr: float = 1e-5


@dataclass
class RMScheduleConfig(ScheduleConfig):
    """Warmup over 3% of the steps (Llama 2 §3.2.2), then cosine to 10% of the peak."""

    warmup_steps: int = 0
    warmup_ratio: float = 0.03


@dataclass
class RMTrainConfig(TrainConfig):
    """512 rows (pairs) of ``data.seq_len`` tokens per step (Llama 2 §3.2.2); ``steps`` 0: ``data.epochs`` passes."""

    steps: int = 0
    batch_tokens: int = 512 * 8192


@dataclass
class RMConfig(RunConfig):
    """A reward-model run (:mod:`herd.posttrain.rm`): the trainer's sections, ``init``, the tokenizer, ``margin`` and ``data``.

    ``init``, ``tokenizer`` and ``chat_format`` mean what they mean for SFT
    (:class:`herd.posttrain.config.SFTConfig`). ``margin``: the rating margins
    of Llama 2 Table 27 (``small``, ``large``) or none (Llama 3 §4.1.2).
    """

    out_dir: str = "runs/rm"
    optim: RMOptimConfig = field(default_factory=RMOptimConfig)
    schedule: RMScheduleConfig = field(default_factory=RMScheduleConfig)
    train: RMTrainConfig = field(default_factory=RMTrainConfig)
    init: str = ""
    tokenizer: str = ""
    chat_format: Literal["auto", "llama2", "llama3", "jinja"] = "auto"
    margin: Literal["none", "small", "large"] = "small"
    data: RMDataConfig = field(default_factory=RMDataConfig)

    def checks(self) -> list[tuple[bool, str]]:
        """The trainer's checks, then the start, the data and the run length."""
        return [
            *super().checks(),
            (
                bool(self.init),
                "init must name the checkpoint to start from (a path, or smollm2-135m-instruct)",
            ),
            (bool(self.data.train), "data.train must name the training preferences (a .jsonl file)"),
            (self.data.seq_len >= 2, "data.seq_len must be at least 2"),
            (self.data.epochs > 0, "data.epochs must be positive"),
            (self.data.max_pairs >= 0, "data.max_pairs must be >= 0 (0: every row)"),
            (self.data.max_val_pairs >= 0, "data.max_val_pairs must be >= 0 (0: every row)"),
            (self.train.steps >= 0, "train.steps must be >= 0 (0: data.epochs passes over the data)"),
        ]


# ---- the data --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoredRow:
    """A preference row rendered for the reward model: each response after its prompt (token ids), best first.

    ``pairs`` are the ordered pairs (better, worse) of indices into
    ``sequences`` that the loss compares; ``rating`` is the pair's Llama 2
    rating (None for a ranking or an unrated pair).
    """

    sequences: tuple[tuple[int, ...], ...]
    pairs: tuple[tuple[int, int], ...]
    rating: str | None = None

    @property
    def length(self) -> int:
        """Tokens of the packed row."""
        return sum(len(s) for s in self.sequences)


@dataclass(frozen=True)
class PreferenceSplit:
    """One file of preference rows, rendered: the rows used, their pairs, and what was skipped by reason."""

    path: str
    rows: list[ScoredRow]
    skipped: SkipCounts

    @property
    def pairs(self) -> int:
        return sum(len(row.pairs) for row in self.rows)

    def by_rating(self) -> dict[str, int]:
        """Pairs per Llama 2 rating and under ``all`` (a ranking's pairs count under ``all`` only)."""
        counts = dict.fromkeys(RATINGS, 0)
        for row in self.rows:
            if row.rating is not None:
                counts[row.rating] += len(row.pairs)
        return counts | {"all": self.pairs}


def keep_for_safety(group: PreferenceGroup, safety: str) -> None:
    """Skip ``group`` (:class:`SkippedRow`) when ``data.safety`` leaves it out: ``only`` keeps ``safety: true`` rows."""
    if safety == "only" and group.safety is not True:
        raise SkippedRow("not a safety row (data.safety = only)")
    if safety == "exclude" and group.safety is True:
        raise SkippedRow("safety row (data.safety = exclude)")


def render_row(fmt: ChatFormat, group: PreferenceGroup, seq_len: int, max_len: int) -> ScoredRow:
    """``group``'s responses, each rendered after the prompt (:func:`herd.posttrain.data.render_pair`), as one row.

    :class:`SkippedRow` when a response has over ``max_len`` tokens, the
    format refuses one, or all of them together exceed ``seq_len``.
    """
    neighbours = [
        Preference(group.prompt, better, worse, group.rating, group.safety)
        for better, worse in pairwise(group.responses)
    ]
    refused = SkipCounts()
    rendered = list(render_pairs(fmt, neighbours, max_len, refused))
    if refused:
        raise SkippedRow(next(iter(refused)))
    sequences = (rendered[0].chosen_ids, *(pair.rejected_ids for pair in rendered))
    row = ScoredRow(tuple(map(tuple, sequences)), tuple(group.pairs), group.rating)
    if row.length > seq_len:
        raise SkippedRow("too long", f"{row.length} tokens in one row > data.seq_len {seq_len}")
    return row


def read_split(
    path: str, fmt: ChatFormat, data: RMDataConfig, max_len: int, max_pairs: int, seed: int
) -> PreferenceSplit:
    """Read and render the preference rows of ``path`` that ``data.safety`` keeps.

    With ``max_pairs`` (0: every row), a sample: the rows in the order of a
    permutation drawn from ``seed``, rendered until they hold ``max_pairs``
    pairs (rows not drawn are neither rendered nor counted). An
    :class:`InputError` naming the file when no row is usable.
    """
    skipped = SkipCounts()
    kept: list[PreferenceGroup] = []
    for group in read_preferences(path, skipped):
        try:
            keep_for_safety(group, data.safety)
        except SkippedRow as exc:
            skipped[exc.reason] += 1
            continue
        kept.append(group)
    order = np.random.default_rng(seed).permutation(len(kept)) if max_pairs else range(len(kept))
    rows: list[ScoredRow] = []
    pairs = 0
    for i in order:
        if max_pairs and pairs >= max_pairs:
            break
        try:
            row = render_row(fmt, kept[i], data.seq_len, max_len)
        except SkippedRow as exc:
            skipped[exc.reason] += 1
            continue
        rows.append(row)
        pairs += len(row.pairs)
    if not rows:
        raise InputError(f"{path}: no preference row is usable: {skipped}")
    return PreferenceSplit(path, rows, skipped)


def fingerprint(rows: Sequence[ScoredRow]) -> str:
    """A digest of the rendered training rows (tokens, pairs, ratings): the same exactly when the data is."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(repr((row.sequences, row.pairs, row.rating)).encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class RewardBatch:
    """Rows packed for one forward pass, and the pairs whose scores the loss compares.

    ``tokens`` and ``document_ids`` are (rows, width), ``width`` the longest
    row's length; response ``d`` of a row is document ``d``, and shorter rows
    end in padding, document :data:`PADDING_DOCUMENT`;
    ``last_index`` (rows, k) the last token of each response (k the most
    responses of a row; unused entries 0). ``better`` and ``worse`` index the
    flattened (rows × k) scores, one entry per pair, with the pair's rating.
    """

    tokens: torch.Tensor
    document_ids: torch.Tensor
    last_index: torch.Tensor
    better: torch.Tensor
    worse: torch.Tensor
    ratings: tuple[str | None, ...]


def collate(rows: Sequence[ScoredRow], pad_id: int) -> RewardBatch:
    """Pack ``rows`` into a :class:`RewardBatch`, each response of a row its own document."""
    width = max(row.length for row in rows)
    k = max(len(row.sequences) for row in rows)
    tokens = torch.full((len(rows), width), pad_id, dtype=torch.long)
    documents = torch.empty((len(rows), width), dtype=torch.long)
    last_index = torch.zeros((len(rows), k), dtype=torch.long)
    better: list[int] = []
    worse: list[int] = []
    ratings: list[str | None] = []
    for r, row in enumerate(rows):
        start = 0
        for d, ids in enumerate(row.sequences):
            tokens[r, start : start + len(ids)] = torch.tensor(ids)
            documents[r, start : start + len(ids)] = d
            start += len(ids)
            last_index[r, d] = start - 1
        documents[r, start:] = PADDING_DOCUMENT
        better += [r * k + i for i, _ in row.pairs]
        worse += [r * k + j for _, j in row.pairs]
        ratings += [row.rating] * len(row.pairs)
    return RewardBatch(
        tokens, documents, last_index, torch.tensor(better), torch.tensor(worse), tuple(ratings)
    )


def pad_token_id(tokenizer: Tokenizer) -> int:
    """The reward model's pad id: the tokenizer's padding token (:data:`PAD_TOKENS`), else its BOS token."""
    for name in PAD_TOKENS:
        if name in tokenizer.special_tokens:
            return tokenizer.special_tokens[name]
    if tokenizer.bos_id is None:
        raise ConfigError(
            "the tokenizer has neither a padding nor a BOS token to pad reward-model batches with"
        )
    return tokenizer.bos_id


# ---- held-out scores ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeldOut:
    """The scores of every held-out pair (fp64, CPU): the better response's, the worse one's, the rating."""

    chosen: torch.Tensor
    rejected: torch.Tensor
    ratings: tuple[str | None, ...]

    def metrics(self, margin: str) -> dict[str, float]:
        """``eval_loss`` (with the run's margins), ``eval_accuracy`` overall and per rating, the scores' mean and std."""
        margins = rating_margins(self.ratings, margin)
        out = {"eval_loss": float(reward_loss(self.chosen, self.rejected, margins))}
        for level, (correct, total) in reward_accuracy(self.chosen, self.rejected, self.ratings).items():
            out["eval_accuracy" if level == "all" else f"eval_accuracy/{level}"] = correct / total
        for name, scores in (("chosen", self.chosen), ("rejected", self.rejected)):
            out[f"eval_{name}_mean"] = float(scores.mean())
            out[f"eval_{name}_std"] = float(scores.std(correction=0))
        return out


def plot_scores(before: HeldOut | None, after: HeldOut, dst: Path) -> Path:
    """Histograms of the chosen and rejected held-out scores, before training (if known) and after."""
    panels = [("before training", before), ("after training", after)] if before else [("after", after)]
    fig, axes = pyplot().subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, (title, held) in zip(axes[0], panels, strict=True):
        scores = torch.cat([held.chosen, held.rejected])
        bins = torch.linspace(float(scores.min()), float(scores.max()) + 1e-9, 31).tolist()
        ax.hist(held.chosen.tolist(), bins=bins, alpha=0.6, label="chosen")
        ax.hist(held.rejected.tolist(), bins=bins, alpha=0.6, label="rejected")
        accuracy = float((held.chosen > held.rejected).double().mean())
        ax.set_title(f"{title}: accuracy {100 * accuracy:.1f}% ({len(held.ratings)} pairs)")
        ax.set_xlabel("score")
        ax.set_ylabel("answers")
        ax.legend()
    fig.tight_layout()
    return save_png(fig, dst)


# ---- the objective -----------------------------------------------------------------------------------


@dataclass
class RMResult(RunResult):
    """What a finished reward-model run reports (also written to ``<out_dir>/summary.json``).

    ``accuracy`` is Llama 2 Table 8's layout: per rating and under ``all``,
    the held-out pairs and the accuracy before and after training (None where
    no pair has that rating). ``scores`` holds the held-out scores' mean and
    std (``chosen_mean``, ...) before and after. ``rows``, ``pairs`` and
    ``skipped_rows`` are per file (``train``, ``val``).
    """

    eval_accuracy: float | None = None
    eval_accuracy_before: float | None = None
    eval_loss: float | None = None
    accuracy: dict[str, dict[str, float | int | None]] = field(default_factory=dict)
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    score_plot: str | None = None
    margin: str = ""
    final_dir: str | None = None
    tokenizer: str | None = None
    pad_id: int | None = None
    rows: dict[str, int] = field(default_factory=dict)
    pairs: dict[str, int] = field(default_factory=dict)
    epochs: float = 0.0
    skipped_rows: dict[str, dict[str, int]] = field(default_factory=dict)


def _score_stats(metrics: dict[str, float]) -> dict[str, float]:
    return {
        key.removeprefix("eval_"): value for key, value in metrics.items() if key.endswith(("_mean", "_std"))
    }


class RewardObjective(Objective[RewardBatch]):
    """A reward model trained from ``init`` on the preferences of ``data.train``; see the module docstring."""

    name = "rm"
    resume_keys = (
        "init",
        "tokenizer",
        "chat_format",
        "margin",
        "data.train",
        "data.seq_len",
        "data.safety",
        "data.max_pairs",
        "train.seed",
        "train.batch_tokens",
    )
    val_metric = "eval_loss"

    def __init__(self, config: RMConfig, placement: Placement) -> None:
        super().__init__(config, placement)
        self.start = Start.of_run(config)
        self.model_config = self.start.model_config
        fmt = self.start.chat
        max_len = min(config.data.seq_len, self.model_config.max_seq_len)
        data = config.data
        seed = config.train.seed
        self.train_split = read_split(data.train, fmt, data, max_len, data.max_pairs, seed)
        self.val_split = (
            read_split(data.val, fmt, data, max_len, data.max_val_pairs, seed) if data.val else None
        )
        self.pad_id = pad_token_id(self.start.tokenizer)
        self._check_pad_id()
        self.seq_len = data.seq_len
        self.layout = batch_layout(config.train, self.seq_len, placement)
        self.sequences_per_step = self.layout.sequences
        rows = len(self.train_split.rows)
        self.steps = config.train.steps or math.ceil(data.epochs * rows / self.sequences_per_step)
        self.config: RMConfig = config
        self.fingerprint = fingerprint(self.train_split.rows)
        self.stream = EpochStream(rows, config.train.seed)
        self.before: HeldOut | None = None
        self.after: HeldOut | None = None

    def _check_pad_id(self) -> None:
        """Refuse a pad id that ends a rendered response: transformers would score the token before it."""
        for split in (self.train_split, self.val_split):
            if split is not None and any(s[-1] == self.pad_id for row in split.rows for s in row.sequences):
                piece = self.start.tokenizer.id_to_piece(self.pad_id)
                raise InputError(
                    f"{split.path}: a rendered response ends with token {self.pad_id} ({piece!r}), the id the "
                    "reward model pads with, so transformers could not find its last token"
                )

    # ---- the model -------------------------------------------------------------------------------

    def build_model(self, device: torch.device | str) -> nn.Module:
        """A :class:`RewardModel` of the init checkpoint's shape, with the run's pad id; weights not set."""
        return RewardModel(self.model_config, pad_id=self.pad_id, device=device)

    def init_weights(self, model: nn.Module, device: torch.device) -> None:
        """The decoder of ``init`` and a new scalar head drawn from ``train.seed``, in fp32; a sharded model keeps its slices."""
        if is_meta(model):
            model.to_empty(device=device)
            cast(RewardModel, model).transformer.reset_rope(device)
        init = self.start.init
        start = RewardModel.from_pretrained_lm(init, seed=self.config.train.seed, dtype=torch.float32)
        copy_weights(model, dict(start.named_parameters()), str(init))

    def prepare_run(self, model: nn.Module, out_dir: Path) -> None:
        """Score the held-out pairs with the initial weights: the "before" column of the accuracy table."""
        if self.val_split is not None:
            self.before = self._held_out(model)

    # ---- data ------------------------------------------------------------------------------------

    def micro_batches(self) -> list[RewardBatch]:
        """The next ``sequences_per_step`` rows of the epoch stream; this rank's share in micro-batches."""
        rows = [self.train_split.rows[i] for i in self.stream.take(self.sequences_per_step)]
        return [collate(mine, self.pad_id) for mine in self.layout.split(rows)]

    def count(self, batch: RewardBatch) -> int:
        """The pairs of ``batch``."""
        return len(batch.ratings)

    def state_dict(self) -> dict[str, Any]:
        return self.stream.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stream.load_state_dict(state)

    # ---- loss, validation, export -----------------------------------------------------------------

    def _pair_scores(self, model: nn.Module, batch: RewardBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """The scores (fp32) of each pair's better and worse response; every response is scored once."""
        dev = self.device
        scores = model(
            batch.tokens.to(dev), batch.last_index.to(dev), document_ids=batch.document_ids.to(dev)
        )
        flat = scores.float().flatten()
        return flat[batch.better.to(dev)], flat[batch.worse.to(dev)]

    def loss(self, model: nn.Module, batch: RewardBatch) -> LossTerms:
        """Summed ``−log σ(r_c − r_r − m(rating))`` of the batch's pairs; the pairs ranked right and the mean gap."""
        chosen, rejected = self._pair_scores(model, batch)
        margins = rating_margins(batch.ratings, self.config.margin, chosen.device)
        pairs = len(batch.ratings)
        stats = {
            "accuracy": float((chosen > rejected).sum()),
            "score_gap": float((chosen - rejected).detach().sum()),
        }
        return LossTerms(reward_loss(chosen, rejected, margins) * pairs, stats)

    def _held_out(self, model: nn.Module) -> HeldOut:
        """Score every pair of the validation file (each response once), ``train.micro_batch_size`` rows at a time."""
        assert self.val_split is not None
        rows = self.val_split.rows
        mb = self.config.train.micro_batch_size
        chosen, rejected, ratings = [], [], []
        for i in range(0, len(rows), mb):
            batch = collate(rows[i : i + mb], self.pad_id)
            better, worse = self._pair_scores(model, batch)
            chosen.append(better.double().cpu())
            rejected.append(worse.double().cpu())
            ratings += batch.ratings
        return HeldOut(torch.cat(chosen), torch.cat(rejected), tuple(ratings))

    def validate(self, model: nn.Module) -> dict[str, float]:
        """The held-out loss, accuracy (overall and per rating) and score statistics; empty without ``data.val``."""
        if self.val_split is None:
            return {}
        self.after = self._held_out(model)
        return self.after.metrics(self.config.margin)

    def export(self, state: dict[str, torch.Tensor], out_dir: Path) -> Path:
        """``out_dir/final``: a ``LlamaForSequenceClassification`` directory with the tokenizer (transformers loads it)."""
        model = RewardModel(self.model_config, pad_id=self.pad_id, device="meta")
        model.load_state_dict(state, strict=True, assign=True)
        return model.save_pretrained(out_dir / FINAL_DIR, tokenizer=self.start.tokenizer)

    def accuracy_table(self) -> dict[str, dict[str, float | int | None]]:
        """Llama 2 Table 8's layout: per rating and ``all``, the held-out pairs and accuracy before and after."""
        if self.val_split is None:
            return {}
        columns = {
            "before": self.before.metrics(self.config.margin) if self.before else {},
            "after": self.after.metrics(self.config.margin) if self.after else {},
        }
        table: dict[str, dict[str, float | int | None]] = {}
        for level, pairs in self.val_split.by_rating().items():
            key = "eval_accuracy" if level == "all" else f"eval_accuracy/{level}"
            table[level] = {"pairs": pairs} | {when: m.get(key) for when, m in columns.items()}
        return table

    def result(
        self, figures: dict[str, Any], validation: dict[str, float], exported: Path | None
    ) -> RMResult:
        splits = {"train": self.train_split, "val": self.val_split}
        used = {name: split for name, split in splits.items() if split is not None}
        before = self.before.metrics(self.config.margin) if self.before else {}
        plot = None
        if self.after is not None and self.placement.runtime.is_main:
            plot = plot_scores(self.before, self.after, Path(self.config.out_dir) / SCORE_PLOT)
        return RMResult(
            **figures,
            eval_accuracy=validation.get("eval_accuracy"),
            eval_accuracy_before=before.get("eval_accuracy"),
            eval_loss=validation.get("eval_loss"),
            accuracy=self.accuracy_table(),
            scores={"before": _score_stats(before), "after": _score_stats(validation)} if validation else {},
            score_plot=str(plot) if plot else None,
            margin=self.config.margin,
            final_dir=str(exported) if exported else None,
            tokenizer=str(self.start.tokenizer_source),
            pad_id=self.pad_id,
            rows={name: len(split.rows) for name, split in used.items()},
            pairs={name: split.pairs for name, split in used.items()},
            epochs=self.stream.epochs,
            skipped_rows={name: dict(split.skipped) for name, split in used.items()},
        )


def train_rm(config: RMConfig, *, resume: bool = False, overwrite: bool = False) -> RMResult:
    """Run (or with ``resume`` continue) reward-model training; see :func:`herd.train.loop.train`."""
    return cast(RMResult, train(config, RewardObjective, resume=resume, overwrite=overwrite))
