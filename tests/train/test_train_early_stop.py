"""Early stopping: the :class:`EarlyStopping` rule by hand, and the trainer ending a run on an objective's reason.

Llama 2 §3.2.3 stops PPO early on the held-out prompts' reward; the trainer's
hook is :meth:`Objective.should_stop`, called after every validation. A toy
pretraining objective stops on a rule over its validation loss (lower is
better) whose state travels with the data position, so a run resumed from a
checkpoint before the stop stops at the same step.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from conftest import tiny_config_dict
from herd.train.checkpointing import checkpoints_dir
from herd.train.config import config_from_dict
from herd.train.dataset import Batch
from herd.train.loop import train
from herd.train.metrics import METRICS_FILE, read_metrics
from herd.train.objective import EarlyStopping, Placement
from herd.train.outdir import SUMMARY_FILE
from herd.train.pretrain_objective import PretrainConfig, PretrainObjective


def test_the_rule_counts_validations_since_the_best() -> None:
    rule = EarlyStopping("eval_score", patience=2)
    assert rule.update({"eval_score": 0.5}) is None
    assert rule.update({"eval_score": 0.7}) is None  # better: the count restarts
    assert rule.update({"eval_score": 0.7}) is None  # equal is no improvement: 1
    assert (rule.best, rule.stale) == (0.7, 1)
    assert (
        rule.update({"eval_score": 0.6}) == "eval_score did not improve on its best (0.7) for 2 validations"
    )
    assert rule.update({"other": 1.0}) is None  # no value, no verdict, no count
    assert rule.stale == 2


def test_the_rule_minimizes_treats_nan_as_no_improvement_and_is_off_at_0() -> None:
    rule = EarlyStopping("val_loss", patience=1, maximize=False)
    assert rule.update({"val_loss": 2.0}) is None
    assert rule.update({"val_loss": 1.5}) is None
    assert rule.update({"val_loss": math.nan}) is not None
    assert rule.best == 1.5
    off = EarlyStopping("val_loss", patience=0)
    assert all(off.update({"val_loss": 1.0}) is None for _ in range(5))


def test_the_rules_state_round_trips_and_bad_state_is_refused() -> None:
    rule = EarlyStopping("eval_score", patience=3)
    rule.update({"eval_score": 1.0})
    rule.update({"eval_score": 0.5})
    copy = EarlyStopping("eval_score", patience=3)
    copy.load_state_dict(json.loads(json.dumps(rule.state_dict())))
    assert (copy.best, copy.stale) == (1.0, 1)
    with pytest.raises(ValueError, match="stale: expected an integer >= 0"):
        copy.load_state_dict({"best": 1.0, "stale": -1})
    with pytest.raises(ValueError, match="best: expected a number or null"):
        copy.load_state_dict({"best": "high", "stale": 0})


#: The toy objective's validation metric by step: best at 2 and 4, worse at 6.
VAL_LOSS = {2: 3.0, 4: 2.0, 6: 2.5, 8: 1.0}


class StopsOnValLoss(PretrainObjective):
    """Pretraining that stops when its validation metric has not fallen for 1 validation (lower is better).

    The metric a stop is decided on is a fixed schedule by step (the steps
    served are counted with the data position), so the stop's step is known:
    best at steps 2 and 4, worse at 6, where the run ends.
    """

    def __init__(self, config: PretrainConfig, placement: Placement) -> None:
        super().__init__(config, placement)
        self.rule = EarlyStopping("val_loss", patience=1, maximize=False)
        self.served = 0

    def micro_batches(self) -> list[Batch]:
        self.served += 1
        return super().micro_batches()

    def should_stop(self, validation: dict[str, float]) -> str | None:
        return self.rule.update({"val_loss": VAL_LOSS[self.served]})

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "served": self.served, "early_stop": self.rule.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.served = state["served"]
        self.rule.load_state_dict(state["early_stop"])


def _config(dataset_dir: Path, out: Path, steps: int) -> PretrainConfig:
    raw = tiny_config_dict(
        dataset_dir, out, train={"steps": steps}, checkpoint={"every": 2}, log={"val_every": 2, "every": 1}
    )
    return config_from_dict(raw)


def test_a_run_stops_after_the_validation_that_says_so(dataset_dir: Path, tmp_path: Path) -> None:
    """Stopped at step 6 of 12: final checkpoint, summary and metrics as for a normal end, the reason in both;
    resuming it trains no further."""
    result = train(_config(dataset_dir, tmp_path / "run", 12), StopsOnValLoss)
    reason = "val_loss did not improve on its best (2) for 1 validations"
    assert result.steps == 6 and result.stopped_early == reason
    summary = json.loads((tmp_path / "run" / SUMMARY_FILE).read_text())
    assert summary["steps"] == 6 and summary["stopped_early"] == reason
    assert (checkpoints_dir(tmp_path / "run") / "step_00000006").is_dir()
    records = read_metrics(tmp_path / "run" / METRICS_FILE)
    assert [r["step"] for r in records if "loss" in r] == list(range(1, 7))
    assert sum("val_loss" in r for r in records) == 3  # steps 2, 4 and 6: the stopping one is not repeated
    assert any(reason in r.get("event", "") for r in records)
    again = train(_config(dataset_dir, tmp_path / "run", 12), StopsOnValLoss, resume=True)
    assert again.steps == 6 and again.stopped_early == reason  # resumed, a stopped run stays stopped
    assert [r["step"] for r in read_metrics(tmp_path / "run" / METRICS_FILE) if "loss" in r] == list(
        range(1, 7)
    )


def test_a_resumed_run_stops_at_the_same_step(dataset_dir: Path, tmp_path: Path) -> None:
    """4 steps (the final validation's verdict is saved with the final checkpoint), then resumed to 12: it
    stops at step 6, as the uninterrupted run does; a run that ends normally records no reason."""
    first = train(_config(dataset_dir, tmp_path / "run", 4), StopsOnValLoss)
    assert first.steps == 4 and first.stopped_early is None
    resumed = train(_config(dataset_dir, tmp_path / "run", 12), StopsOnValLoss, resume=True)
    assert resumed.steps == 6 and resumed.stopped_early is not None
