"""The trainer on one GPU: fp32 follows the CPU curve, bf16 autocast, compile, recomputation, exact resume.

Skipped without CUDA (CI has no GPU); run on a GPU machine with
``python -m pytest tests/train/test_train_cuda.py``. Several GPUs (NCCL,
FSDP2/TP across devices) are covered on CPU processes by
test_train_distributed.py; the same code picks NCCL when the device is CUDA.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import losses, tiny_config_dict
from herd.train.config import config_from_dict
from herd.train.loop import Trainer, pretrain

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _run(dataset_dir: Path, out: Path, **train: object) -> dict[int, float]:
    pretrain(config_from_dict(tiny_config_dict(dataset_dir, out, train={"steps": 12, **train})))
    return losses(out)


def _max_rel(a: dict[int, float], b: dict[int, float]) -> float:
    assert sorted(a) == sorted(b)
    return max(abs(a[k] - b[k]) / abs(b[k]) for k in a)


def test_cuda_fp32_follows_the_cpu_curve(dataset_dir: Path, tmp_path: Path) -> None:
    """Same seed, data and fp32 arithmetic: only kernel rounding differs (TF32 stays off)."""
    cpu = _run(dataset_dir, tmp_path / "cpu", device="cpu")
    gpu = _run(dataset_dir, tmp_path / "gpu", device="cuda", dtype="fp32")
    assert _max_rel(gpu, cpu) < 1e-4


def test_cuda_bf16_autocast_learns_close_to_fp32(dataset_dir: Path, tmp_path: Path) -> None:
    """``dtype = "auto"`` is bf16 autocast on a GPU: the first loss within bf16 rounding, the curve close."""
    fp32 = _run(dataset_dir, tmp_path / "fp32", device="cuda", dtype="fp32")
    bf16 = _run(dataset_dir, tmp_path / "bf16", device="cuda")
    assert bf16[1] == pytest.approx(fp32[1], rel=1e-2)
    assert _max_rel(bf16, fp32) < 5e-2
    assert bf16[12] < 0.8 * bf16[1]


@pytest.mark.parametrize("mode", ["none", "selective", "full"])
def test_cuda_compile_and_recomputation_match_eager(dataset_dir: Path, tmp_path: Path, mode: str) -> None:
    eager = _run(dataset_dir, tmp_path / "eager", device="cuda", dtype="fp32")
    compiled = _run(
        dataset_dir,
        tmp_path / mode,
        device="cuda",
        dtype="fp32",
        compile=True,
        activation_checkpointing=mode,
    )
    assert _max_rel(compiled, eager) < 1e-4


def test_cuda_crash_then_resume_continues_exactly(
    dataset_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checkpoint holds the CUDA RNG state and optimizer moments: the resumed curve is the same."""
    full = _run(dataset_dir, tmp_path / "full", device="cuda")
    config = config_from_dict(
        tiny_config_dict(dataset_dir, tmp_path / "run", train={"steps": 12, "device": "cuda"})
    )
    original = Trainer.train_step

    def crash_at_six(self: Trainer) -> tuple[float, float, float]:
        if self.step == 6:
            raise RuntimeError("simulated node failure")
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", crash_at_six)
    with pytest.raises(RuntimeError, match="simulated"):
        pretrain(config)
    monkeypatch.setattr(Trainer, "train_step", original)
    pretrain(config, resume=True)
    resumed = losses(tmp_path / "run")
    assert resumed == full, f"max relative difference {_max_rel(resumed, full):.2e}"
