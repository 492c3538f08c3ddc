"""PPO (Llama 2 §3.2.3) on several processes: the same rollouts and losses as one process.

Two processes under torchrun with gloo on the CPU run test_posttrain_ppo.py's
tiny random policy and reward model, sharded with FSDP2 (the policy's and
the value model's blocks) or replicated with DDP. Every rank draws the whole
rollout with the policy's full weights gathered once (same seeds), and
trains on its half of each mini-batch, so the rollout buffer is the one
process's and each step's loss equals it to float rounding (1e-5 relative,
1e-6 absolute for the policy losses near 0). A run resumed in the middle of
a rollout reads the main process's rollout file back on every rank.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from posttrain_helpers import cpu_placement, losses
from safetensors.torch import load_file
from test_posttrain_ppo import finished, make_config, workspace  # noqa: F401 (fixtures)
from test_posttrain_ppo_early_stop import stopping_config

from herd.errors import ConfigError
from herd.posttrain.ppo import ROLLOUT_FILE, PolicyAndValue, PPOConfig, PPOObjective, PPOResult, ppo
from herd.train.config import run_config_from_dict
from herd.train.distributed import decoders
from herd.train.metrics import METRICS_FILE, read_metrics

# Runs ppo on the config (JSON) named by argv[1], resumed if argv[2] says so: `herd ppo` under torchrun.
RUN_PPO = """
import json, sys
from herd.posttrain.ppo import PPOConfig, ppo
from herd.train.config import run_config_from_dict
ppo(run_config_from_dict(PPOConfig, json.loads(open(sys.argv[1]).read())), resume=sys.argv[2:] == ["resume"])
"""

#: 5 steps: the first rollout's 4 mini-batches, then a second rollout drawn by the trained policy.
SECTIONS = {"train": {"steps": 5}, "checkpoint": {"every": 5}, "log": {"val_every": 4}}


def test_the_policy_and_the_value_model_are_both_decoders_of_the_trained_module(
    workspace: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The trainer shards, recomputes and compiles the blocks of both (:func:`decoders`)."""
    objective = PPOObjective(make_config(workspace, tmp_path / "run"), cpu_placement())
    model = objective.build_model("meta")
    assert isinstance(model, PolicyAndValue) and model.value is not None
    assert decoders(model) == [model.transformer, model.value.transformer]


def test_the_mini_batch_must_split_over_the_processes(workspace: Path, tmp_path: Path) -> None:  # noqa: F811
    placement = cpu_placement()
    two = type(placement)(placement.runtime, 0, 2)
    with pytest.raises(ConfigError, match=r"mini_batch \(2\) must be a multiple of"):
        PPOObjective(make_config(workspace, tmp_path / "run", train={"micro_batch_size": 2}), two)


def run_two_processes(config: PPOConfig, tmp_path: Path, *, resume: bool = False) -> str:
    """Run ``config`` on two processes under torchrun (gloo, one thread each); their standard error."""
    path = tmp_path / "ppo.json"
    path.write_text(json.dumps(config.to_dict()))
    script = tmp_path / "run_ppo.py"
    script.write_text(RUN_PPO)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    done = subprocess.run(
        [*launcher, str(script), str(path), *(["resume"] if resume else [])],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stderr


@pytest.fixture(scope="module")
def single(workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> PPOResult:  # noqa: F811
    return ppo(make_config(workspace, tmp_path_factory.mktemp("single") / "run", **SECTIONS))


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["fsdp", "ddp"])
def test_two_processes_match_one(
    workspace: Path,  # noqa: F811
    tmp_path: Path,
    single: PPOResult,
    strategy: str,
) -> None:
    """The second rollout (drawn after 4 updates) holds the same responses, log-probabilities, values and
    advantages; every step's loss and statistics and the held-out figures equal one process's."""
    out = tmp_path / "run"
    run_two_processes(make_config(workspace, out, parallel={"strategy": strategy}, **SECTIONS), tmp_path)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["extra"]["strategy"] == strategy and summary["extra"]["world_size"] == 2
    ours, theirs = load_file(out / ROLLOUT_FILE), load_file(Path(single.out_dir) / ROLLOUT_FILE)
    assert sorted(ours) == sorted(theirs)
    assert torch.equal(ours["tokens"], theirs["tokens"]) and torch.equal(ours["mask"], theirs["mask"])
    for name, tensor in theirs.items():
        torch.testing.assert_close(ours[name], tensor, rtol=1e-5, atol=1e-5, msg=name)
    expected = losses(Path(single.out_dir))
    assert losses(out) == pytest.approx(expected, rel=1e-5, abs=1e-6)
    stats = ("policy_loss", "value_loss", "kl", "score", "reward", "response_length", "ended")
    got, want = (
        {r["step"]: r for r in read_metrics(run / METRICS_FILE) if "loss" in r}
        for run in (out, Path(single.out_dir))
    )
    for step, record in want.items():
        for key in stats:
            assert got[step][key] == pytest.approx(record[key], rel=1e-5, abs=1e-7), (step, key)
    for key in ("eval_score", "eval_kl", "eval_response_length", "eval_score_before"):
        assert summary[key] == pytest.approx(getattr(single, key), rel=1e-5), key


@pytest.mark.slow
def test_a_program_reward_run_on_two_sharded_processes_matches_one(
    workspace: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """``reward_program``: the value model starts from the policy's checkpoint (not its sharded live weights)."""
    keys = {"reward_program": "length:3", "reward_model": "", "safety_reward_model": "", **SECTIONS}
    expected = ppo(make_config(workspace, tmp_path / "single", **keys))
    out = tmp_path / "run"
    run_two_processes(make_config(workspace, out, parallel={"strategy": "fsdp"}, **keys), tmp_path)
    assert losses(out) == pytest.approx(losses(Path(expected.out_dir)), rel=1e-5, abs=1e-6)


@pytest.mark.slow
def test_two_sharded_processes_resume_in_the_middle_of_a_rollout(
    workspace: Path,  # noqa: F811
    tmp_path: Path,
    finished: PPOResult,  # noqa: F811
) -> None:
    """6 steps on two FSDP processes end two mini-batches into the second rollout; resumed to 8, every rank
    reads that rollout back from the main process's file (none redraws) and the losses are one process's."""
    out = tmp_path / "run"
    sections = {"parallel": {"strategy": "fsdp"}, "checkpoint": {"every": 3, "export_hf": False}}
    run_two_processes(make_config(workspace, out, train={"steps": 6}, **sections), tmp_path)
    stderr = run_two_processes(make_config(workspace, out, **sections), tmp_path, resume=True)
    assert "redrawing" not in stderr
    assert losses(out) == pytest.approx(losses(Path(finished.out_dir)), rel=1e-5, abs=1e-6)


@pytest.mark.slow
def test_two_sharded_processes_stop_early_together(workspace: Path, tmp_path: Path) -> None:  # noqa: F811
    """Every rank validates with the same full weights, so all take the same early-stopping decision."""
    out = tmp_path / "run"
    config = stopping_config(workspace, out, patience=2).to_dict()
    config["parallel"]["strategy"] = "fsdp"
    run_two_processes(run_config_from_dict(PPOConfig, config), tmp_path)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["stopped_early"].endswith("for 2 validations")
