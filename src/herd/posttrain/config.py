"""Post-training run configs: the trainer's sections (:class:`~herd.train.config.RunConfig`) plus where to start and what to learn.

Read like every herd config (:mod:`herd.config`: unknown keys refused by name,
``--set key=value`` overrides). The defaults are the papers' (docs/spec.md §5),
set on the sections' own classes, so a file that sets one key of a section
keeps the others' SFT defaults:

* :class:`SFTConfig`, supervised fine-tuning (Llama 2 §3.1): cosine schedule
  with a peak learning rate of 2e-5 (Llama 3 §4.1.3: 1e-5), weight decay 0.1,
  64 sequences of 4,096 tokens per step, 2 epochs. The papers give no warmup
  and no floor for the cosine: herd starts at the peak and decays to 10% of it,
  as its pretraining schedule does.

``init`` names the checkpoint to start from: any path :func:`herd.load_model`
reads (a Hugging Face or Meta directory, a GGUF file), or the name of a model a
Python package bundles (:data:`herd.train.init.BUNDLED_MODELS`, e.g. ``smollm2-135m-instruct``;
:func:`~herd.train.init.resolve_init`, shared with continued pretraining).
:class:`Start` resolves ``init``, ``tokenizer`` and ``chat_format`` into what a
post-training objective trains with, and writes its final weights with that tokenizer.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import torch

from herd.checkpoint.base import SIDE_FILES_EXTRA, CheckpointInfo, find_side_files
from herd.checkpoint.hf import write_hf
from herd.checkpoint.load import open_checkpoint
from herd.errors import ConfigError
from herd.model.config import ModelConfig
from herd.tokenizer.base import Tokenizer, check_vocab_fits
from herd.tokenizer.chat import ChatFormat, chat_format
from herd.tokenizer.load import load_tokenizer
from herd.tokenizer.save import save_tokenizer
from herd.train.config import OptimConfig, RunConfig, ScheduleConfig, TrainConfig
from herd.train.init import resolve_init


class _DataFiles(Protocol):
    @property
    def train(self) -> str: ...

    @property
    def val(self) -> str: ...


class _RunFromInit(Protocol):
    """What :meth:`Start.of_run` reads of a post-training run's config (SFT, reward model, DPO)."""

    @property
    def init(self) -> str: ...

    @property
    def tokenizer(self) -> str: ...

    @property
    def chat_format(self) -> str: ...

    @property
    def data(self) -> _DataFiles: ...


@dataclass(frozen=True)
class Start:
    """What a post-training run starts from: the ``init`` checkpoint and its shape, the tokenizer, its chat format.

    The tokenizer is the checkpoint's own unless ``tokenizer`` names another;
    its vocabulary must fit the model's embedding. ``chat_format`` ``auto``:
    the tokenizer's chat template if it has one, else Llama 3's or Llama 2's
    format (:func:`herd.tokenizer.chat.chat_format`).
    """

    init: Path
    model_config: ModelConfig
    tokenizer_source: Path
    tokenizer: Tokenizer
    chat: ChatFormat

    @classmethod
    def of_run(cls, config: _RunFromInit) -> Start:
        """The start of a run's config, after checking that its ``data.train`` and ``data.val`` files exist."""
        for key in ("train", "val"):
            path = getattr(config.data, key)
            if path and not Path(path).is_file():
                raise ConfigError(f"data.{key}: no such file: {path}")
        return cls.resolve(config.init, config.tokenizer, config.chat_format)

    @classmethod
    def resolve(cls, init: str, tokenizer: str = "", chat: str = "auto") -> Start:
        """The start named by a config's ``init``, ``tokenizer`` and ``chat_format`` keys, read and checked."""
        path = resolve_init(init)
        with open_checkpoint(path) as reader:
            model_config = reader.config
        source = Path(tokenizer) if tokenizer else path
        loaded = load_tokenizer(source)
        check_vocab_fits(loaded, model_config.vocab_size)
        return cls(path, model_config, source, loaded, chat_format(loaded, None if chat == "auto" else chat))

    def write_final(self, tensors: Iterable[tuple[str, torch.Tensor]], dst: Path) -> Path:
        """``tensors`` in herd's Hugging Face layout at ``dst``, with the tokenizer's files beside them.

        A tokenizer directory's own files are copied (its config, special tokens
        and generation settings travel unchanged); a tokenizer read from a GGUF
        or a single file is saved in the layout transformers reads
        (:func:`herd.tokenizer.save.save_tokenizer`), so transformers'
        ``AutoModelForCausalLM`` and ``AutoTokenizer`` load ``dst`` alone.
        """
        source = self.tokenizer_source
        side_files = find_side_files(source) if source.is_dir() else []
        with tempfile.TemporaryDirectory(prefix="herd-tokenizer-") as staging:
            files = side_files or save_tokenizer(self.tokenizer, staging)
            info = CheckpointInfo(self.model_config, extras={SIDE_FILES_EXTRA: files})
            return write_hf(dst, info, tensors)


@dataclass
class SFTDataConfig:
    """The conversations (JSON Lines or Parquet, :mod:`herd.posttrain.data`) and how they are packed."""

    train: str = ""
    val: str = ""  # empty: no validation
    seq_len: int = 4096  # packed sequence length (Llama 2 §3.1)
    epochs: int = 2  # passes over the training set when train.steps is 0 (Llama 2 §3.1)


@dataclass
class SFTOptimConfig(OptimConfig):
    """AdamW as in pretraining, at Llama 2's SFT peak learning rate 2e-5 with weight decay 0.1 (§3.1)."""

    lr: float = 2e-5
    weight_decay: float = 0.1


@dataclass
class SFTScheduleConfig(ScheduleConfig):
    """Cosine from the peak (the papers give no warmup for SFT) to 10% of it."""

    warmup_steps: int = 0


@dataclass
class SFTTrainConfig(TrainConfig):
    """64 sequences of 4,096 tokens per step (Llama 2 §3.1); ``steps`` 0: ``data.epochs`` passes over the data."""

    steps: int = 0
    batch_tokens: int = 64 * 4096


@dataclass
class SFTConfig(RunConfig):
    """Supervised fine-tuning (:mod:`herd.posttrain.sft`): the trainer's sections, ``init``, the tokenizer and ``data``.

    ``tokenizer`` empty: the init checkpoint's own. ``chat_format`` ``auto``:
    the tokenizer's chat template if it has one, else Llama 3's or Llama 2's
    format (:func:`herd.tokenizer.chat.chat_format`). ``train.steps`` 0: the
    run makes ``data.epochs`` passes over the packed training sequences
    (rounded up to whole steps).
    """

    out_dir: str = "runs/sft"
    optim: SFTOptimConfig = field(default_factory=SFTOptimConfig)
    schedule: SFTScheduleConfig = field(default_factory=SFTScheduleConfig)
    train: SFTTrainConfig = field(default_factory=SFTTrainConfig)
    init: str = ""
    tokenizer: str = ""
    chat_format: Literal["auto", "llama2", "llama3", "jinja"] = "auto"
    data: SFTDataConfig = field(default_factory=SFTDataConfig)

    def checks(self) -> list[tuple[bool, str]]:
        """The trainer's checks, then the start, the data and the run length."""
        return [
            *super().checks(),
            (
                bool(self.init),
                "init must name the checkpoint to start from (a path, or smollm2-135m-instruct)",
            ),
            (bool(self.data.train), "data.train must name the training conversations (a .jsonl file)"),
            (self.data.seq_len >= 2, "data.seq_len must be at least 2"),
            (self.data.epochs > 0, "data.epochs must be positive"),
            (self.train.steps >= 0, "train.steps must be >= 0 (0: data.epochs passes over the data)"),
        ]
