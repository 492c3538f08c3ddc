"""PPO's early stopping on the held-out reward (Llama 2 §3.2.3): ``early_stop_patience``.

The runs reuse test_posttrain_ppo.py's tiny random policy and reward model.
A learning rate of 1e-30 leaves every weight as it is (AdamW's steps are far
below an fp32 ulp of the weights), so the held-out score of each validation
equals the step-0 one: it never improves, and the run stops after
``early_stop_patience`` validations.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from posttrain_helpers import crash_once_at
from test_posttrain_ppo import make_config, workspace  # noqa: F401 (the workspace fixture)

from herd.errors import ConfigError
from herd.posttrain.ppo import PPOConfig, ppo
from herd.train.metrics import METRICS_FILE, read_metrics
from herd.train.outdir import SUMMARY_FILE

REASON = "eval_score did not improve on its best ({best}) for {n} validations"


def stopping_config(root: Path, out: Path, patience: int) -> PPOConfig:
    """8 steps, validating and checkpointing after every one, with weights that do not move."""
    return make_config(
        root,
        out,
        early_stop_patience=patience,
        optim={"lr": 1e-30},
        log={"val_every": 1},
        checkpoint={"every": 1, "export_hf": False},
    )


def test_a_run_stops_when_the_held_out_score_stops_improving(workspace: Path, tmp_path: Path) -> None:  # noqa: F811
    """Patience 2: the scores of steps 1 and 2 do not beat step 0's, so the run ends at step 2 of 8 with a
    final checkpoint and a summary that says why."""
    out = tmp_path / "run"
    result = ppo(stopping_config(workspace, out, patience=2))
    assert result.steps == 2 and result.eval_score == result.eval_score_before
    reason = REASON.format(best=f"{result.eval_score_before:.6g}", n=2)
    assert result.stopped_early == reason
    assert json.loads((out / SUMMARY_FILE).read_text())["stopped_early"] == reason
    from herd.cli.posttrain import ppo_rows

    assert dict(ppo_rows(result))["stopped early"] == reason  # herd ppo's summary says so too
    records = read_metrics(out / METRICS_FILE)
    assert [r["step"] for r in records if "loss" in r] == [1, 2]
    assert [r["step"] for r in records if "eval_score" in r] == [1, 2]
    assert any(r.get("event") == f"stopped early: {reason}" for r in records)


@pytest.mark.slow
def test_a_resumed_run_stops_at_the_same_step(
    workspace: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Patience 3, killed in step 3 after step 2's checkpoint: the resumed run remembers the two validations
    without improvement and stops at step 3, as an uninterrupted run does."""
    config = stopping_config(workspace, tmp_path / "run", patience=3)
    crash_once_at(monkeypatch, 2)
    with pytest.raises(RuntimeError, match="simulated"):
        ppo(config)
    resumed = ppo(config, resume=True)
    assert resumed.steps == 3 and resumed.stopped_early is not None
    assert resumed.stopped_early.endswith("for 3 validations")
    uninterrupted = ppo(stopping_config(workspace, tmp_path / "full", patience=3))
    assert uninterrupted.steps == 3 and uninterrupted.stopped_early == resumed.stopped_early


def test_early_stopping_needs_held_out_prompts_and_validations(workspace: Path, tmp_path: Path) -> None:  # noqa: F811
    with pytest.raises(ConfigError, match="early_stop_patience must be >= 0"):
        make_config(workspace, tmp_path, early_stop_patience=-1)
    with pytest.raises(ConfigError, match=r"early_stop_patience needs data\.val and log\.val_every"):
        make_config(workspace, tmp_path, early_stop_patience=2)
    with pytest.raises(ConfigError, match=r"early_stop_patience needs data\.val and log\.val_every"):
        make_config(workspace, tmp_path, early_stop_patience=2, log={"val_every": 1}, data={"val": ""})
