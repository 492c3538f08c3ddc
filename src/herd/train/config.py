"""Training configs: TOML sections as validated dataclasses, overridable from the command line.

Defaults are the Llama recipe (docs/spec.md §3; Llama 1 §2.2, Llama 2 §2.2): AdamW
β 0.9/0.95, eps 1e-5, weight decay 0.1, clipping 1.0, 2,000 warmup steps,
cosine decay to 10% of the peak. The file is read by :mod:`herd.config`, the
loader every stage shares: unknown keys are rejected by name, every value is
type-checked, and any key can be overridden with ``--set section.key=value``
(the value is read as a TOML literal, or as a string when it is not one). This
module defines the sections every run shares (:class:`RunConfig`: optimiser,
schedule, batch, parallelism, checkpoints, faults, logging) and the pretraining
run's (:class:`PretrainConfig`: the model and the token shards) with the
checks only it needs; post-training configs extend :class:`RunConfig` the same way.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Self, TypeVar, get_type_hints

import herd.config as loader
from herd.deprecation import moved_names
from herd.errors import ConfigError
from herd.model.config import ModelConfig
from herd.model.presets import get_preset


@dataclass
class DataConfig:
    """Where the token shards are and how samples are cut (see ``herd.train.dataset``)."""

    path: str = ""
    seq_len: int = 2048
    weights: dict[str, float] = field(default_factory=dict)  # empty: the manifest's weights
    document_mask: bool = True  # attention stays inside each packed document (Llama 3 §3.2)


@dataclass
class OptimConfig:
    """AdamW (Loshchilov & Hutter 2019) with the Llama hyperparameters (Llama 1 §2.2)."""

    lr: float = 3e-4
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-5
    weight_decay: float = 0.1
    grad_clip: float = 1.0


@dataclass
class ScheduleConfig:
    """Linear warmup, cosine decay to ``min_lr_ratio``·peak, optional final linear anneal to 0 (Llama 3 §3.4.3).

    The warmup lasts ``warmup_steps``, or ``warmup_ratio`` of the run's steps
    when that is longer (Llama 2's reward models warm up over 3% of the steps).
    """

    warmup_steps: int = 2000
    warmup_ratio: float = 0.0
    min_lr_ratio: float = 0.1
    anneal_steps: int = 0

    def warmup(self, steps: int) -> int:
        """The warmup steps of a run of ``steps``: ``max(warmup_steps, ⌈warmup_ratio × steps⌉)``."""
        return max(self.warmup_steps, math.ceil(self.warmup_ratio * steps))


@dataclass
class TrainConfig:
    """Length, batch and numerics of the run."""

    steps: int = 1000
    batch_tokens: int = 4_194_304  # 4M tokens per step (Llama 2 §2.2)
    micro_batch_size: int = 1  # sequences per forward pass per process
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: cuda when present, else cpu
    dtype: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast on GPU, fp32 on CPU
    activation_checkpointing: Literal["none", "selective", "full"] = "none"
    compile: bool = False


@dataclass
class ParallelConfig:
    """How processes started by torchrun share the work."""

    strategy: Literal["auto", "ddp", "fsdp"] = "auto"  # auto: ddp for >1 process (fsdp with tp > 1)
    tp: int = 1  # tensor-parallel degree (GPUs)


@dataclass
class CheckpointConfig:
    """Periodic atomic checkpoints under ``<out_dir>/checkpoints``."""

    every: int = 1000
    keep: int = 2
    export_hf: bool = True  # final weights as a Hugging Face directory at <out_dir>/hf


@dataclass
class FaultConfig:
    """Reaction to bad steps (Llama 3 §3.3.4): NaN/Inf loss or gradients, or a loss spike."""

    policy: Literal["skip", "rollback"] = "skip"
    spike_factor: float = 0.0  # a step whose loss exceeds factor × the running mean is bad; 0: off
    spike_warmup: int = 20  # steps before spike detection starts
    max_restarts: int = 0  # restarts from the last checkpoint after a crash


@dataclass
class LogConfig:
    """Progress bar, JSONL metrics, TensorBoard, validation and the loss plot."""

    every: int = 1
    val_every: int = 0  # 0: only at the end
    val_batches: int = 4
    progress: bool = True
    tensorboard: bool = True


@dataclass
class RunConfig:
    """What every training run shares, whatever it optimises: where it writes, and how the trainer runs.

    The sections of :class:`herd.train.loop.Trainer` (optimiser, schedule,
    batch and numerics, parallelism, checkpoints, fault handling, logging).
    A run's config extends it with what its objective needs
    (:class:`herd.train.objective.Objective`): :class:`PretrainConfig` the model
    shape and the token shards, post-training configs the checkpoint to start
    from and the chat data. Each subclass adds its checks by extending
    :meth:`checks`.
    """

    out_dir: str = "runs/pretrain"
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    fault: FaultConfig = field(default_factory=FaultConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def checks(self) -> list[tuple[bool, str]]:
        """Cross-field checks as (holds, message when it does not), in the order they are reported."""
        return [
            (bool(self.out_dir), "out_dir must not be empty"),
            (self.train.batch_tokens > 0, "train.batch_tokens must be positive"),
            (self.train.micro_batch_size > 0, "train.micro_batch_size must be positive"),
            (self.train.seed >= 0, "train.seed must be >= 0"),
            (self.optim.lr > 0, "optim.lr must be positive"),
            (0 <= self.optim.beta1 < 1, "optim.beta1 must be in [0, 1)"),
            (0 <= self.optim.beta2 < 1, "optim.beta2 must be in [0, 1)"),
            (self.optim.eps > 0, "optim.eps must be positive"),
            (self.optim.weight_decay >= 0, "optim.weight_decay must be >= 0"),
            (self.optim.grad_clip > 0, "optim.grad_clip must be positive"),
            (0 <= self.schedule.min_lr_ratio <= 1, "schedule.min_lr_ratio must be in [0, 1]"),
            (self.schedule.warmup_steps >= 0, "schedule.warmup_steps must be >= 0"),
            (0 <= self.schedule.warmup_ratio < 1, "schedule.warmup_ratio must be in [0, 1)"),
            (self.schedule.anneal_steps >= 0, "schedule.anneal_steps must be >= 0"),
            (self.checkpoint.every > 0, "checkpoint.every must be positive"),
            (self.checkpoint.keep > 0, "checkpoint.keep must be positive"),
            (self.parallel.tp > 0, "parallel.tp must be positive"),
            (self.fault.max_restarts >= 0, "fault.max_restarts must be >= 0"),
            (self.fault.spike_factor >= 0, "fault.spike_factor must be >= 0 (0: off)"),
            (self.fault.spike_warmup >= 0, "fault.spike_warmup must be >= 0"),
            (self.log.every > 0, "log.every must be positive"),
            (self.log.val_every >= 0, "log.val_every must be >= 0 (0: only at the end)"),
            (self.log.val_batches >= 0, "log.val_batches must be >= 0"),
        ]

    def validate(self) -> Self:
        """Raise a :class:`ConfigError` for the first check of :meth:`checks` that fails; returns self."""
        for ok, message in self.checks():
            if not ok:
                raise ConfigError(message)
        return self


# model.vocab_size when the config leaves it unset: the trainer takes the dataset manifest's vocab_size.
VOCAB_FROM_DATA = 0

#: The model keys a run that starts from ``init`` may change: no weight's shape depends on them, and
#: continued pretraining changes them (Code Llama §2.4: RoPE θ 10,000 → 1,000,000, 4,096 → 16,384 tokens).
INIT_MODEL_KEYS = ("rope_theta", "rope_scaling", "max_seq_len")


@dataclass
class PretrainConfig(RunConfig):
    """A whole pretraining run: the trainer's sections, plus ``model`` (a preset name and ModelConfig field overrides) and ``data``.

    ``model.vocab_size`` left out of the file is :data:`VOCAB_FROM_DATA` (0),
    also in ``--print-config``: the trainer sets it to the vocabulary of the
    tokenizer that made the data (:meth:`with_vocab_size`), so a config does
    not repeat a number the data already knows.

    ``init`` (empty: random weights) names a checkpoint to continue from
    (continued pretraining, Code Llama §2.4): the model starts from its
    weights, the optimizer and schedule from step 0. Its shape is the
    checkpoint's: ``model`` may change only :data:`INIT_MODEL_KEYS`, and takes
    no preset (:meth:`with_init_model`, applied by the trainer).
    """

    model: dict[str, Any] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    init: str = ""

    def model_config(self) -> ModelConfig:
        """The ModelConfig: ``model.preset`` (if any) with the other keys replaced (each type-checked).

        ``model.vocab_size`` must be known: a config that takes it from the data
        is resolved by the trainer first (:meth:`with_vocab_size`), as is the
        shape of a config with ``init`` (:meth:`with_init_model`).
        """
        if self.vocab_from_data:
            raise ConfigError("model.vocab_size is unset: it is taken from the dataset when training starts")
        return self._model_config(self.model)

    @property
    def vocab_from_data(self) -> bool:
        """Whether ``model.vocab_size`` is unset, to be taken from the dataset's manifest."""
        value = self.model.get("vocab_size", VOCAB_FROM_DATA)
        return loader.has_type(value, int) and value == VOCAB_FROM_DATA

    def with_vocab_size(self, vocab_size: int) -> PretrainConfig:
        """A copy whose ``model.vocab_size`` is ``vocab_size``."""
        return dataclasses.replace(self, model={**self.model, "vocab_size": vocab_size})

    def with_init_model(self, base: ModelConfig, source: str) -> PretrainConfig:
        """A copy whose ``model`` is every key of ``base`` (the ``init`` checkpoint's shape, read from ``source``)
        with this config's values of :data:`INIT_MODEL_KEYS`.

        Any other key the config gives must equal the checkpoint's (an unset
        ``vocab_size`` is the checkpoint's); one that differs is a
        :class:`ConfigError` naming it. The copy's ``model`` is complete, so a
        resumed run compares it key by key with the one it was saved with.
        """
        _, fields = self._model_fields(self.model)
        if self.vocab_from_data:
            fields.pop("vocab_size", None)
        for key, value in fields.items():
            if key not in INIT_MODEL_KEYS and value != getattr(base, key):
                raise ConfigError(
                    f"model.{key}: {value!r} differs from {getattr(base, key)!r} of the init checkpoint "
                    f"{source} (a run started from init may change only {', '.join(INIT_MODEL_KEYS)})"
                )
        changes = {key: fields[key] for key in INIT_MODEL_KEYS if key in fields}
        return dataclasses.replace(self, model=base.replace(**changes).to_dict())

    @staticmethod
    def _model_fields(model: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
        """``model.preset`` and the other keys of ``model``, each checked to be a ModelConfig field of its type."""
        fields = dict(model)
        preset = loader.coerce(fields.pop("preset", None), str | None, "model.preset")
        hints = get_type_hints(ModelConfig)
        unknown = sorted(set(fields) - set(hints))
        if unknown:
            raise ConfigError(f"model: unknown key(s) {', '.join(unknown)}")
        return preset, {
            key: loader.coerce(value, hints[key], f"model.{key}") for key, value in fields.items()
        }

    @classmethod
    def _model_config(cls, model: dict[str, Any]) -> ModelConfig:
        preset, fields = cls._model_fields(model)
        if preset is not None:
            return get_preset(preset).replace(**fields)
        required = [f.name for f in dataclasses.fields(ModelConfig) if f.default is dataclasses.MISSING]
        missing = [name for name in required if name not in fields]
        if missing:
            raise ConfigError(f"model: missing key(s) {', '.join(missing)} (or set model.preset)")
        return ModelConfig.from_dict(fields)

    def checks(self) -> list[tuple[bool, str]]:
        """The trainer's checks, then the run length and the data's."""
        return [
            *super().checks(),
            (self.train.steps > 0, "train.steps must be positive"),
            (self.data.seq_len > 0, "data.seq_len must be positive"),
            (all(w >= 0 for w in self.data.weights.values()), "data.weights must be >= 0"),
        ]

    def validate(self) -> PretrainConfig:
        """Cross-field checks (the model keys first); returns self.

        With ``init`` the model keys are only type-checked here (the shape is
        the checkpoint's, read when training starts) and a preset is refused.
        """
        self.model.setdefault("vocab_size", VOCAB_FROM_DATA)
        if self.init:
            preset, _ = self._model_fields(self.model)
            if preset is not None:
                raise ConfigError(
                    f"model.preset: {preset!r} is not used with init (the model's shape is the checkpoint's "
                    f"{self.init}): remove it"
                )
        else:
            # Until the data says, any vocabulary stands in for the unset one to check the other model keys.
            self._model_config(self.model | ({"vocab_size": 1} if self.vocab_from_data else {}))
        return super().validate()


ConfigT = TypeVar("ConfigT", bound=RunConfig)


def run_config_from_dict(cls: type[ConfigT], data: dict[str, Any]) -> ConfigT:
    """A validated ``cls`` (a :class:`RunConfig`) from a raw dict."""
    return loader.from_dict(cls, data).validate()


def load_run_config(cls: type[ConfigT], path: Path | str | None, overrides: Iterable[str] = ()) -> ConfigT:
    """Read a TOML config of ``cls`` (the defaults when ``path`` is None) and apply ``--set`` overrides."""
    data = {} if path is None else loader.load_toml(path)
    return run_config_from_dict(cls, loader.apply_overrides(data, overrides))


def config_from_dict(data: dict[str, Any]) -> PretrainConfig:
    """A validated :class:`PretrainConfig` from a raw dict."""
    return run_config_from_dict(PretrainConfig, data)


def load_config(path: Path | str | None, overrides: Iterable[str] = ()) -> PretrainConfig:
    """Read a pretraining TOML config (or start from the defaults when ``path`` is None) and apply overrides."""
    return load_run_config(PretrainConfig, path, overrides)


# The loader of every stage's config is herd.config.
__getattr__ = moved_names(__name__, dict.fromkeys(("apply_overrides", "parse_value"), "herd.config"))
