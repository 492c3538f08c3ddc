"""The trainer: ``train(config, objective)``, and ``pretrain(config) -> PretrainResult`` on it (Llama 1 §2.2–2.4, Llama 2 §2.2, Llama 3 §3.3–3.4).

One loop trains every objective (:mod:`herd.train.objective`: pretraining in
:mod:`herd.train.pretrain_objective`, post-training in :mod:`herd.posttrain`).
The trainer, step by step:

1. Join the torchrun process group (if any) and pick the device and numerics:
   bf16 autocast on GPU, fp32 on CPU.
2. Build the objective, which reads and checks its data (pretraining: the
   token shards, the vocabulary from their manifest, the mixture sampler);
   the global batch of ``batch_tokens / seq_len`` sequences is split over the
   data-parallel processes and ``micro_batch_size``-sized forward passes
   (gradient accumulation), so the update does not depend on the world size.
3. Build the model with the objective's initial weights (pretraining: the
   seeded Llama init), apply activation checkpointing, shard it (DDP / FSDP2 /
   TP; sharded runs build on the meta device and set only their shards) and
   optionally ``torch.compile`` each block.
4. Build AdamW and the warmup-cosine schedule over the objective's steps.
5. Prepare ``out_dir`` (``herd.train.outdir``: a new run never writes over
   an old one); with ``resume``, restore model, optimizer, step, data
   position, fault detector and RNG from the newest checkpoint, after checking
   the config (the objective's ``resume_keys``) and that the data is the one
   it was trained on (its fingerprint). Before restoring, while the model
   holds its initial weights, the objective derives what it needs from them
   (``prepare_run``: DPO's reference log-probabilities).
6. Each step: set the LR; take this process's micro-batches, sum their loss
   units over every process (the step's normaliser, known before any backward
   pass), then for each micro-batch compute the objective's summed loss,
   divide by the global count, and backpropagate (gradients are synchronised
   only on the last micro-batch); clip the global gradient norm to 1.0.
7. Check the step (Llama 3 §3.3.4): a NaN/Inf loss or gradient norm, or a
   loss spike, skips the update or rolls back to the last checkpoint
   (the data position still moves past the bad batch, as PaLM §5.1 did).
8. Otherwise step AdamW; log loss, LR, grad norm, tokens/s, MFU and the
   objective's statistics; periodically run its validation, and checkpoint.
   The objective may end the run after a validation (early stopping,
   ``Objective.should_stop``: Llama 2 §3.2.3 stops PPO on the held-out reward).
9. At the end (of the steps, or stopped early): validate, checkpoint, let the objective export the weights
   (pretraining: herd's Hugging Face layout with the tokenizer the dataset's
   manifest names), plot the loss curve and write ``summary.json`` with goodput.

A crash (any exception that is not a user error) restarts from the last
checkpoint up to ``fault.max_restarts`` times.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import torch
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

from herd.errors import CheckpointError, ConfigError, HerdError
from herd.io.atomic import atomic_file
from herd.model.info import model_info
from herd.train import checkpointing
from herd.train.config import PretrainConfig, RunConfig
from herd.train.distributed import Runtime, decoders, init_runtime, parallelize, shutdown, strategy_of
from herd.train.faults import BadStepDetector
from herd.train.metrics import MetricsLogger, mfu, peak_flops, plot_losses, read_metrics
from herd.train.objective import Objective, Placement, RunResult
from herd.train.optim import build_optimizer, clip_grad_norm
from herd.train.outdir import LOSS_PLOT, SUMMARY_FILE, StartMode, prepare
from herd.train.pretrain_objective import PretrainObjective, PretrainResult
from herd.train.recompute import apply_activation_checkpointing
from herd.train.schedule import LRSchedule

__all__ = ["ObjectiveFactory", "PretrainResult", "Trainer", "pretrain", "train"]

#: What builds a run's objective from its config and this process's placement (an Objective subclass).
ObjectiveFactory = Callable[[RunConfig, Placement], Objective]


class Trainer:
    """One attempt at a run of ``objective`` (see the module docstring for the steps)."""

    def __init__(
        self,
        config: RunConfig,
        *,
        objective: ObjectiveFactory = PretrainObjective,
        start: StartMode = "new",
        lost_wall_s: float = 0.0,
    ) -> None:
        self.start_time = time.perf_counter()
        # 1. processes, device, numerics
        self.runtime = init_runtime(config.train.device)
        dev = self.runtime.device
        use_bf16 = config.train.dtype == "bf16" or (config.train.dtype == "auto" and dev.type == "cuda")
        self.autocast_dtype = torch.bfloat16 if use_bf16 else None
        torch.manual_seed(config.train.seed)
        self.tp = config.parallel.tp
        self.dp_size = self.runtime.world_size // self.tp
        self.dp_rank = self.runtime.rank // self.tp
        # 2. the objective: its data, checked, and the model's shape
        self.objective = objective(config, Placement(self.runtime, self.dp_rank, self.dp_size))
        self.config = config = self.objective.config
        self.out_dir = Path(config.out_dir)
        self.model_config = self.objective.model_config
        self.steps = self.objective.steps
        self.step_tokens = self.objective.sequences_per_step * self.objective.seq_len
        # 3. model
        # Sharded runs build on the meta device and set only their shards once sharded.
        sharded = config.parallel.tp > 1 or strategy_of(config.parallel, self.runtime) == "fsdp"
        model = self.objective.build_model("meta" if sharded else dev)
        if not sharded:
            self.objective.init_weights(model, dev)
        for stack in decoders(model):
            apply_activation_checkpointing(stack, config.train.activation_checkpointing)
        self.model, self.strategy = parallelize(model, config.parallel, self.runtime)
        if sharded:
            self.objective.init_weights(model, dev)
        if config.train.compile:
            for block in (block for stack in decoders(model) for block in stack.layers):
                block.compile()
        # 4. optimizer and schedule
        self.optimizer = build_optimizer(self.model, config.optim)
        self.schedule = LRSchedule(
            config.optim.lr,
            self.steps,
            config.schedule.warmup(self.steps),
            config.schedule.min_lr_ratio,
            config.schedule.anneal_steps,
        )
        self.detector = BadStepDetector(config.fault.spike_factor, config.fault.spike_warmup)
        self.step = 0
        self.step_stats: dict[str, float] = {}
        self.counted_s = 0.0
        self.prior_wall_s = lost_wall_s
        self.skipped = 0
        self.rollbacks = 0
        self.stopped_early: str | None = None
        self.last_checkpoint_time = self.start_time
        # 5. out_dir and resume
        latest = prepare(self.out_dir, start, self.runtime)
        with self._inference():
            self.objective.prepare_run(self.model, self.out_dir)
        if latest is not None:
            self._restore(latest, check=True)
        self.flops_per_token = model_info(self.model_config, self.objective.seq_len).training_flops_per_token
        self.peak = peak_flops(dev)
        self.logger = MetricsLogger(
            self.out_dir,
            total_steps=self.steps,
            start_step=self.step,
            enabled=self.runtime.is_main,
            progress=config.log.progress,
            tensorboard=config.log.tensorboard,
            desc=self.objective.name,
        )
        if latest is not None:
            self.logger.event(self.step, f"resumed from {latest}")

    # ---- state -------------------------------------------------------------------------------

    def _trainer_state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "data": self.objective.state_dict(),
            "fault": self.detector.state_dict(),
            "counted_s": self.counted_s,
            "wall_s": self._wall_s(),
            "skipped": self.skipped,
            "rollbacks": self.rollbacks,
            "stopped_early": self.stopped_early,
            "world_size": self.runtime.world_size,
            "config": self.config.to_dict(),
            "data_fingerprint": self.objective.fingerprint,
        }

    def _wall_s(self) -> float:
        return self.prior_wall_s + time.perf_counter() - self.start_time

    def _restore(self, path: Path, *, check: bool, keep_data_position: bool = False) -> None:
        saved = checkpointing.read_trainer_state(path)
        if check:
            checkpointing.check_compatible(
                saved["config"], self.config.to_dict(), path, self.objective.resume_keys
            )
            self.objective.check_fingerprint(saved["data_fingerprint"], path)
        if not keep_data_position:
            try:
                self.objective.load_state_dict(saved["data"])
            except ValueError as exc:
                raise CheckpointError(
                    f"{path / checkpointing.TRAINER_STATE}: corrupt trainer state (data.{exc})"
                ) from None
        state = checkpointing.load_checkpoint(path, self.model, self.optimizer, self.runtime)
        self.step = int(state["step"])
        self.detector.load_state_dict(state["fault"])
        if not keep_data_position:
            self.counted_s = float(state["counted_s"])
            self.prior_wall_s += float(state["wall_s"])
            self.skipped = int(state["skipped"])
            self.rollbacks = int(state["rollbacks"])
            # A run that stopped early stays stopped when resumed (absent from older checkpoints).
            self.stopped_early = state.get("stopped_early")

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

    def _sync(self, last: bool) -> contextlib.AbstractContextManager:
        """Skip the gradient all-reduce on all but the last micro-batch of a step."""
        if self.strategy == "ddp" and not last:
            return self.model.no_sync()
        if self.strategy == "fsdp":
            self.model.set_requires_gradient_sync(last)
        return contextlib.nullcontext()

    def _grad_norm(self) -> float:
        return clip_grad_norm(self.model, self.config.optim.grad_clip, mixed_dtensor=self.tp > 1)

    def _world_sum(self, values: list[float]) -> list[float]:
        """``values`` summed over every process (tensor-parallel peers, which read the same data, included)."""
        return self.runtime.sum(torch.tensor(values, dtype=torch.float64)).tolist()

    def train_step(self) -> tuple[float, float, float]:
        """Steps 6–8 for one global batch: (loss, grad norm, lr); the update may be skipped.

        The objective's statistics of the step are left in :attr:`step_stats`.
        """
        lr = self.schedule(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batches = self.objective.micro_batches()
        # The step's loss units, known before the first backward pass: the gradient is that of the global mean.
        (world_count,) = self._world_sum([float(sum(self.objective.count(b) for b in batches))])
        count = round(world_count) // self.tp
        # Each process's share is scaled so that the data-parallel mean of gradients is the global mean.
        scale = self.dp_size / count if count else 0.0
        local = torch.zeros((), dtype=torch.float64)
        stats: dict[str, float] = {}
        for i, batch in enumerate(batches):
            with self._sync(i == len(batches) - 1):
                with self._autocast():
                    terms = self.objective.loss(self.model, batch)
                (terms.loss_sum * scale).backward()
            local += terms.loss_sum.detach().cpu().double()
            for key, value in terms.stats.items():
                stats[key] = stats.get(key, 0.0) + value
        total, *stat_sums = self._world_sum([float(local), *stats.values()])
        units = count * self.tp
        loss = total / units if units else math.nan
        self.step_stats = {
            key: value / units if units else math.nan for key, value in zip(stats, stat_sums, strict=True)
        }
        grad_norm = self._grad_norm()
        return loss, grad_norm, lr

    # ---- validation and export ------------------------------------------------------------------

    @contextlib.contextmanager
    def _inference(self) -> Iterator[None]:
        """Eval mode, no gradients, the run's autocast; back to train mode after."""
        self.model.eval()
        try:
            with torch.no_grad(), self._autocast():
                yield
        finally:
            self.model.train()

    def validate(self) -> dict[str, float]:
        """The objective's held-out metrics, in eval mode under the run's autocast (empty without held-out data)."""
        with self._inference():
            return self.objective.validate(self.model)

    def export(self) -> Path | None:
        """Gather the full weights (every process takes part) and let the objective write them (main process)."""
        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        state = get_model_state_dict(self.model, options=options)
        if not self.runtime.is_main:
            return None
        return self.objective.export(state, self.out_dir)

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

    def run(self) -> RunResult:
        """Steps 6–9 until the objective's steps, or until it stops early; returns the result (on every process)."""
        c = self.config
        self.model.train()
        last: dict[str, Any] = {}
        while self.step < self.steps and self.stopped_early is None:
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
            tps = self.step_tokens / elapsed
            last = {
                "step": self.step,
                "loss": loss,
                "lr": lr,
                "grad_norm": grad_norm,
                "tokens": self.step * self.step_tokens,
                "tokens_per_s": tps,
                "mfu": mfu(self.flops_per_token, tps, self.peak, self.runtime.world_size),
                "step_s": elapsed,
                **self.step_stats,
            }
            if self.step % c.log.every == 0 or self.step == self.steps:
                self.logger.log(last)
            if c.log.val_every and self.step % c.log.val_every == 0 and self.step < self.steps:
                validation = self._log_validation()
                self.stopped_early = self.objective.should_stop(validation)
                if self.stopped_early is not None:
                    if self.step % c.log.every:
                        self.logger.log(last)
                    self.logger.event(self.step, f"stopped early: {self.stopped_early}")
                    return self._finish(last, validation)
            if self.step % c.checkpoint.every == 0 and self.step < self.steps:
                self.save()
        return self._finish(last)

    def _log_validation(self) -> dict[str, float]:
        metrics = self.validate()
        if metrics:
            self.logger.log_validation(self.step, metrics)
        return metrics

    def _finish(self, last: dict[str, Any], validation: dict[str, float] | None = None) -> RunResult:
        """Step 9; ``validation``: the metrics of a validation that stopped the run early at this step."""
        if validation is None:
            validation = self._log_validation()
            self.objective.should_stop(validation)  # its state then includes the final validation
        self.save()
        exported = self.export() if self.config.checkpoint.export_hf else None
        wall = self._wall_s()
        records = read_metrics(self.logger.path) if self.runtime.is_main else []
        steps = [r for r in records if "loss" in r]
        # Throughput over the logged steps: their tokens over their time (not a mean of per-step rates).
        timed = sum(r["step_s"] for r in steps)
        tokens_per_s = self.step_tokens * len(steps) / timed if timed else 0.0
        plot = (
            plot_losses(records, self.out_dir / LOSS_PLOT, self.objective.val_metric)
            if self.runtime.is_main
            else None
        )
        figures = {
            "out_dir": str(self.out_dir),
            "steps": self.step,
            "tokens": self.step * self.step_tokens,
            "final_loss": last.get("loss", steps[-1]["loss"] if steps else math.nan),
            "tokens_per_s": tokens_per_s,
            "mfu": mfu(self.flops_per_token, tokens_per_s, self.peak, self.runtime.world_size),
            "goodput": self.counted_s / wall if wall else 0.0,
            "skipped_steps": self.skipped,
            "rollbacks": self.rollbacks,
            "loss_plot": str(plot) if plot else None,
            "metrics": str(self.logger.path),
            "stopped_early": self.stopped_early,
            "extra": {
                "strategy": self.strategy,
                "world_size": self.runtime.world_size,
                "device": str(self.runtime.device),
            },
        }
        result = self.objective.result(figures, validation, exported)
        if self.runtime.is_main:
            self.logger.log({"step": self.step, "goodput": result.goodput, "wall_s": wall})
            with atomic_file(self.out_dir / SUMMARY_FILE) as tmp:
                tmp.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
        self.logger.close()
        return result

    def close(self) -> None:
        self.logger.close()


def train(
    config: RunConfig, objective: ObjectiveFactory, *, resume: bool = False, overwrite: bool = False
) -> RunResult:
    """Run (or with ``resume`` continue) a run of ``objective``; restart after crashes up to ``fault.max_restarts``.

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
                trainer = Trainer(
                    config, objective=objective, start="restart" if restarts else first, lost_wall_s=lost
                )
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


def pretrain(config: PretrainConfig, *, resume: bool = False, overwrite: bool = False) -> PretrainResult:
    """Run (or with ``resume`` continue) pretraining (:class:`PretrainObjective`); see :func:`train`."""
    return cast(PretrainResult, train(config, PretrainObjective, resume=resume, overwrite=overwrite))
