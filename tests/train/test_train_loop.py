"""The single-process trainer: learning, metrics and reports, export, accumulation, recomputation, bad steps."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from conftest import losses, tiny_config_dict, write_toml
from herd.checkpoint.load import load_model
from herd.cli import main
from herd.errors import ConfigError
from herd.train import loop
from herd.train.config import config_from_dict
from herd.train.loop import Trainer, pretrain
from herd.train.metrics import METRICS_FILE, gpu_peak_flops, read_metrics


def test_pretrain_learns_and_reports(dataset_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    raw = tiny_config_dict(
        dataset_dir, out, train={"steps": 30}, log={"val_every": 10}, checkpoint={"export_hf": True}
    )
    result = pretrain(config_from_dict(raw))
    records = read_metrics(out / METRICS_FILE)
    steps = [r for r in records if "loss" in r]
    assert [r["step"] for r in steps] == list(range(1, 31))
    assert steps[-1]["loss"] < steps[0]["loss"] - 1.0
    assert math.log(96) == pytest.approx(steps[0]["loss"], abs=0.3)  # starts near uniform
    for key in ("lr", "grad_norm", "tokens_per_s", "mfu", "tokens"):
        assert all(math.isfinite(r[key]) and r[key] >= 0 for r in steps), key
    vals = [r for r in records if "val_loss" in r]
    assert [r["step"] for r in vals] == [10, 20, 30]
    # bits per byte: nats/token ÷ ln 2 ÷ (bytes/token); the fixture has 3 bytes per token
    assert result.val_bpb == pytest.approx(result.val_loss / math.log(2) / 3)
    assert 0 < result.mfu < 1 and 0 < result.goodput <= 1 and result.tokens == 30 * 256
    assert Path(result.loss_plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "summary.json").is_file()
    assert "MFU" in result.report() and "loss.png" in result.report()


def test_exported_weights_load_in_transformers(dataset_dir: Path, tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    out = tmp_path / "run"
    pretrain(
        config_from_dict(
            tiny_config_dict(dataset_dir, out, train={"steps": 4}, checkpoint={"export_hf": True})
        )
    )
    tokens = torch.randint(0, 96, (2, 20))
    ours = load_model(out / "hf")(tokens)
    hf = transformers.LlamaForCausalLM.from_pretrained(out / "hf").eval()
    with torch.no_grad():
        theirs = hf(tokens).logits
    torch.testing.assert_close(ours.detach(), theirs, atol=1e-4, rtol=1e-4)


def test_gradient_accumulation_matches_one_big_batch(dataset_dir: Path, tmp_path: Path) -> None:
    """Same 8-sequence global batch as 1×8, 2×4 or 8×1: the update is the same up to summation order."""
    runs = {}
    for micro in (8, 2):
        out = tmp_path / f"mb{micro}"
        pretrain(
            config_from_dict(
                tiny_config_dict(dataset_dir, out, train={"steps": 6, "micro_batch_size": micro})
            )
        )
        runs[micro] = losses(out)
    for step, loss in runs[8].items():
        assert runs[2][step] == pytest.approx(loss, rel=1e-5), step


@pytest.mark.parametrize("mode", ["selective", "full"])
def test_activation_checkpointing_does_not_change_the_losses(
    dataset_dir: Path, tmp_path: Path, mode: str
) -> None:
    pretrain(config_from_dict(tiny_config_dict(dataset_dir, tmp_path / "none", train={"steps": 3})))
    raw = tiny_config_dict(dataset_dir, tmp_path / mode, train={"steps": 3, "activation_checkpointing": mode})
    pretrain(config_from_dict(raw))
    assert losses(tmp_path / mode) == pytest.approx(losses(tmp_path / "none"), rel=1e-6)


def test_selective_checkpointing_saves_products_and_attention() -> None:
    """The selective policy keeps matmul and attention outputs, herd's CPU kernel included, and
    recomputes element-wise ops."""
    from torch.utils.checkpoint import CheckpointPolicy

    from herd.kernels import attention
    from herd.train.recompute import _policy

    saved = [torch.ops.aten.mm.default, torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default]
    if attention.LIBRARY.available():
        saved.append(torch.ops.herd.causal_attention.default)
    for op in saved:
        assert _policy(None, op) == CheckpointPolicy.MUST_SAVE, op
    for op in (torch.ops.aten.mul.Tensor, torch.ops.aten.silu.default, torch.ops.aten.rsqrt.default):
        assert _policy(None, op) == CheckpointPolicy.PREFER_RECOMPUTE, op


def _poison(monkeypatch: pytest.MonkeyPatch, at_step: int) -> None:
    """Make the loss of step ``at_step`` NaN once (its batch is still drawn)."""
    original = Trainer.train_step
    done: list[bool] = []

    def poisoned(self: Trainer) -> tuple[float, float, float]:
        loss, norm, lr = original(self)
        if self.step == at_step and not done:
            done.append(True)
            return math.nan, norm, lr
        return loss, norm, lr

    monkeypatch.setattr(Trainer, "train_step", poisoned)


def test_nan_step_is_skipped(dataset_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _poison(monkeypatch, 5)
    result = pretrain(config_from_dict(tiny_config_dict(dataset_dir, tmp_path / "run")))
    assert result.skipped_steps == 1 and result.steps == 12 and math.isfinite(result.final_loss)
    records = read_metrics(tmp_path / "run" / METRICS_FILE)
    assert any("non-finite loss nan: update skipped" in r.get("event", "") for r in records)
    assert 6 not in losses(tmp_path / "run")  # the slot of the skipped update logs no loss


def test_nan_step_rolls_back_to_the_last_checkpoint(
    dataset_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _poison(monkeypatch, 6)
    raw = tiny_config_dict(dataset_dir, tmp_path / "run", fault={"policy": "rollback"})
    result = pretrain(config_from_dict(raw))
    assert result.rollbacks == 1 and result.skipped_steps == 0 and result.steps == 12
    events = [r["event"] for r in read_metrics(tmp_path / "run" / METRICS_FILE) if "event" in r]
    assert any("rolled back to step_00000004" in e for e in events)


def test_loss_spike_detection(dataset_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = Trainer.train_step

    def spiky(self: Trainer) -> tuple[float, float, float]:
        loss, norm, lr = original(self)
        return (loss * 10 if self.step == 8 else loss), norm, lr

    monkeypatch.setattr(Trainer, "train_step", spiky)
    raw = tiny_config_dict(dataset_dir, tmp_path / "run", fault={"spike_factor": 2.0, "spike_warmup": 3})
    result = pretrain(config_from_dict(raw))
    assert result.skipped_steps == 1


def test_gpu_peak_table() -> None:
    assert gpu_peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert gpu_peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert gpu_peak_flops("Some Future Accelerator") is None


def test_threads_are_set_before_training(
    dataset_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`herd pretrain --threads N`: PyTorch runs on N threads by the time training starts."""
    seen = []

    def stop(config: object, **kwargs: object) -> None:
        seen.append(torch.get_num_threads())
        raise ConfigError("stopped before training")

    monkeypatch.setattr(loop, "pretrain", stop)
    config = write_toml(tmp_path / "c.toml", tiny_config_dict(dataset_dir, tmp_path / "run"))
    before = torch.get_num_threads()
    try:
        assert main(["pretrain", str(config), "--threads", "3"]) == 2
    finally:
        torch.set_num_threads(before)
    assert seen == [3] and "stopped before training" in capsys.readouterr().err
