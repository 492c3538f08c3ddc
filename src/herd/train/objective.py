"""What a training run optimises: the :class:`Objective` interface of the one trainer.

Pretraining (Llama 1 §2, Llama 3 §3), supervised fine-tuning (Llama 2 §3.1,
Llama 3 §4.1.3), reward models (Llama 2 §3.2.2) and DPO (Llama 3 §4.1.4) differ
in their data, their loss and what they hand over, not in how a model is
trained. :class:`herd.train.loop.Trainer` owns everything they share: the
process group and numerics, sharding (DDP, FSDP2, tensor parallelism),
activation checkpointing and ``torch.compile``, AdamW and the LR schedule,
gradient accumulation, clipping, the bad-step checks (skip or roll back),
atomic checkpoints with exact resume, crash restarts, metrics, MFU, goodput and
the loss plot. An objective supplies the rest:

==========================  ==================================================================
``name``, ``val_metric``    the run's name (progress bar); the validation metric plotted
``resume_keys``             config keys a resumed run may not change
``config``                  the run's config (a :class:`RunConfig` subclass), as resolved by
                            the objective (e.g. the vocabulary taken from the data); what a
                            checkpoint saves and a resumed run compares
``model_config``            the shape of the model (FLOPs per token, the export)
``steps``                   optimizer steps of the run (``train.steps``, or derived from epochs)
``seq_len``                 tokens per sequence the model processes (FLOPs per token)
``sequences_per_step``      sequences per global step (tokens/s, MFU, the token count)
``fingerprint``             identifies the data (``check_fingerprint`` refuses another on resume)
``build_model(device)``     the model to train, weights not yet set (on ``meta`` when sharded)
``init_weights(model, d)``  its initial weights: random (pretraining) or a checkpoint's
``prepare_run(model, o)``   what it derives from the initial weights before training, kept in
                            the run directory ``o`` (DPO's reference log-probabilities)
``micro_batches()``         this data-parallel rank's micro-batches of the next step
``count(batch)``            the loss units of a micro-batch (tokens, target tokens, pairs)
``loss(model, batch)``      the summed loss of a micro-batch and summed extra statistics
``validate(model)``         held-out metrics by name
``should_stop(validation)``  a reason to end the run after this validation, or None (early stopping)
``export(state, out_dir)``  the final weights, in a layout other tools read
``result(figures, ...)``    the run's result (what ``summary.json`` holds, ``stopped_early`` among it)
``state_dict()``            the exact data position, saved with every checkpoint
``load_state_dict(state)``  continue from a saved data position
==========================  ==================================================================

The model is a :class:`~herd.model.transformer.Transformer` or a module that
holds one or more (a reward model's scalar head on its ``transformer``, PPO's
policy and value model), whose blocks the trainer shards, recomputes and
compiles (:func:`decoders`); anything else an objective
needs and does not train it derives in :meth:`Objective.prepare_run` (DPO's
reference log-probabilities, so that no frozen copy of the model is held).

**The loss of a step** is Σ loss_sum / Σ count over every micro-batch of
every data-parallel rank. The trainer sums the counts of the step's
micro-batches over the ranks *before* the first backward pass, so each
micro-batch's gradient is scaled by the final normaliser and the accumulated
gradient is exactly that of the global mean, however the batch is split
(pretraining counts every target token, a fixed number; SFT the answer tokens
of the packed sequences, which vary from step to step; preference objectives
their pairs). Extra statistics (``stats``) are sums over the same units and are
logged as their global means per unit.

**Early stopping.** After each validation the trainer passes the metrics to
:meth:`Objective.should_stop`; a reason (a string) ends the run there as if
its steps were done (final checkpoint, export, ``summary.json``), with the
reason logged and recorded as the result's ``stopped_early`` (and in the
checkpoint: resuming a stopped run trains no further). Llama 2 §3.2.3
stops PPO early on the held-out prompts' reward; :class:`EarlyStopping` is
that rule for any metric. Whatever the rule remembers (the best value so
far) belongs in the objective's ``state_dict``, so a resumed run stops at the
same step as an uninterrupted one.

An objective is built once per attempt (a crash restart builds a new one) from
the config and its :class:`Placement`, before anything is written, so bad
input is reported before the run's directory is touched. Its data position
(``state_dict``) is restored from the checkpoint it resumes from.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import torch
from torch import nn
from torch.distributed.tensor import DTensor, distribute_tensor
from torch.nn.parallel import DistributedDataParallel

from herd.errors import CheckpointError, ConfigError
from herd.model.build import empty_model
from herd.model.config import ModelConfig
from herd.model.transformer import Transformer
from herd.train.config import RunConfig, TrainConfig
from herd.train.distributed import Runtime, decoder, decoders

__all__ = [
    "BatchLayout",
    "EarlyStopping",
    "LossTerms",
    "Objective",
    "Placement",
    "RunResult",
    "allocate",
    "batch_layout",
    "copy_weights",
    "decoder",
    "decoders",
    "full_copy",
    "is_meta",
    "is_sharded",
    "unwrap",
]

BatchT = TypeVar("BatchT")
T = TypeVar("T")


@dataclass(frozen=True)
class Placement:
    """Where this process sits: its runtime and its data-parallel rank among ``dp_size``.

    Processes of one tensor-parallel group share a data-parallel rank and read
    the same micro-batches.
    """

    runtime: Runtime
    dp_rank: int
    dp_size: int


@dataclass(frozen=True)
class BatchLayout:
    """A global step of ``sequences`` split over the data-parallel ranks and into micro-batches.

    The global batch does not depend on the world size, so neither does the
    update: each rank takes its contiguous share and runs it
    ``micro_batch_size`` sequences at a time (gradient accumulation).
    """

    sequences: int
    micro_batch_size: int
    dp_rank: int
    dp_size: int

    @property
    def accumulation(self) -> int:
        """Micro-batches per rank per step."""
        return self.sequences // (self.dp_size * self.micro_batch_size)

    def split(self, step_items: Sequence[T]) -> list[Sequence[T]]:
        """This rank's share of a global step's ``sequences`` items, in micro-batches."""
        per_rank = self.sequences // self.dp_size
        mine = step_items[self.dp_rank * per_rank : (self.dp_rank + 1) * per_rank]
        mb = self.micro_batch_size
        return [mine[i * mb : (i + 1) * mb] for i in range(self.accumulation)]


def batch_layout(train: TrainConfig, seq_len: int, placement: Placement) -> BatchLayout:
    """The layout of ``train.batch_tokens / seq_len`` sequences per step; a ConfigError unless it divides evenly."""
    sequences, rest = divmod(train.batch_tokens, seq_len)
    per_pass = placement.dp_size * train.micro_batch_size
    if rest or sequences % per_pass or not sequences:
        raise ConfigError(
            f"train.batch_tokens ({train.batch_tokens}) must be a multiple of data.seq_len "
            f"({seq_len}) × data-parallel processes ({placement.dp_size}) × "
            f"train.micro_batch_size ({train.micro_batch_size})"
        )
    return BatchLayout(sequences, train.micro_batch_size, placement.dp_rank, placement.dp_size)


@dataclass
class LossTerms:
    """One micro-batch's contribution: ``loss_sum`` (an fp32 scalar with a graph) and ``stats`` (floats).

    Both are sums over the micro-batch's loss units (:meth:`Objective.count`);
    the trainer divides each by the step's global count.
    """

    loss_sum: torch.Tensor
    stats: dict[str, float] = field(default_factory=dict)


@dataclass
class RunResult:
    """What every finished run reports (also written to ``<out_dir>/summary.json``); objectives add their own fields."""

    out_dir: str
    steps: int
    tokens: int
    final_loss: float
    tokens_per_s: float
    mfu: float
    goodput: float
    skipped_steps: int
    rollbacks: int
    restarts: int = 0
    loss_plot: str | None = None
    metrics: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    stopped_early: str | None = None  # why the run ended before its steps (Objective.should_stop), if it did

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def allocate(model: nn.Module, device: torch.device) -> None:
    """Give a model built (and sharded) on the meta device storage on ``device``; values are not set.

    Only this process's shards are allocated (FSDP2's recipe for models larger
    than one device); tied embeddings and the RoPE buffer are restored
    (:meth:`Transformer.allocate`).
    """
    model.to_empty(device=device)
    for module in model.modules():
        if isinstance(module, Transformer):
            module.allocate(device)


def is_meta(model: nn.Module) -> bool:
    """Whether ``model``'s parameters are still on the meta device (a sharded run before :func:`allocate`)."""
    return any(p.is_meta for p in model.parameters())


@torch.no_grad()
def copy_weights(model: nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Set every parameter of ``model`` from the full tensor of the same name in ``tensors``.

    A sharded parameter (FSDP2 or tensor parallel: a DTensor) keeps this
    process's slice of the full tensor, so every layout starts from the same
    weights. A parameter ``tensors`` lacks, or has in another shape, is a
    :class:`CheckpointError` naming ``source``.
    """
    for name, param in model.named_parameters():
        value = tensors.get(name)
        if value is None:
            raise CheckpointError(f"{source}: has no tensor {name}")
        if tuple(value.shape) != tuple(param.shape):
            raise CheckpointError(
                f"{source}: tensor {name} has shape {tuple(value.shape)}, the model {tuple(param.shape)}"
            )
        value = value.to(param.device, param.dtype)
        if isinstance(param, DTensor):
            value = distribute_tensor(value, param.device_mesh, param.placements, src_data_rank=None)
        param.copy_(value)


@dataclass
class EarlyStopping:
    """Stop when ``metric`` has not improved on its best for ``patience`` validations in a row (0: never).

    Llama 2 §3.2.3 stops PPO early on the held-out prompts' reward; any
    validation metric serves, higher is better unless ``maximize`` is False.
    A missing or NaN value counts as no improvement. ``best`` and ``stale``
    (the validations since the best) are the rule's state: an objective saves
    :meth:`state_dict` with its data position so that a resumed run stops
    where an uninterrupted one would.
    """

    metric: str
    patience: int
    maximize: bool = True
    best: float | None = None
    stale: int = 0

    def update(self, validation: dict[str, float]) -> str | None:
        """Take one validation's metrics; the reason to stop, or None."""
        if not self.patience or self.metric not in validation:
            return None
        value = validation[self.metric]
        better = self.best is None or (value > self.best if self.maximize else value < self.best)
        if better and not math.isnan(value):
            self.best, self.stale = value, 0
            return None
        self.stale += 1
        if self.stale < self.patience:
            return None
        best = "none" if self.best is None else f"{self.best:.6g}"
        return f"{self.metric} did not improve on its best ({best}) for {self.stale} validations"

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "stale": self.stale}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s values; ValueError when they are not a best and a count."""
        best, stale = state.get("best"), state.get("stale")
        if best is not None and (isinstance(best, bool) or not isinstance(best, int | float)):
            raise ValueError(f"best: expected a number or null, got {best!r}")
        if not isinstance(stale, int) or isinstance(stale, bool) or stale < 0:
            raise ValueError(f"stale: expected an integer >= 0, got {stale!r}")
        self.best = None if best is None else float(best)
        self.stale = stale


def unwrap(model: nn.Module) -> nn.Module:
    """The module a DDP wrapper replicates, or ``model`` itself (FSDP2 shards modules in place)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def is_sharded(model: nn.Module) -> bool:
    """Whether any parameter of ``model`` is a shard of a larger one (FSDP2 or tensor parallel: a DTensor)."""
    return any(isinstance(p, DTensor) for p in model.parameters())


@torch.no_grad()
def full_copy(model: nn.Module, empty: nn.Module) -> nn.Module:
    """``empty`` (same structure as ``model``, storage allocated) with ``model``'s full weights, in eval mode.

    Generation runs one token at a time and would go through sharded weights
    one block at a time, all-gathering every block for every token (the
    Llama 2 paper saw a 20× slowdown, §3.2.3, and gathered the full weights
    once per generation instead). The copy is that gathering: each sharded
    parameter is all-gathered in turn (every process takes part) straight into
    the plain model, which needs no collective afterwards; dropping it frees
    the gathered weights. Parameters are frozen.
    """
    sources = dict(unwrap(model).named_parameters())
    for name, param in empty.named_parameters():
        source = sources[name]
        param.copy_(source.full_tensor() if isinstance(source, DTensor) else source)
    return empty.requires_grad_(False).eval()


class Objective(ABC, Generic[BatchT]):
    """What a run optimises; see the module docstring for the contract with the trainer.

    Subclasses set the attributes below in ``__init__(config, placement)``,
    which must read and check all input (and write nothing).
    """

    #: The run's name in the progress bar and messages (``pretrain``, ``sft``).
    name: ClassVar[str]
    #: Dotted config keys a resumed run may not change (the model, the data and its order).
    resume_keys: ClassVar[tuple[str, ...]]
    #: The metric of :meth:`validate` drawn beside the training loss in the loss plot.
    val_metric: ClassVar[str]

    config: RunConfig
    model_config: ModelConfig
    steps: int
    seq_len: int
    sequences_per_step: int
    fingerprint: str

    def __init__(self, config: RunConfig, placement: Placement) -> None:
        self.placement = placement
        self.device = placement.runtime.device

    # ---- the model ------------------------------------------------------------------------------

    def build_model(self, device: torch.device | str) -> nn.Module:
        """The model to train, its weights allocated on ``device`` but not set (nothing allocated on ``meta``)."""
        return empty_model(self.model_config, device)

    @abstractmethod
    def init_weights(self, model: nn.Module, device: torch.device) -> None:
        """Set the initial weights of a model from :meth:`build_model`.

        In a sharded run the model was built on the meta device and sharded:
        :func:`allocate` it on ``device`` first, then set this process's shards
        (:func:`copy_weights` does both kinds of parameter).
        """

    def prepare_run(self, model: nn.Module, out_dir: Path) -> None:
        """Compute, or read back from ``out_dir``, what the objective derives from the initial weights.

        Called once per attempt on every process, after ``out_dir`` is prepared
        and before a checkpoint is restored, so ``model`` (trained in this run)
        holds its initial weights; in eval mode, without gradients, under the
        run's autocast. DPO computes its reference log-probabilities here
        (Llama 3 §4.1.4) and keeps them in ``out_dir`` for a resumed run. Nothing
        by default.
        """

    # ---- the data --------------------------------------------------------------------------------

    @abstractmethod
    def micro_batches(self) -> list[BatchT]:
        """This rank's micro-batches of the next step (the same number on every rank); advances the data position."""

    @abstractmethod
    def count(self, batch: BatchT) -> int:
        """The loss units of ``batch``: what its ``loss_sum`` is a sum over."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """The data position as JSON-able values, saved in every checkpoint."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a saved data position; ValueError (or KeyError, TypeError) when it is not one."""

    def check_fingerprint(self, saved: str, checkpoint: Path) -> None:
        """Refuse to resume from ``checkpoint`` when its data fingerprint is not :attr:`fingerprint`."""
        if saved != self.fingerprint:
            raise CheckpointError(
                f"the {self.name} data changed since checkpoint {checkpoint} was written, so the resumed run "
                "would not continue the same data; restore the original data, or start a new run"
            )

    # ---- loss, validation, hand-over ------------------------------------------------------------

    @abstractmethod
    def loss(self, model: nn.Module, batch: BatchT) -> LossTerms:
        """The summed loss of ``batch`` (fp32, with its graph) and summed statistics; the trainer sets autocast."""

    @abstractmethod
    def validate(self, model: nn.Module) -> dict[str, float]:
        """Held-out metrics by name (empty when there is no held-out data); called in eval mode without gradients."""

    def should_stop(self, validation: dict[str, float]) -> str | None:
        """Why the run should end after the validation whose metrics are ``validation``, or None to go on.

        Called on every process after every validation, the final one
        included (so the state saved with the final checkpoint is the rule's
        after it); the reason is only acted on before the last step. Never by
        default; see :class:`EarlyStopping`.
        """
        return None

    @abstractmethod
    def export(self, state: dict[str, torch.Tensor], out_dir: Path) -> Path | None:
        """Write the final weights (``state``: the full state dict, on CPU) under ``out_dir``; where, or None.

        Called on the main process only, when ``checkpoint.export_hf`` is set.
        """

    @abstractmethod
    def result(
        self, figures: dict[str, Any], validation: dict[str, float], exported: Path | None
    ) -> RunResult:
        """The run's result: :class:`RunResult`'s ``figures`` (keyword arguments), plus the objective's own."""
