"""Supervised fine-tuning (Llama 2 §3.1, Llama 3 §4.1.3) as an :class:`~herd.train.objective.Objective` of the one trainer.

``sft(config)`` fine-tunes the checkpoint ``init`` on chat conversations with
the pretraining trainer (:func:`herd.train.loop.train`), so checkpoints, exact
resume, FSDP/TP, bad-step handling, crash restarts and metrics are the ones
pretraining has. What is particular to SFT:

* **Start**: the weights of ``init`` (any checkpoint :func:`herd.load_model`
  reads; a GGUF is dequantized), trained in fp32 (bf16 autocast on a GPU). The
  tokenizer is the init checkpoint's unless ``tokenizer`` names another; its
  vocabulary must fit the model's embedding.
* **Data** (:mod:`herd.posttrain.data`): each row of ``data.train`` is read,
  checked (unusable rows are counted by reason and skipped), rendered in the
  chat format and packed whole into sequences of ``data.seq_len`` tokens
  ("prompts and answers concatenated", Llama 2 §3.1), each conversation its
  own document, so attention stays inside it. Packing is fixed by
  ``train.seed``; each epoch visits the packed sequences in a fresh order
  drawn from ``(train.seed, epoch)``. The data position is one number (the
  sequences drawn), saved with every checkpoint, so a resumed run sees exactly
  the sequences an uninterrupted one would.
* **Loss**: next-token cross-entropy on the answer tokens only ("we zero-out
  the loss on tokens from the user prompt", Llama 2 §3.1): the targets of the
  system and user turns and the template's headers are ignored, those of each
  assistant turn's content and the token that ends it are trained. A step's
  loss is the sum over its target tokens divided by their number, counted over
  every micro-batch and process before the backward pass, so it is the mean
  per answer token of the whole global batch, however the batch is split.
* **Validation**: ``eval_loss``, the mean loss per answer token on the
  packed ``data.val`` file (its first ``log.val_batches`` micro-batches, as
  pretraining validates on that many held-out micro-batches).
* **Output**: ``OUTPUT/final/``, the weights in herd's Hugging Face layout
  with the tokenizer files (transformers' ``AutoModelForCausalLM`` and
  ``AutoTokenizer`` load it alone), and ``summary.json`` with the skipped rows
  by reason.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from herd.checkpoint.base import tensor_names
from herd.errors import ConfigError, InputError
from herd.model.cross_entropy import IGNORE_INDEX
from herd.posttrain.config import SFTConfig, Start
from herd.posttrain.data import (
    EpochStream,
    PackedSequence,
    SkipCounts,
    pack,
    read_conversations,
    render_conversations,
)
from herd.tokenizer.chat import ChatFormat
from herd.train.dataset import Batch
from herd.train.init import load_init_weights
from herd.train.loop import train
from herd.train.objective import (
    LossTerms,
    Objective,
    Placement,
    RunResult,
    batch_layout,
)

FINAL_DIR = "final"


@dataclass
class SFTResult(RunResult):
    """What a finished SFT run reports (also written to ``<out_dir>/summary.json``).

    ``conversations`` and ``skipped_rows`` are per file (``train``, ``val``);
    ``epochs`` is the number of passes over the packed training sequences the
    run made; ``tokenizer`` is where the tokenizer files in ``final_dir`` came from.
    """

    eval_loss: float | None = None
    final_dir: str | None = None
    tokenizer: str | None = None
    conversations: dict[str, int] = field(default_factory=dict)
    packed_sequences: int = 0
    epochs: float = 0.0
    skipped_rows: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class ChatSplit:
    """One file of conversations, rendered and packed: its sequences, and what it used and skipped."""

    path: str
    sequences: list[PackedSequence]
    conversations: int
    skipped: SkipCounts


def pack_file(path: str, fmt: ChatFormat, seq_len: int, seed: int, pad_id: int) -> ChatSplit:
    """Read, render and pack the conversations of ``path`` (:mod:`herd.posttrain.data`).

    An :class:`InputError` naming the file when no row is usable, or none fits
    in ``seq_len`` tokens.
    """
    skipped = SkipCounts()
    examples = list(render_conversations(fmt, read_conversations(path, skipped), seq_len, skipped))
    if not examples:
        raise InputError(f"{path}: no conversation fits in data.seq_len {seq_len} tokens: {skipped}")
    sequences = pack(examples, seq_len, seed=seed, pad_id=pad_id, skipped=skipped)
    return ChatSplit(path, sequences, len(examples), skipped)


def stack(sequences: list[PackedSequence]) -> Batch:
    """Packed sequences as one :class:`~herd.train.dataset.Batch` (inputs, targets, document ids)."""
    return Batch(
        torch.stack([s.inputs for s in sequences]),
        torch.stack([s.targets for s in sequences]),
        torch.stack([s.document_ids for s in sequences]),
    )


def fingerprint(sequences: list[PackedSequence]) -> str:
    """A digest of the packed training data (tokens, targets, documents): the same exactly when the data is."""
    digest = hashlib.sha256()
    for s in sequences:
        for tensor in (s.inputs, s.targets, s.document_ids):
            digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


class SFTObjective(Objective[Batch]):
    """Supervised fine-tuning of ``init`` on ``data.train``; see the module docstring."""

    name = "sft"
    resume_keys = (
        "init",
        "tokenizer",
        "chat_format",
        "data.train",
        "data.seq_len",
        "train.seed",
        "train.batch_tokens",
    )
    val_metric = "eval_loss"

    def __init__(self, config: SFTConfig, placement: Placement) -> None:
        super().__init__(config, placement)
        self.config: SFTConfig = config
        self.start = Start.of_run(config)
        self.model_config = self.start.model_config
        self.seq_len = seq_len = config.data.seq_len
        if seq_len > self.model_config.max_seq_len:
            raise ConfigError(
                f"data.seq_len {seq_len} exceeds the context length {self.model_config.max_seq_len} "
                f"of {self.start.init}"
            )
        seed, pad_id, fmt = config.train.seed, self.start.tokenizer.eos_id or 0, self.start.chat
        self.train_split = pack_file(config.data.train, fmt, seq_len, seed, pad_id)
        self.val_split = pack_file(config.data.val, fmt, seq_len, seed, pad_id) if config.data.val else None
        self.layout = batch_layout(config.train, seq_len, placement)
        self.sequences_per_step = self.layout.sequences
        packed = len(self.train_split.sequences)
        self.steps = config.train.steps or math.ceil(config.data.epochs * packed / self.sequences_per_step)
        self.fingerprint = fingerprint(self.train_split.sequences)
        self.stream = EpochStream(packed, seed)

    def init_weights(self, model: nn.Module, device: torch.device) -> None:
        """The weights of ``init``, in fp32; a sharded model keeps its slices of them."""
        load_init_weights(model, device, self.start.init)

    # ---- data ------------------------------------------------------------------------------------

    def micro_batches(self) -> list[Batch]:
        """The next ``sequences_per_step`` sequences of the epoch stream; this rank's share in micro-batches."""
        picks = [self.train_split.sequences[i] for i in self.stream.take(self.sequences_per_step)]
        return [stack(list(mine)) for mine in self.layout.split(picks)]

    def count(self, batch: Batch) -> int:
        """The answer tokens of ``batch``: its targets that are not ignored."""
        return int((batch.targets != IGNORE_INDEX).sum())

    def state_dict(self) -> dict[str, Any]:
        return self.stream.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stream.load_state_dict(state)

    # ---- loss, validation, export -----------------------------------------------------------------

    def _loss_sum(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        dev = self.device
        return model(
            batch.inputs.to(dev), document_ids=batch.document_ids.to(dev), targets=batch.targets.to(dev)
        )

    def loss(self, model: nn.Module, batch: Batch) -> LossTerms:
        """Summed cross-entropy of the answer tokens; each packed conversation attends only to itself."""
        return LossTerms(self._loss_sum(model, batch))

    def validate(self, model: nn.Module) -> dict[str, float]:
        """``eval_loss``: the mean loss per answer token of the first ``log.val_batches`` micro-batches of the val file.

        As pretraining's held-out windows, a fixed set: the packing's order is
        drawn from the seed, so it is a sample of the file's conversations (all
        of them when ``log.val_batches`` × ``train.micro_batch_size`` covers the
        packed file).
        """
        mb = self.config.train.micro_batch_size
        limit = self.config.log.val_batches * mb
        sequences = self.val_split.sequences[:limit] if self.val_split is not None else []
        if not sequences:
            return {}
        total, count = 0.0, 0
        for i in range(0, len(sequences), mb):
            batch = stack(sequences[i : i + mb])
            total += float(self._loss_sum(model, batch))
            count += self.count(batch)
        return {"eval_loss": total / count}

    def export(self, state: dict[str, torch.Tensor], out_dir: Path) -> Path:
        """``out_dir/final``: herd's Hugging Face layout with the tokenizer's files (:meth:`Start.write_final`)."""
        tensors = [(name, state[name]) for name in tensor_names(self.model_config)]
        return self.start.write_final(tensors, out_dir / FINAL_DIR)

    def result(
        self, figures: dict[str, Any], validation: dict[str, float], exported: Path | None
    ) -> SFTResult:
        splits = {"train": self.train_split, "val": self.val_split}
        used = {name: split for name, split in splits.items() if split is not None}
        return SFTResult(
            **figures,
            eval_loss=validation.get("eval_loss"),
            final_dir=str(exported) if exported else None,
            tokenizer=str(self.start.tokenizer_source),
            conversations={name: split.conversations for name, split in used.items()},
            packed_sequences=len(self.train_split.sequences),
            epochs=self.stream.epochs,
            skipped_rows={name: dict(split.skipped) for name, split in used.items()},
        )


def sft(config: SFTConfig, *, resume: bool = False, overwrite: bool = False) -> SFTResult:
    """Run (or with ``resume`` continue) supervised fine-tuning; see :func:`herd.train.loop.train`."""
    return cast(SFTResult, train(config, SFTObjective, resume=resume, overwrite=overwrite))
