"""Checkpoint/resume: bit-exact after SIGKILL, exact RNG state, incompatible configs or data, incomplete checkpoints."""

from __future__ import annotations

import json
import random
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import VOCAB, _documents, losses, run_cli, tiny_config_dict, write_toml
from herd.cli import main
from herd.errors import CheckpointError
from herd.io.token_shards import write_dataset
from herd.train import checkpointing
from herd.train.config import PretrainConfig, config_from_dict
from herd.train.loop import Trainer, pretrain
from herd.train.metrics import METRICS_FILE, read_metrics

STEP_4 = "checkpoints/step_00000004"


def _wait(proc, timeout: float = 120) -> None:
    _out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-2000:]


@pytest.mark.slow
def test_sigkill_at_a_random_step_then_resume_is_bit_exact(dataset_dir: Path, tmp_path: Path) -> None:
    steps = 40
    sections = {
        "train": {"steps": steps, "batch_tokens": 256, "micro_batch_size": 4},
        "checkpoint": {"every": 3},
    }
    ref_cfg = write_toml(tmp_path / "ref.toml", tiny_config_dict(dataset_dir, tmp_path / "ref", **sections))
    run_cfg = write_toml(tmp_path / "run.toml", tiny_config_dict(dataset_dir, tmp_path / "run", **sections))
    reference = run_cli("pretrain", str(ref_cfg))
    kill_after = random.randint(4, 25)
    victim = run_cli("pretrain", str(run_cfg))
    metrics = tmp_path / "run" / METRICS_FILE
    deadline = time.monotonic() + 120
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= kill_after):
        assert victim.poll() is None, f"run finished before step {kill_after}: {victim.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline
        time.sleep(0.001)
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    assert victim.returncode == -signal.SIGKILL
    assert checkpointing.latest_checkpoint(tmp_path / "run") is not None, f"killed at {kill_after}"
    _wait(run_cli("pretrain", str(run_cfg), "--resume"))
    _wait(reference)
    expected, got = losses(tmp_path / "ref"), losses(tmp_path / "run")
    assert sorted(got) == list(range(1, steps + 1))
    assert got == expected, f"killed after {kill_after} steps"


def _crash_once_at(monkeypatch: pytest.MonkeyPatch, step: int) -> list[int]:
    """Make the trainer raise RuntimeError the first time it reaches ``step``; returns the crash log."""
    crashes: list[int] = []
    original = Trainer.train_step

    def flaky(self: Trainer) -> tuple[float, float, float]:
        if self.step == step and not crashes:
            crashes.append(step)
            raise RuntimeError("simulated node failure")
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", flaky)
    return crashes


def test_crash_then_resume_continues_exactly(
    dataset_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    full = pretrain(config_from_dict(tiny_config_dict(dataset_dir, tmp_path / "full")))
    config = config_from_dict(tiny_config_dict(dataset_dir, tmp_path / "run"))
    _crash_once_at(monkeypatch, 6)
    with pytest.raises(RuntimeError, match="simulated"):
        pretrain(config)
    resumed = pretrain(config, resume=True)
    assert resumed.final_loss == full.final_loss
    assert losses(tmp_path / "run") == losses(tmp_path / "full")


def test_max_restarts_recovers_from_a_crash(
    dataset_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pretrain(config_from_dict(tiny_config_dict(dataset_dir, tmp_path / "full")))
    crashes = _crash_once_at(monkeypatch, 7)
    result = pretrain(
        config_from_dict(tiny_config_dict(dataset_dir, tmp_path / "run", fault={"max_restarts": 1}))
    )
    assert crashes == [7] and result.restarts == 1
    assert losses(tmp_path / "run") == losses(tmp_path / "full")
    assert 0 < result.goodput < 1
    events = [r["event"] for r in read_metrics(tmp_path / "run" / METRICS_FILE) if "event" in r]
    assert any("restart 1" in e for e in events)


def test_resume_with_incompatible_config_names_each_difference(dataset_dir: Path, tmp_path: Path) -> None:
    raw = tiny_config_dict(dataset_dir, tmp_path / "run", train={"steps": 4})
    pretrain(config_from_dict(raw))
    changed = tiny_config_dict(
        dataset_dir, tmp_path / "run", train={"steps": 8, "seed": 3}, model={"n_layers": 3}
    )
    with pytest.raises(CheckpointError) as info:
        pretrain(config_from_dict(changed), resume=True)
    message = str(info.value)
    assert "model.n_layers: checkpoint 2, config 3" in message
    assert "train.seed: checkpoint 0, config 3" in message
    assert "steps" not in message  # a longer run is a compatible change


def test_incomplete_checkpoint_is_reported(dataset_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    pretrain(config_from_dict(tiny_config_dict(dataset_dir, out, train={"steps": 4})))
    (checkpointing.latest_checkpoint(out) / ".metadata").unlink()
    with pytest.raises(CheckpointError, match="incomplete checkpoint"):
        pretrain(config_from_dict(tiny_config_dict(dataset_dir, out, train={"steps": 8})), resume=True)


def test_rng_state_is_restored_exactly(tiny_config: PretrainConfig) -> None:
    """Python, NumPy and torch continue the very numbers they would have drawn (Gaussian caches included)."""
    trainer = Trainer(tiny_config)
    random.gauss(0, 1)
    np.random.randn()  # leaves a cached Gaussian in both generators
    path = trainer.save()
    expected = (
        random.gauss(0, 1),
        random.random(),
        np.random.randn(),
        np.random.rand(),
        torch.rand(3).tolist(),
    )
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    checkpointing.load_checkpoint(path, trainer.model, trainer.optimizer, trainer.runtime)
    got = (random.gauss(0, 1), random.random(), np.random.randn(), np.random.rand(), torch.rand(3).tolist())
    trainer.close()
    assert got == expected


def test_resume_on_a_rebuilt_dataset_is_refused(tmp_path: Path) -> None:
    """Same path, different data: the windows drawn after the resume would not continue the run."""
    data = tmp_path / "data"
    write_dataset(data, {"train": {"web": _documents(np.random.default_rng(0), 200, 1)}}, vocab_size=VOCAB)
    raw = tiny_config_dict(data, tmp_path / "run", train={"steps": 4})
    pretrain(config_from_dict(raw))
    shutil.rmtree(data)
    write_dataset(data, {"train": {"web": _documents(np.random.default_rng(1), 200, 1)}}, vocab_size=VOCAB)
    with pytest.raises(
        CheckpointError, match=rf"{data}: the dataset changed since checkpoint .*step_00000004"
    ):
        pretrain(config_from_dict(raw), resume=True)


def test_resume_without_set_continues_the_run_as_it_was(
    dataset_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run started with --set resumes with that value from its checkpoint; the file's differs and is not applied."""
    full = pretrain(config_from_dict(tiny_config_dict(dataset_dir, tmp_path / "full", optim={"lr": 5e-3})))
    config = write_toml(tmp_path / "c.toml", tiny_config_dict(dataset_dir, tmp_path / "run"))  # lr 1e-2
    _crash_once_at(monkeypatch, 6)
    assert main(["pretrain", str(config), "--set", "optim.lr=5e-3"]) == 1  # the crash: an internal error
    assert "simulated node failure" in capsys.readouterr().err
    assert main(["pretrain", str(config), "--resume"]) == 0
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"resume: the run keeps its saved config; not applied from {config}: optim.lr = 0.01 (saved 0.005) "
        "(pass --set KEY=VALUE to change them)"
    ]
    assert losses(tmp_path / "run") == losses(tmp_path / "full")
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["final_loss"] == full.final_loss


def test_resume_applies_and_reports_the_values_given_now(
    dataset_dir: Path, run_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each flag that changes a saved value is one line on stderr; unchanged ones are silent."""
    config = write_toml(tmp_path / "c.toml", tiny_config_dict(dataset_dir, run_copy, train={"steps": 4}))
    flags = ["--set", "train.steps=6", "--set", "optim.lr=0.01", "--max-restarts", "2", "--quiet"]
    assert main(["pretrain", str(config), "--resume", *flags, "--print-config"]) == 0
    printed, err = capsys.readouterr()
    expected = [
        "resume: train.steps 4 → 6 (the LR schedule is re-planned over 6 steps)",
        "resume: fault.max_restarts 0 → 2",
    ]
    assert err.splitlines() == expected
    assert json.loads(printed)["train"]["steps"] == 6 and json.loads(printed)["out_dir"] == str(run_copy)
    assert main(["pretrain", str(config), "--resume", *flags]) == 0
    assert capsys.readouterr().err.splitlines() == expected
    assert sorted(losses(run_copy)) == list(range(1, 7))
    saved = checkpointing.read_trainer_state(checkpointing.latest_checkpoint(run_copy))["config"]
    assert (saved["train"]["steps"], saved["fault"]["max_restarts"], saved["out_dir"]) == (
        6,
        2,
        str(run_copy),
    )


def test_resume_still_refuses_an_incompatible_change(
    dataset_dir: Path, run_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_toml(tmp_path / "c.toml", tiny_config_dict(dataset_dir, run_copy, train={"steps": 4}))
    assert main(["pretrain", str(config), "--resume", "--set", "model.n_layers=3"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "resume: model.n_layers 2 → 3",
        f"herd: error: cannot resume from {run_copy / STEP_4}: incompatible config: "
        "model.n_layers: checkpoint 2, config 3",
    ]
