"""The pretraining loop: ``pretrain(config) -> PretrainResult`` (Llama 1 §2.2–2.4, Llama 2 §2.2, Llama 3 §3.3–3.4).

The trainer, step by step:

1. Join the torchrun process group (if any) and pick the device and numerics:
   bf16 autocast on GPU, fp32 on CPU.
2. Open the token shards (an unset ``model.vocab_size`` is the manifest's, a
   set one must hold every token id) and build the mixture sampler; the
   global batch of ``batch_tokens / seq_len`` sequences is split over the
   data-parallel processes and ``micro_batch_size``-sized forward passes
   (gradient accumulation), so the update does not depend on the world size.
3. Build the model (seeded Llama init), apply activation checkpointing, shard
   it (DDP / FSDP2 / TP) and optionally ``torch.compile`` each block.
4. Build AdamW and the warmup-cosine schedule.
5. Prepare ``out_dir`` (``herd.train.outdir``: a new run never writes over
   an old one); with ``resume``, restore model, optimizer, step, data
   position, fault detector and RNG from the newest checkpoint, after checking
   the config and that the dataset is the one it was trained on.
6. Each step: set the LR; for each micro-batch run the document-masked forward
   pass, sum the token cross-entropy divided by the global token count, and
   backpropagate (gradients are synchronised only on the last micro-batch);
   clip the global gradient norm to 1.0.
7. Check the step (Llama 3 §3.3.4): a NaN/Inf loss or gradient norm, or a
   loss spike, skips the update or rolls back to the last checkpoint
   (the data position still moves past the bad batch, as PaLM §5.1 did).
8. Otherwise step AdamW; log loss, LR, grad norm, tokens/s and MFU;
   periodically evaluate validation loss and bits per byte, and checkpoint.
9. At the end: validate, checkpoint, export the weights in herd's Hugging Face
   layout with the tokenizer the dataset's manifest names, plot the loss
   curve and write ``summary.json`` with goodput.

A crash (any exception that is not a user error) restarts from the last
checkpoint up to ``fault.max_restarts`` times.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

from herd.checkpoint.base import SIDE_FILES_EXTRA, CheckpointInfo, find_side_files, tensor_names
from herd.checkpoint.hf import write_hf
from herd.errors import ConfigError, HerdError
from herd.io.atomic import atomic_file
from herd.io.token_shards import MANIFEST, DataError, Source, TokenDataset
from herd.model.build import build_model, empty_model
from herd.model.info import model_info
from herd.train import checkpointing
from herd.train.config import PretrainConfig
from herd.train.dataset import (
    Batch,
    MixtureSampler,
    bytes_per_token,
    read_windows,
    usable_sources,
    validation_windows,
)
from herd.train.distributed import Runtime, init_runtime, materialize, parallelize, shutdown, strategy_of
from herd.train.faults import BadStepDetector
from herd.train.metrics import MetricsLogger, mfu, peak_flops, plot_losses, read_metrics
from herd.train.optim import build_optimizer, clip_grad_norm
from herd.train.outdir import LOSS_PLOT, SUMMARY_FILE, StartMode, prepare
from herd.train.recompute import apply_activation_checkpointing
from herd.train.schedule import LRSchedule


@dataclass
class PretrainResult:
    """What a finished run reports (also written to ``<out_dir>/summary.json``)."""

    out_dir: str
    steps: int
    tokens: int
    final_loss: float
    val_loss: float | None
    val_bpb: float | None
    tokens_per_s: float
    mfu: float
    goodput: float
    skipped_steps: int
    rollbacks: int
    restarts: int = 0
    hf_dir: str | None = None
    hf_tokenizer: str | None = None  # the dataset's tokenizer directory whose files the export carries
    loss_plot: str | None = None
    metrics: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def report(self) -> str:
        """A short Markdown section for the demo report (the loss plot is linked, not embedded)."""
        val = f"{self.val_loss:.4f}" if self.val_loss is not None else "n/a"
        bpb = f"{self.val_bpb:.4f}" if self.val_bpb is not None else "n/a"
        lines = [
            "## Pretraining",
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


class Trainer:
    """One attempt at a run (see the module docstring for the steps)."""

    def __init__(self, config: PretrainConfig, *, start: StartMode = "new", lost_wall_s: float = 0.0) -> None:
        self.start_time = time.perf_counter()
        self.config = config
        self.out_dir = Path(config.out_dir)
        # 1. processes, device, numerics
        self.runtime = init_runtime(config.train.device)
        dev = self.runtime.device
        use_bf16 = config.train.dtype == "bf16" or (config.train.dtype == "auto" and dev.type == "cuda")
        self.autocast_dtype = torch.bfloat16 if use_bf16 else None
        torch.manual_seed(config.train.seed)
        # 2. data, and the model's vocabulary from it
        self.dataset = TokenDataset.open(config.data.path)
        self.config = config = with_data_vocab(config, self.dataset)
        self.model_config = config.model_config()
        tokenizer_dir = self.dataset.tokenizer_dir
        self.tokenizer_files = find_side_files(tokenizer_dir) if tokenizer_dir is not None else []
        seq_len = config.data.seq_len
        train_sources = usable_sources(self.dataset.splits["train"], seq_len)
        self.sampler = MixtureSampler(
            train_sources, seq_len, _mixture_weights(config, train_sources), config.train.seed
        )
        self.tp = config.parallel.tp
        self.dp_size = self.runtime.world_size // self.tp
        self.dp_rank = self.runtime.rank // self.tp
        self.seqs_per_step, self.accum = self._batch_layout()
        val_sources = self.dataset.splits.get("val", ())
        self.val_sources = val_sources
        self.val_picks = validation_windows(
            val_sources, seq_len, config.log.val_batches * config.train.micro_batch_size
        )
        # 3. model
        # Sharded runs build on the meta device and allocate only their shards (see materialize).
        sharded = config.parallel.tp > 1 or strategy_of(config.parallel, self.runtime) == "fsdp"
        if sharded:
            model = empty_model(self.model_config, "meta")
        else:
            model = build_model(self.model_config, device=dev, seed=config.train.seed)
        apply_activation_checkpointing(model, config.train.activation_checkpointing)
        self.model, self.strategy = parallelize(model, config.parallel, self.runtime)
        if sharded:
            materialize(model, dev, config.train.seed)
        if config.train.compile:
            for block in model.layers:
                block.compile()
        # 4. optimizer and schedule
        self.optimizer = build_optimizer(self.model, config.optim)
        self.schedule = LRSchedule(
            config.optim.lr,
            config.train.steps,
            config.schedule.warmup_steps,
            config.schedule.min_lr_ratio,
            config.schedule.anneal_steps,
        )
        self.detector = BadStepDetector(config.fault.spike_factor, config.fault.spike_warmup)
        self.step = 0
        self.counted_s = 0.0
        self.prior_wall_s = lost_wall_s
        self.skipped = 0
        self.rollbacks = 0
        self.last_checkpoint_time = self.start_time
        # 5. out_dir and resume
        latest = prepare(self.out_dir, start, self.runtime)
        if latest is not None:
            self._restore(latest, check=True)
        self.flops_per_token = model_info(self.model_config, seq_len).training_flops_per_token
        self.peak = peak_flops(dev)
        self.logger = MetricsLogger(
            self.out_dir,
            total_steps=config.train.steps,
            start_step=self.step,
            enabled=self.runtime.is_main,
            progress=config.log.progress,
            tensorboard=config.log.tensorboard,
        )
        if latest is not None:
            self.logger.event(self.step, f"resumed from {latest}")

    def _batch_layout(self) -> tuple[int, int]:
        """Sequences per global step and micro-batches per process per step."""
        c = self.config
        seqs, rest = divmod(c.train.batch_tokens, c.data.seq_len)
        per_pass = self.dp_size * c.train.micro_batch_size
        if rest or seqs % per_pass or not seqs:
            raise ConfigError(
                f"train.batch_tokens ({c.train.batch_tokens}) must be a multiple of data.seq_len "
                f"({c.data.seq_len}) × data-parallel processes ({self.dp_size}) × "
                f"train.micro_batch_size ({c.train.micro_batch_size})"
            )
        return seqs, seqs // per_pass

    # ---- state -------------------------------------------------------------------------------

    def _trainer_state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "data": self.sampler.state_dict(),
            "fault": self.detector.state_dict(),
            "counted_s": self.counted_s,
            "wall_s": self._wall_s(),
            "skipped": self.skipped,
            "rollbacks": self.rollbacks,
            "world_size": self.runtime.world_size,
            "config": self.config.to_dict(),
            "data_fingerprint": self.dataset.fingerprint,
        }

    def _wall_s(self) -> float:
        return self.prior_wall_s + time.perf_counter() - self.start_time

    def _restore(self, path: Path, *, check: bool, keep_data_position: bool = False) -> None:
        saved = checkpointing.read_trainer_state(path)
        if check:
            checkpointing.check_compatible(saved["config"], self.config.to_dict(), path)
            checkpointing.check_data(saved, self.dataset.fingerprint, self.config.data.path, path)
        state = checkpointing.load_checkpoint(path, self.model, self.optimizer, self.runtime)
        self.step = int(state["step"])
        self.detector.load_state_dict(state["fault"])
        if not keep_data_position:
            self.sampler.load_state_dict(state["data"])
            self.counted_s = float(state["counted_s"])
            self.prior_wall_s += float(state["wall_s"])
            self.skipped = int(state["skipped"])
            self.rollbacks = int(state["rollbacks"])

    def save(self) -> Path:
        path = checkpointing.save_checkpoint(
            self.out_dir,
            self.step,
            self.model,
            self.optimizer,
            self._trainer_state(),
            self.runtime,
            self.config.checkpoint.keep,
        )
        self.last_checkpoint_time = time.perf_counter()
        return path

    # ---- one step ------------------------------------------------------------------------------

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.runtime.device.type, dtype=self.autocast_dtype)

    def _loss_sum(self, batch: Batch) -> torch.Tensor:
        """Summed next-token cross-entropy (fp32) of one micro-batch."""
        dev = self.runtime.device
        doc_ids = batch.document_ids.to(dev) if self.config.data.document_mask else None
        with self._autocast():
            return self.model(batch.inputs.to(dev), document_ids=doc_ids, targets=batch.targets.to(dev))

    def _sync(self, last: bool) -> contextlib.AbstractContextManager:
        """Skip the gradient all-reduce on all but the last micro-batch of a step."""
        if self.strategy == "ddp" and not last:
            return self.model.no_sync()
        if self.strategy == "fsdp":
            self.model.set_requires_gradient_sync(last)
        return contextlib.nullcontext()

    def _micro_batches(self) -> Iterator[Batch]:
        picks = self.sampler.draw(self.seqs_per_step)
        per_rank = self.seqs_per_step // self.dp_size
        mine = picks[self.dp_rank * per_rank : (self.dp_rank + 1) * per_rank]
        mb = self.config.train.micro_batch_size
        for i in range(self.accum):
            yield read_windows(self.sampler.sources, mine[i * mb : (i + 1) * mb], self.config.data.seq_len)

    def _grad_norm(self) -> float:
        return clip_grad_norm(self.model, self.config.optim.grad_clip, mixed_dtensor=self.tp > 1)

    def train_step(self) -> tuple[float, float, float]:
        """Steps 6–8 for one global batch: (loss, grad norm, lr); the update may be skipped."""
        lr = self.schedule(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        global_tokens = self.seqs_per_step * self.config.data.seq_len
        # Each process's share is scaled so that the data-parallel mean of gradients is the global mean.
        scale = self.dp_size / global_tokens
        local = torch.zeros((), dtype=torch.float64)
        for i, batch in enumerate(self._micro_batches()):
            with self._sync(i == self.accum - 1):
                loss_sum = self._loss_sum(batch)
                (loss_sum * scale).backward()
            local += loss_sum.detach().cpu().double()
        loss = float(self.runtime.sum(local)) / (global_tokens * self.tp)
        grad_norm = self._grad_norm()
        return loss, grad_norm, lr

    # ---- validation and export ------------------------------------------------------------------

    @torch.no_grad()
    def validate(self) -> tuple[float, float] | None:
        """Mean validation loss (nats/token) and bits per byte on the held-out split, or None."""
        if not self.val_picks:
            return None
        self.model.eval()
        mb = self.config.train.micro_batch_size
        total = torch.zeros((), dtype=torch.float64)
        for i in range(0, len(self.val_picks), mb):
            batch = read_windows(self.val_sources, self.val_picks[i : i + mb], self.config.data.seq_len)
            total += self._loss_sum(batch).cpu().double()
        self.model.train()
        loss = float(total) / (len(self.val_picks) * self.config.data.seq_len)
        return loss, loss / math.log(2) / bytes_per_token(self.val_sources)

    def export_hf(self) -> Path | None:
        """The final weights in herd's Hugging Face layout (loadable by transformers), with the data's tokenizer.

        The tokenizer files the dataset's manifest names are written next to the
        weights, so ``herd generate OUT_DIR/hf`` and ``herd.load_tokenizer`` work on
        the directory as it is.
        """
        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        state = get_model_state_dict(self.model, options=options)
        if not self.runtime.is_main:
            return None
        tensors = [(name, state[name]) for name in tensor_names(self.model_config)]
        info = CheckpointInfo(self.model_config, extras={SIDE_FILES_EXTRA: self.tokenizer_files})
        return write_hf(self.out_dir / "hf", info, tensors)

    # ---- the loop --------------------------------------------------------------------------------

    def _handle_bad_step(self, reason: str) -> None:
        """Step 7: skip the update, or roll model and optimizer back to the last checkpoint."""
        self.optimizer.zero_grad(set_to_none=True)
        latest = checkpointing.latest_checkpoint(self.out_dir)
        if self.config.fault.policy == "rollback" and latest is not None:
            self._restore(latest, check=False, keep_data_position=True)
            self.rollbacks += 1
            self.logger.event(self.step, f"{reason}: rolled back to {latest.name}, skipping the bad data")
            return
        self.skipped += 1
        self.step += 1
        self.logger.event(self.step, f"{reason}: update skipped")

    def run(self) -> PretrainResult:
        """Steps 6–9 until ``train.steps``; returns the result (on every process)."""
        c = self.config
        self.model.train()
        global_tokens = self.seqs_per_step * c.data.seq_len
        last: dict[str, Any] = {}
        while self.step < c.train.steps:
            start = time.perf_counter()
            loss, grad_norm, lr = self.train_step()
            reason = self.detector.check(loss, grad_norm)
            if reason is not None:
                self._handle_bad_step(reason)
                continue
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.detector.update(loss)
            self.step += 1
            elapsed = time.perf_counter() - start
            self.counted_s += elapsed
            tps = global_tokens / elapsed
            last = {
                "step": self.step,
                "loss": loss,
                "lr": lr,
                "grad_norm": grad_norm,
                "tokens": self.step * global_tokens,
                "tokens_per_s": tps,
                "mfu": mfu(self.flops_per_token, tps, self.peak, self.runtime.world_size),
                "step_s": elapsed,
            }
            if self.step % c.log.every == 0 or self.step == c.train.steps:
                self.logger.log(last)
            if c.log.val_every and self.step % c.log.val_every == 0 and self.step < c.train.steps:
                self._log_validation()
            if self.step % c.checkpoint.every == 0 and self.step < c.train.steps:
                self.save()
        return self._finish(last)

    def _log_validation(self) -> tuple[float, float] | None:
        val = self.validate()
        if val is not None:
            record = {"step": self.step, "val_loss": val[0]}
            if math.isfinite(val[1]):  # the manifest has byte counts
                record["val_bpb"] = val[1]
            self.logger.log(record)
        return val

    def _finish(self, last: dict[str, Any]) -> PretrainResult:
        c = self.config
        val = self._log_validation()
        self.save()
        hf_dir = self.export_hf() if c.checkpoint.export_hf else None
        wall = self._wall_s()
        records = read_metrics(self.logger.path) if self.runtime.is_main else []
        steps = [r for r in records if "loss" in r]
        # Throughput over the logged steps: their tokens over their time (not a mean of per-step rates).
        step_tokens = self.seqs_per_step * c.data.seq_len
        timed = sum(r["step_s"] for r in steps)
        tokens_per_s = step_tokens * len(steps) / timed if timed else 0.0
        plot = plot_losses(records, self.out_dir / LOSS_PLOT) if self.runtime.is_main else None
        result = PretrainResult(
            out_dir=str(self.out_dir),
            steps=self.step,
            tokens=self.step * self.seqs_per_step * c.data.seq_len,
            final_loss=last.get("loss", steps[-1]["loss"] if steps else math.nan),
            val_loss=val[0] if val else None,
            val_bpb=val[1] if val and math.isfinite(val[1]) else None,
            tokens_per_s=tokens_per_s,
            mfu=mfu(self.flops_per_token, tokens_per_s, self.peak, self.runtime.world_size),
            goodput=self.counted_s / wall if wall else 0.0,
            skipped_steps=self.skipped,
            rollbacks=self.rollbacks,
            hf_dir=str(hf_dir) if hf_dir else None,
            hf_tokenizer=str(self.dataset.tokenizer_dir) if hf_dir and self.tokenizer_files else None,
            loss_plot=str(plot) if plot else None,
            metrics=str(self.logger.path),
            extra={
                "strategy": self.strategy,
                "world_size": self.runtime.world_size,
                "device": str(self.runtime.device),
            },
        )
        if self.runtime.is_main:
            self.logger.log({"step": self.step, "goodput": result.goodput, "wall_s": wall})
            with atomic_file(self.out_dir / SUMMARY_FILE) as tmp:
                tmp.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
        self.logger.close()
        return result

    def close(self) -> None:
        self.logger.close()


def pretrain(config: PretrainConfig, *, resume: bool = False, overwrite: bool = False) -> PretrainResult:
    """Run (or with ``resume`` continue) pretraining; restart after crashes up to ``fault.max_restarts``.

    Without ``resume``, an ``out_dir`` that holds another run is refused
    unless ``overwrite`` (which removes that run's files first); with
    ``resume`` a checkpoint must exist. A crash restart continues from the
    crashed attempt's last checkpoint, or from step 0 if it wrote none.
    """
    if resume and overwrite:
        raise ConfigError("resume and overwrite exclude each other: continue the run or replace it")
    first: StartMode = "resume" if resume else "overwrite" if overwrite else "new"
    restarts = 0
    lost = 0.0
    crash = ""
    runtime: Runtime | None = None
    try:
        while True:
            trainer = None
            try:
                trainer = Trainer(config, start="restart" if restarts else first, lost_wall_s=lost)
                runtime = trainer.runtime
                if crash:
                    trainer.logger.event(trainer.step, f"restart {restarts} after a crash ({crash})")
                result = trainer.run()
                result.restarts = restarts
                return result
            except (HerdError, KeyboardInterrupt):
                raise
            except Exception as exc:
                if trainer is None or restarts >= config.fault.max_restarts:
                    raise
                restarts += 1
                crash = f"{type(exc).__name__}: {exc}"
                # Time since the last checkpoint is lost work: it counts as wall time, not goodput.
                lost += time.perf_counter() - trainer.last_checkpoint_time
                trainer.close()
    finally:
        if runtime is not None:
            shutdown(runtime)
