"""Pretraining as an :class:`~herd.train.objective.Objective`: next-token prediction on token shards.

Llama 1 §2.1–2.2, Llama 2 §2.2, Llama 3 §3.1–3.4. The data is a mixture of the
sources of a ``herd-tokens-v1`` dataset (:mod:`herd.train.dataset`): an unset
``model.vocab_size`` is the manifest's, a set one must hold every token id; the
model starts from the seeded Llama initialisation, or with ``init`` from a
checkpoint's weights (continued pretraining: Code Llama §2.4's long-context
fine-tuning continues Llama 2 with RoPE θ raised to 1e6); the loss is the summed
next-token cross-entropy of every position, normalised by the step's token
count (fixed: sequences × seq_len); validation reports the held-out loss in
nats per token and in bits per byte; the export is herd's Hugging Face layout
with the tokenizer the dataset's manifest names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from herd.checkpoint.base import SIDE_FILES_EXTRA, CheckpointInfo, find_side_files, tensor_names
from herd.checkpoint.hf import write_hf
from herd.checkpoint.load import open_checkpoint
from herd.errors import CheckpointError, ConfigError
from herd.io.token_shards import MANIFEST, DataError, Source, TokenDataset
from herd.train.config import PretrainConfig
from herd.train.dataset import (
    Batch,
    MixtureSampler,
    bytes_per_token,
    read_windows,
    usable_sources,
    validation_windows,
)
from herd.train.init import load_init_weights, resolve_init
from herd.train.objective import (
    LossTerms,
    Objective,
    Placement,
    RunResult,
    allocate,
    batch_layout,
    is_meta,
)


@dataclass
class PretrainResult(RunResult):
    """What a finished pretraining run reports (also written to ``<out_dir>/summary.json``)."""

    val_loss: float | None = None
    val_bpb: float | None = None
    hf_dir: str | None = None
    hf_tokenizer: str | None = None  # the dataset's tokenizer directory whose files the export carries
    init: str | None = (
        None  # the checkpoint the run started from (continued pretraining); None: random weights
    )

    def report(self) -> str:
        """A short Markdown section for the demo report (the loss plot is linked, not embedded)."""
        val = f"{self.val_loss:.4f}" if self.val_loss is not None else "n/a"
        bpb = f"{self.val_bpb:.4f}" if self.val_bpb is not None else "n/a"
        lines = [
            "## Pretraining",
            *(
                [f"- started from {self.init} (continued pretraining: its weights, a fresh optimizer)"]
                if self.init
                else []
            ),
            f"- steps: {self.steps} ({self.tokens:,} tokens); final train loss {self.final_loss:.4f}",
            f"- validation loss {val} nats/token, {bpb} bits/byte",
            f"- throughput {self.tokens_per_s:,.0f} tokens/s, MFU {100 * self.mfu:.1f}%, goodput {100 * self.goodput:.1f}%",
            f"- skipped steps {self.skipped_steps}, rollbacks {self.rollbacks}, restarts {self.restarts}",
        ]
        if self.loss_plot:
            lines.append(f"- loss curve: ![loss]({self.loss_plot})")
        if self.hf_dir:
            lines.append(f"- weights (Hugging Face layout): {self.hf_dir}; {self.tokenizer_note()}")
        return "\n".join(lines) + "\n"

    def tokenizer_note(self) -> str:
        """Whether the exported weights carry their tokenizer, in words."""
        if self.hf_tokenizer:
            return f"with the tokenizer from {self.hf_tokenizer}"
        return "no tokenizer (the dataset's manifest names none): copy its files in before generating"


def with_data_vocab(config: PretrainConfig, dataset: TokenDataset) -> PretrainConfig:
    """``config`` with an unset ``model.vocab_size`` taken from the dataset; a set one checked against its ids.

    The model's embedding must hold every token id of the data (an id outside it
    is an index error on a CPU and a device-side assert on a GPU, long after
    start-up) and every id of the tokenizer that made it (the manifest's
    ``vocab_size``), or the model could not be used with that tokenizer.
    """
    largest = dataset.max_token_id()
    if config.vocab_from_data:
        manifest = dataset.path / MANIFEST
        if not dataset.vocab_size:
            raise ConfigError(
                f"{manifest}: records no vocab_size, so model.vocab_size must be set "
                f"(to at least {largest + 1}, the largest token id + 1)"
            )
        if largest >= dataset.vocab_size:
            raise DataError(
                f"{manifest}: token id {largest} is outside the vocabulary it records "
                f"(vocab_size {dataset.vocab_size})"
            )
        return config.with_vocab_size(dataset.vocab_size)
    vocab_size = config.model_config().vocab_size
    unset = (
        f"; leave model.vocab_size unset to take the data's {dataset.vocab_size}"
        if dataset.vocab_size > largest
        else ""
    )
    if vocab_size <= largest:
        raise ConfigError(
            f"model.vocab_size {vocab_size} is too small for {dataset.path}: it holds token id {largest} "
            f"(vocab_size must be at least {largest + 1}){unset}"
        )
    if vocab_size < dataset.vocab_size:
        raise ConfigError(
            f"{dataset.path}: token vocabulary {dataset.vocab_size} exceeds the model's vocab_size "
            f"{vocab_size}{unset}"
        )
    return config


#: Where a pretraining run writes its final weights (Hugging Face layout) under ``out_dir``.
EXPORT_DIR = "hf"


def run_export(path: Path) -> Path:
    """``path``, or its export ``hf/`` when ``path`` is a pretraining run's directory rather than a checkpoint."""
    export = path / EXPORT_DIR
    if path.is_dir() and not (path / "config.json").is_file() and (export / "config.json").is_file():
        return export
    return path


def init_checkpoint(init: str) -> Path:
    """The checkpoint ``init`` names (:func:`resolve_init`); a herd run's directory stands for its export ``hf/``.

    A path that does not exist is a one-line :class:`ConfigError` naming it.
    """
    path = run_export(resolve_init(init))
    if not path.exists():
        raise ConfigError(f"init: no such checkpoint: {init} (a Hugging Face or Meta directory, a GGUF file)")
    return path


def with_init_model(config: PretrainConfig) -> tuple[PretrainConfig, Path | None]:
    """``config`` with the model shape of its ``init`` checkpoint (:meth:`PretrainConfig.with_init_model`), and that checkpoint."""
    if not config.init:
        return config, None
    path = init_checkpoint(config.init)
    with open_checkpoint(path) as reader:
        base = reader.config
    return config.with_init_model(base, str(path)), path


def _mixture_weights(config: PretrainConfig, sources: tuple[Source, ...]) -> list[float]:
    names = [s.name for s in sources]
    unknown = sorted(set(config.data.weights) - set(names))
    if unknown:
        raise ConfigError(
            f"data.weights: unknown source(s) {', '.join(unknown)} (dataset has {', '.join(names)})"
        )
    weights = [config.data.weights.get(s.name, s.weight) for s in sources]
    if sum(weights) <= 0:
        raise ConfigError("data.weights: the mixture weights sum to 0")
    return weights


class PretrainObjective(Objective[Batch]):
    """Next-token prediction on the token shards of ``data.path``, from a random initialisation or ``init``."""

    name = "pretrain"
    resume_keys = ("model", "data.path", "data.seq_len", "data.weights", "train.seed", "train.batch_tokens")
    val_metric = "val_loss"

    def __init__(self, config: PretrainConfig, placement: Placement) -> None:
        super().__init__(config, placement)
        config, self.init = with_init_model(config)
        self.dataset = TokenDataset.open(config.data.path)
        self.config = config = with_data_vocab(config, self.dataset)
        self.model_config = config.model_config()
        tokenizer_dir = self.dataset.tokenizer_dir
        self.tokenizer_files = find_side_files(tokenizer_dir) if tokenizer_dir is not None else []
        self.seq_len = seq_len = config.data.seq_len
        train_sources = usable_sources(self.dataset.splits["train"], seq_len)
        self.sampler = MixtureSampler(
            train_sources, seq_len, _mixture_weights(config, train_sources), config.train.seed
        )
        self.layout = batch_layout(config.train, seq_len, placement)
        self.val_sources = self.dataset.splits.get("val", ())
        self.val_picks = validation_windows(
            self.val_sources, seq_len, config.log.val_batches * config.train.micro_batch_size
        )
        self.steps = config.train.steps
        self.sequences_per_step = self.layout.sequences
        self.fingerprint = self.dataset.fingerprint

    def init_weights(self, model: nn.Module, device: torch.device) -> None:
        """The ``init`` checkpoint's weights, else the seeded Llama initialisation (:meth:`Transformer.init_weights`).

        Either is the same for every sharding. A resumed run then replaces them
        with its own checkpoint's.
        """
        if self.init is not None:
            load_init_weights(model, device, self.init)
            return
        if is_meta(model):
            allocate(model, device)
        model.init_weights(seed=self.config.train.seed)

    # ---- data ------------------------------------------------------------------------------------

    def micro_batches(self) -> list[Batch]:
        """The next ``sequences_per_step`` windows of the mixture; this rank's share, read from the shards."""
        picks = self.sampler.draw(self.layout.sequences)
        return [read_windows(self.sampler.sources, mine, self.seq_len) for mine in self.layout.split(picks)]

    def count(self, batch: Batch) -> int:
        """Every position has a target: the batch's token count."""
        return batch.targets.numel()

    def state_dict(self) -> dict[str, Any]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        taken = state.get("taken")
        if not isinstance(taken, list) or not all(
            isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in taken
        ):
            raise ValueError(f"taken: expected a list of integers >= 0, got {taken!r}")
        self.sampler.load_state_dict(state)

    def check_fingerprint(self, saved: str, checkpoint: Path) -> None:
        if saved != self.fingerprint:
            raise CheckpointError(
                f"{self.config.data.path}: the dataset changed since checkpoint {checkpoint} was written (its "
                "manifest or shard sizes differ), so the resumed run would not continue the same data; point "
                "data.path at the original dataset, or start a new run"
            )

    # ---- loss, validation, export -----------------------------------------------------------------

    def _loss_sum(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """Summed next-token cross-entropy (fp32), attention kept inside each document unless data.document_mask is off."""
        dev = self.device
        doc_ids = batch.document_ids.to(dev) if self.config.data.document_mask else None
        return model(batch.inputs.to(dev), document_ids=doc_ids, targets=batch.targets.to(dev))

    def loss(self, model: nn.Module, batch: Batch) -> LossTerms:
        return LossTerms(self._loss_sum(model, batch))

    def validate(self, model: nn.Module) -> dict[str, float]:
        """``val_loss`` (nats/token) and, when the manifest counts bytes, ``val_bpb`` on the held-out windows."""
        if not self.val_picks:
            return {}
        mb = self.config.train.micro_batch_size
        total = torch.zeros((), dtype=torch.float64)
        for i in range(0, len(self.val_picks), mb):
            batch = read_windows(self.val_sources, self.val_picks[i : i + mb], self.seq_len)
            total += self._loss_sum(model, batch).cpu().double()
        loss = float(total) / (len(self.val_picks) * self.seq_len)
        bpb = loss / math.log(2) / bytes_per_token(self.val_sources)
        return {"val_loss": loss} | ({"val_bpb": bpb} if math.isfinite(bpb) else {})

    def export(self, state: dict[str, torch.Tensor], out_dir: Path) -> Path:
        """``out_dir/hf``: herd's Hugging Face layout (loadable by transformers) with the data's tokenizer.

        The tokenizer files the dataset's manifest names are written next to the
        weights, so ``herd generate OUT_DIR/hf`` and ``herd.load_tokenizer`` work on
        the directory as it is.
        """
        tensors = [(name, state[name]) for name in tensor_names(self.model_config)]
        info = CheckpointInfo(self.model_config, extras={SIDE_FILES_EXTRA: self.tokenizer_files})
        return write_hf(out_dir / EXPORT_DIR, info, tensors)

    def result(
        self, figures: dict[str, Any], validation: dict[str, float], exported: Path | None
    ) -> PretrainResult:
        tokenizer = self.dataset.tokenizer_dir if exported and self.tokenizer_files else None
        return PretrainResult(
            **figures,
            val_loss=validation.get("val_loss"),
            val_bpb=validation.get("val_bpb"),
            hf_dir=str(exported) if exported else None,
            hf_tokenizer=str(tokenizer) if tokenizer else None,
            init=str(self.init) if self.init else None,
        )
