"""What a run reports: JSONL metrics, TensorBoard, a progress bar, MFU, goodput and a loss plot.

MFU (model FLOPs utilisation, PaLM App. B) = model training FLOPs per token
(``herd.model.info``: 6·N + attention) × tokens/s ÷ the devices' peak FLOP/s;
recomputation from activation checkpointing is not counted, so MFU compares
fairly across settings. Llama 3 §3.3.2 reports 38–43% MFU on H100s. The peak
is looked up for known GPUs (dense bf16 tensor-core figures from the vendors'
data sheets) and measured once with a matmul probe on CPU. Goodput (Llama 3
§3.3.4 "effective training time") is the share of wall time spent in steps
whose update counted.
"""

from __future__ import annotations

import functools
import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from herd.errors import HerdError
from herd.io.atomic import atomic_file
from herd.io.plot import pyplot, save_png

# Dense (no sparsity) peak bf16 FLOP/s per device; matched as substrings of torch.cuda.get_device_name.
GPU_PEAK_FLOPS = {
    "H200": 989e12,
    "H100": 989e12,
    "H800": 989e12,
    "GH200": 989e12,
    "B200": 2250e12,
    "A100": 312e12,
    "A800": 312e12,
    "L40S": 362e12,
    "A10G": 70e12,
    "L4": 121e12,
    "V100": 125e12,
    "4090": 165e12,
    "3090": 71e12,
}

METRICS_FILE = "metrics.jsonl"


def gpu_peak_flops(name: str) -> float | None:
    """The table's peak for a device name such as ``NVIDIA H100 80GB HBM3`` (None if unknown)."""
    for key in sorted(GPU_PEAK_FLOPS, key=len, reverse=True):
        if key in name:
            return GPU_PEAK_FLOPS[key]
    return None


@functools.lru_cache(maxsize=1)
def cpu_peak_flops(size: int = 1024, repeats: int = 20) -> float:
    """Best fp32 matmul throughput of this CPU at the current thread count (FLOP/s), measured once."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def peak_flops(device: torch.device) -> float:
    """Peak FLOP/s of one device: the GPU table, else the CPU probe."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak = gpu_peak_flops(name)
        if peak is not None:
            return peak
    return cpu_peak_flops()


def mfu(flops_per_token: float, tokens_per_s: float, peak_per_device: float, devices: int) -> float:
    """Model FLOPs utilisation as a fraction in [0, 1]."""
    return flops_per_token * tokens_per_s / (peak_per_device * devices)


class MetricsLogger:
    """Writes each record to ``metrics.jsonl`` and TensorBoard, and shows a progress bar (main process)."""

    def __init__(
        self,
        out_dir: Path,
        *,
        total_steps: int,
        start_step: int,
        enabled: bool,
        progress: bool,
        tensorboard: bool,
        desc: str = "pretrain",
    ) -> None:
        self.enabled = enabled
        self.path = Path(out_dir) / METRICS_FILE
        self.bar = None
        self.writer = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._truncate_after(start_step)
        self.file = self.path.open("a")
        if progress:
            from tqdm import tqdm

            self.bar = tqdm(total=total_steps, initial=start_step, desc=desc, unit="step")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                pass
            else:
                self.writer = SummaryWriter(str(Path(out_dir) / "tensorboard"), purge_step=start_step + 1)

    def _truncate_after(self, step: int) -> None:
        """Drop records past ``step`` left by a killed run, so a resumed run's log has each step once.

        The file is replaced atomically; a last line cut short by the kill is dropped.
        """
        if not self.path.is_file():
            return
        kept = [r for r in read_metrics(self.path, partial_last=True) if r.get("step", 0) <= step]
        with atomic_file(self.path) as tmp:
            tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        step = record.get("step", 0)
        if self.writer is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                    self.writer.add_scalar(key, value, step)
        if self.bar is not None and "loss" in record:
            self.bar.n = step
            self.bar.set_postfix(
                loss=f"{record['loss']:.4f}",
                tok_s=f"{record['tokens_per_s']:.0f}",
                mfu=f"{100 * record['mfu']:.1f}%",
                gnorm=f"{record['grad_norm']:.3f}",
                lr=f"{record['lr']:.2e}",
            )

    def log_validation(self, step: int, metrics: dict[str, float]) -> None:
        """The held-out metrics of ``step`` as one record, and one line above the bar."""
        self.log({"step": step, **metrics})
        if self.enabled and self.bar is not None:
            self.bar.write(f"step {step}: " + " ".join(f"{k} {v:.4f}" for k, v in metrics.items()))

    def event(self, step: int, text: str) -> None:
        """A one-line note (skipped step, rollback, restart) in the log and above the bar."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(f"step {step}: {text}")
        self.log({"step": step, "event": text})

    def close(self) -> None:
        if not self.enabled:
            return
        self.file.close()
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()


def read_metrics(path: Path | str, *, partial_last: bool = False) -> list[dict[str, Any]]:
    """Every record of a ``metrics.jsonl``; a line that is not a JSON object is a HerdError naming it.

    With ``partial_last``, an unterminated last line (a write cut short by a
    killed process) is dropped instead.
    """
    text = Path(path).read_text(encoding="utf-8")
    lines = text.splitlines()
    if partial_last and lines and not text.endswith("\n"):
        lines.pop()
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            record = None
        if not isinstance(record, dict) or not isinstance(record.get("step", 0), int):
            raise HerdError(f"{path}:{number}: not a metrics record (expected a JSON object with a step)")
        records.append(record)
    return records


def plot_losses(records: list[dict[str, Any]], dst: Path, val_key: str = "val_loss") -> Path:
    """A PNG of training (and validation: the ``val_key`` records) loss against step."""
    plt = pyplot()
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    val = [(r["step"], r[val_key]) for r in records if val_key in r]
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train, strict=True), label="train", linewidth=1)
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return save_png(fig, dst)
