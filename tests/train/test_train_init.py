"""Continued pretraining from a checkpoint (``init``), as Code Llama §2.4's long-context fine-tuning does it:
a tiny base run, then a run from its export with RoPE θ raised to 1e6 and sequences 4x as long."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from test_train_resume import _crash_once_at

from conftest import losses, tiny_config_dict, write_toml
from herd.checkpoint.load import load_model, open_checkpoint
from herd.errors import ConfigError
from herd.model.build import build_model
from herd.train.config import PretrainConfig, config_from_dict
from herd.train.loop import Trainer, pretrain
from herd.train.objective import Placement
from herd.train.pretrain_objective import PretrainObjective
from herd.train.resume import resume_config

BASE_THETA, THETA = 1e4, 1e6  # Code Llama §2.4: Llama 2's RoPE θ, raised for long-context fine-tuning


@pytest.fixture(scope="module")
def base_run(dataset_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The out_dir of a finished 30-step tiny pretraining run with its ``hf`` export."""
    out = tmp_path_factory.mktemp("base") / "run"
    # Long and fast enough that attention, and so RoPE's θ, matters to the loss.
    raw = tiny_config_dict(
        dataset_dir, out, train={"steps": 30}, optim={"lr": 3e-2}, checkpoint={"export_hf": True, "every": 30}
    )
    raw["model"]["rope_theta"] = BASE_THETA
    pretrain(config_from_dict(raw))
    return out


def init_dict(data: Path, out: Path, init: str, model: dict[str, Any] | None = None, **sections: Any) -> dict:
    """A long-context continuation of the tiny base: θ 1e6, 4x the base's 32-token sequences, from ``init``."""
    config = tiny_config_dict(data, out, train={"steps": 4, "batch_tokens": 512}, **sections)
    config["data"]["seq_len"] = 128
    config["model"] = {"rope_theta": THETA, "max_seq_len": 128} if model is None else model
    config["init"] = init
    return config


def init_config(data: Path, out: Path, init: str, **sections: Any) -> PretrainConfig:
    return config_from_dict(init_dict(data, out, init, **sections))


def test_step_0_is_the_base_model_with_the_new_theta(
    base_run: Path, dataset_dir: Path, tmp_path: Path
) -> None:
    hf = base_run / "hf"
    config = init_config(dataset_dir, tmp_path / "run", str(hf), checkpoint={"export_hf": True})
    base = load_model(hf, dtype=torch.float32)
    assert base.config.rope_theta == BASE_THETA and base.config.max_seq_len == 64

    # A trainer of the same config in an out_dir of its own: the run's start, before any step.
    trainer = Trainer(init_config(dataset_dir, tmp_path / "probe", str(hf)))
    try:
        assert trainer.step == 0 and not trainer.optimizer.state  # a fresh optimizer and schedule
        assert trainer.model_config == base.config.replace(rope_theta=THETA, max_seq_len=128)
        start = dict(trainer.model.named_parameters())
        assert start.keys() == dict(base.named_parameters()).keys()
        for name, value in base.named_parameters():
            assert torch.equal(start[name], value), name
        # The same first batch the run will draw, from an objective of its own.
        batches = PretrainObjective(config, Placement(trainer.runtime, 0, 1)).micro_batches()
    finally:
        trainer.close()

    def loss(rope_theta: float) -> float:
        """Mean next-token cross-entropy of the base weights on the step-0 batches, with RoPE θ ``rope_theta``."""
        model = build_model(base.config.replace(rope_theta=rope_theta, max_seq_len=128))
        model.load_state_dict(base.state_dict())
        total, count = 0.0, 0
        with torch.no_grad():
            for batch in batches:
                logits = model(batch.inputs, document_ids=batch.document_ids)
                total += float(
                    F.cross_entropy(logits.flatten(0, 1), batch.targets.flatten(), reduction="sum")
                )
                count += batch.targets.numel()
        return total / count

    result = pretrain(config)
    first = losses(tmp_path / "run")[1]
    assert first == pytest.approx(loss(THETA), rel=1e-5)
    assert abs(loss(BASE_THETA) - loss(THETA)) > 1e-3  # θ matters for this batch: the check above can fail
    logged = losses(tmp_path / "run")
    assert result.steps == 4 and sorted(logged) == [1, 2, 3, 4] and all(map(math.isfinite, logged.values()))
    trained = load_model(tmp_path / "run" / "hf", dtype=torch.float32)
    assert not torch.equal(trained.tok_embeddings.weight, base.tok_embeddings.weight)
    assert json.loads((tmp_path / "run" / "hf" / "config.json").read_text())["rope_theta"] == THETA
    with open_checkpoint(tmp_path / "run" / "hf") as reader:
        assert reader.config.rope_theta == THETA and reader.config.max_seq_len == 128
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["init"] == str(hf) and result.init == str(hf)
    assert f"started from {hf}" in result.report()


def test_a_run_directory_means_its_export(base_run: Path, dataset_dir: Path, tmp_path: Path) -> None:
    trainer = Trainer(init_config(dataset_dir, tmp_path / "run", str(base_run)))
    try:
        assert trainer.objective.init == base_run / "hf"
    finally:
        trainer.close()


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"dim": 64, "rope_theta": THETA}, "model.dim: 64 differs from 32 of the init checkpoint"),
        ({"vocab_size": 128}, "model.vocab_size: 128 differs from 96"),
        ({"preset": "llama3-tiny"}, "model.preset: 'llama3-tiny' is not used with init"),
    ],
)
def test_a_model_key_that_changes_a_weight_shape_is_refused(
    base_run: Path, dataset_dir: Path, tmp_path: Path, model: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        pretrain(config_from_dict(init_dict(dataset_dir, tmp_path / "run", str(base_run / "hf"), model)))
    assert "\n" not in str(caught.value)
    assert "rope_theta, rope_scaling, max_seq_len" in str(caught.value) or "preset" in message
    assert not (tmp_path / "run").exists()


def test_a_missing_init_is_one_line_naming_it(dataset_dir: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-run" / "hf"
    with pytest.raises(ConfigError, match=f"init: no such checkpoint: {missing}") as caught:
        pretrain(init_config(dataset_dir, tmp_path / "run", str(missing)))
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "run").exists()


def test_resumed_init_run_equals_an_uninterrupted_one(
    base_run: Path, dataset_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hf = str(base_run / "hf")
    full = pretrain(init_config(dataset_dir, tmp_path / "full", hf))
    raw = init_dict(dataset_dir, tmp_path / "run", hf, checkpoint={"every": 2})
    config = config_from_dict(raw)
    _crash_once_at(monkeypatch, 3)
    with pytest.raises(RuntimeError, match="simulated"):
        pretrain(config)
    # The resumed config is the saved one (the checkpoint's whole shape); the file's unset keys are not news.
    resumed_config, lines = resume_config(write_toml(tmp_path / "run.toml", raw), [])
    assert lines == [] and resumed_config.model["dim"] == 32 and resumed_config.model["rope_theta"] == THETA
    resumed = pretrain(resumed_config, resume=True)
    assert resumed.final_loss == full.final_loss
    assert losses(tmp_path / "run") == losses(tmp_path / "full")
