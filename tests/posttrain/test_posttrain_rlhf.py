"""herd.posttrain.rlhf: Llama 2's iterative rounds (§3.2.3) composed of rejection sampling, SFT and PPO.

A tiny random policy and reward model (the helpers the SFT and PPO tests use)
over the llama2-style SentencePiece tokenizer of conftest.py: round 1 is
rejection sampling then SFT (RLHF-V1..V4), round 2 adds PPO (RLHF-V5).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from posttrain_helpers import PROMPTS, crash_once_at, posttrain_command, write_rows, write_tiny_policy_and_rm

from herd.checkpoint.load import load_model
from herd.errors import ConfigError
from herd.posttrain.rejection_sampling import PROGRESS
from herd.posttrain.rlhf import RLHFResult, load_rlhf_config, plan, rlhf, win_rate
from herd.tokenizer import Tokenizer
from herd.train.checkpointing import latest_checkpoint, read_trainer_state
from herd.train.metrics import METRICS_FILE, read_metrics

ROOT = Path(__file__).resolve().parents[2]

TRAINER = {"device": "cpu", "micro_batch_size": 1, "seed": 0}
QUIET = "log = {progress = false, tensorboard = false}\ncheckpoint = {every = 2, keep = 1}\n"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, llama2_tokenizer: Tokenizer) -> Path:
    """``init/``, ``rm/``, the prompts, the held-out prompts, the stage configs and the run's config."""
    root = tmp_path_factory.mktemp("rlhf")
    init = write_tiny_policy_and_rm(root, llama2_tokenizer)
    write_rows(root / "prompts.jsonl", [{"prompt": p} for p in PROMPTS])
    write_rows(root / "val.jsonl", [{"prompt": "which group?"}, {"prompt": "a type, please"}])
    (root / "rs.toml").write_text(
        f'prompts = "{root / "prompts.jsonl"}"\nsamples = 2\ntemperatures = [1.2]\nmax_new_tokens = 8\n'
    )
    (root / "sft.toml").write_text(
        f"{QUIET}optim = {{lr = 3e-3}}\ndata = {{seq_len = 64}}\n"
        f"train = {{steps = 2, batch_tokens = 64, device = 'cpu'}}\n"
    )
    (root / "ppo.toml").write_text(
        f"{QUIET}samples = 2\nmax_new_tokens = 6\nrollout_prompts = 2\nmini_batch = 2\n"
        f'data = {{train = "{root / "prompts.jsonl"}", seq_len = 64, max_prompts = 2}}\n'
        f"train = {{steps = 2, device = 'cpu'}}\n"
    )
    (root / "rlhf.toml").write_text(
        f"""
init = "{init}"
reward_model = "{root / "rm"}"
rs = {{config = "{root / "rs.toml"}", set = ["batch_prompts=4"]}}
sft = {{config = "{root / "sft.toml"}"}}
ppo = {{config = "{root / "ppo.toml"}"}}
eval = {{prompts = "{root / "val.jsonl"}", max_new_tokens = 8}}

[[round]]
stages = ["rs", "sft"]

[[round]]
stages = ["rs", "sft", "ppo"]
rs = ["seed=1"]
pool = true
"""
    )
    return root


@pytest.fixture(scope="module")
def finished(workspace: Path) -> tuple[Path, RLHFResult]:
    out = workspace / "run"
    result = rlhf(load_rlhf_config(workspace / "rlhf.toml", output=out), progress=False)
    return out, result


def test_two_rounds_chain_their_policies(workspace: Path, finished: tuple[Path, RLHFResult]) -> None:
    out, result = finished
    assert result.stages_run == [
        "round 0 eval",
        "round 1 rs",
        "round 1 sft",
        "round 1 eval",
        "round 2 rs",
        "round 2 sft",
        "round 2 ppo",
        "round 2 eval",
    ]
    round_1 = out / "round_1" / "sft" / "final"
    # round 2 samples from round 1's policy, fine-tunes it, and PPO starts from that SFT model
    header = json.loads((out / "round_2" / "rs" / PROGRESS).read_text().splitlines()[0])
    assert header["settings"]["policy"] == str(round_1)
    sft_2 = read_trainer_state(latest_checkpoint(out / "round_2" / "sft"))["config"]
    assert sft_2["init"] == str(round_1)
    assert sft_2["data"]["train"] == str(out / "round_2" / "pooled.jsonl")
    ppo_2 = read_trainer_state(latest_checkpoint(out / "round_2" / "ppo"))["config"]
    assert ppo_2["init"] == str(out / "round_2" / "sft" / "final")
    assert ppo_2["reward_model"] == str(workspace / "rm")
    # the weights moved in round 1, so starting round 2 from them is not starting from init
    before = load_model(workspace / "init").state_dict()
    after = load_model(round_1).state_dict()
    assert any(not torch.equal(before[name], after[name]) for name in before)


def test_pooled_rows_are_the_best_of_every_round(finished: tuple[Path, RLHFResult]) -> None:
    """Round 2 pools (Llama 2 from RLHF-V3 on): per prompt, the best-rewarded answer of rounds 1 and 2."""
    out, _ = finished
    sampled = [read_jsonl(out / f"round_{k}" / "rs" / "sft.jsonl") for k in (1, 2)]
    pooled = read_jsonl(out / "round_2" / "pooled.jsonl")
    assert [row["messages"][0]["content"] for row in pooled] == PROMPTS
    for i, row in enumerate(pooled):
        candidates = [rows[i] for rows in sampled]
        assert row == max(candidates, key=lambda r: r["reward"])


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_rounds_json_and_summary(finished: tuple[Path, RLHFResult]) -> None:
    out, result = finished
    rounds = json.loads((out / "rounds.json").read_text())["rounds"]
    assert rounds == result.rounds
    assert [r["round"] for r in rounds] == [0, 1, 2]
    assert [r["stages"] for r in rounds] == [[], ["rs", "sft"], ["rs", "sft", "ppo"]]
    assert rounds[0]["kl"] == 0.0 and "win_rate" not in rounds[0]
    for previous, r in itertools.pairwise(rounds):
        assert r["prompts"] == 2 and 0 < r["length"] <= 8
        assert r["win_rate"] == win_rate(r["rewards"], previous["rewards"])
        assert r["win_rate_vs_initial"] == win_rate(r["rewards"], rounds[0]["rewards"])
        assert r["reward"] == pytest.approx(sum(r["rewards"]) / 2)
        assert r["kl"] != 0.0  # the policy moved away from the initial one
        assert (out / f"round_{r['round']}" / "report.md").read_text().startswith(f"# Round {r['round']}")
    ppo_figures = rounds[2]["stage_figures"]["ppo"]
    assert ppo_figures["steps"] == 2 and ppo_figures["reward_start"] is not None
    summary = (out / "summary.md").read_text()
    assert "| 2 (RLHF-V2) | rs + sft + ppo |" in summary and "| 0 (initial) | - |" in summary
    assert (out / "rounds.png").read_bytes()[:4] == b"\x89PNG"


def test_win_rate_counts_ties_half() -> None:
    assert win_rate([1.0, 0.0, 2.0, 3.0], [0.0, 1.0, 2.0, 1.0]) == pytest.approx(2.5 / 4)


def test_resume_skips_finished_stages(workspace: Path, finished: tuple[Path, RLHFResult]) -> None:
    out, result = finished
    outputs = sorted(out.glob("round_*/*/summary.json")) + sorted(out.glob("round_*/eval.jsonl"))
    stamps = {path: path.stat().st_mtime_ns for path in outputs}
    again = rlhf(
        load_rlhf_config(workspace / "rlhf.toml", output=out, resume=True), resume=True, progress=False
    )
    assert again.stages_run == []
    assert len(again.stages_skipped) == len(result.stages_run)
    assert {path: path.stat().st_mtime_ns for path in outputs} == stamps
    assert again.rounds == result.rounds
    with pytest.raises(ConfigError, match="already holds an rlhf run"):
        rlhf(load_rlhf_config(workspace / "rlhf.toml", output=out), progress=False)
    changed = load_rlhf_config(workspace / "rlhf.toml", ["round[1].sft=['optim.lr=1e-3']"], output=out)
    with pytest.raises(ConfigError, match="sft finished with other settings"):
        rlhf(changed, resume=True, progress=False)


def test_an_interrupted_stage_resumes_from_its_checkpoint(
    workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    one_round = ["round=[{stages = ['rs', 'sft'], sft = ['checkpoint.every=1']}]"]
    crash_once_at(monkeypatch, 1)  # killed after SFT's first step, checkpointed
    with pytest.raises(RuntimeError, match="simulated node failure"):
        rlhf(load_rlhf_config(workspace / "rlhf.toml", one_round, output=out), progress=False)
    resumed = rlhf(
        load_rlhf_config(workspace / "rlhf.toml", output=out, resume=True), resume=True, progress=False
    )
    assert resumed.stages_skipped == ["round 0 eval", "round 1 rs"]
    assert resumed.stages_run == ["round 1 sft", "round 1 eval"]
    events = [r["event"] for r in read_metrics(out / "round_1" / "sft" / METRICS_FILE) if "event" in r]
    assert any(event.startswith("resumed from") for event in events)
    assert [r["round"] for r in resumed.rounds] == [0, 1]
    # --overwrite redoes every stage in place: rejection sampling starts a new progress file
    progress = out / "round_1" / "rs" / PROGRESS
    stamp = progress.stat().st_mtime_ns
    again = load_rlhf_config(workspace / "rlhf.toml", one_round, output=out)
    redone = rlhf(again, overwrite=True, progress=False)
    assert redone.stages_run == ["round 0 eval", "round 1 rs", "round 1 sft", "round 1 eval"]
    assert progress.stat().st_mtime_ns != stamp and latest_checkpoint(out / "round_1" / "sft") is not None


@pytest.mark.parametrize("name", ["llama2-chat", "rlhf-demo"])
def test_shipped_configs_resolve(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # their stage configs and data are named from the repository's root
    rounds = plan(load_rlhf_config(ROOT / "configs" / "posttrain" / f"{name}.toml"))
    assert all(list(r.stages)[:2] == ["rs", "sft"] for r in rounds)
    assert [list(r.stages) for r in rounds][-1] == ["rs", "sft", "ppo"]
    assert len(rounds) == (5 if name == "llama2-chat" else 2)
    assert rounds[-1].stages["sft"].data.train.endswith("pooled.jsonl") and len(rounds[-1].pooled) == len(
        rounds
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["round[1].stages=['rs', 'sft', 'dpo']"], r"round\[1\]\.stages\[2\]: 'dpo' is not one of"),
        (["round[0].stages=['sft', 'rs']"], r"round\[0\]\.stages must name stages once each, in the order"),
        (["round[0].stages=['rs']"], 'round\\[0\\].stages: "rs" needs "sft" after it'),
        (["evaluation.prompts=x"], r"unknown config key\(s\): evaluation"),
        (
            ["sft.set=['optim.learning_rate=1']"],
            r"round 1 sft \(.*sft.toml\): unknown config key\(s\): optim.learning_rate",
        ),
    ],
)
def test_bad_config_is_one_config_error(workspace: Path, overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        plan(load_rlhf_config(workspace / "rlhf.toml", overrides))


def test_command_reports_bad_config_in_one_line(workspace: Path, tmp_path: Path) -> None:
    code, text = posttrain_command(
        ["rlhf", str(workspace / "rlhf.toml"), "-o", str(tmp_path / "o"), "--set", "rs.set=['sampels=3']"]
    )
    assert code == 2 and "\n" not in text
    assert "round 1 rs" in text and "unknown config key(s): sampels" in text
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("init=nowhere", "init: nowhere: no such checkpoint"),
        ("reward_model=nowhere", "reward_model: nowhere"),
        ("eval.prompts=nowhere.jsonl", "eval.prompts: no such file: nowhere.jsonl"),
    ],
)
def test_missing_inputs_are_refused_before_writing(
    workspace: Path, tmp_path: Path, override: str, message: str
) -> None:
    config = load_rlhf_config(workspace / "rlhf.toml", [override], output=tmp_path / "o")
    with pytest.raises(ConfigError, match=message):
        rlhf(config, progress=False)
    assert not (tmp_path / "o").exists()


def test_print_config_shows_each_rounds_stages(
    workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = posttrain_command(
        ["rlhf", str(workspace / "rlhf.toml"), "-o", str(tmp_path / "o"), "--print-config", "--quiet"]
    )
    printed: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert code == 0 and not (tmp_path / "o").exists()
    second = printed["rounds"][1]
    assert second["policy"] == str(tmp_path / "o" / "round_1" / "sft" / "final")
    assert second["stages"]["ppo"]["init"] == str(tmp_path / "o" / "round_2" / "sft" / "final")
    assert second["stages"]["rs"]["seed"] == 1 and second["stages"]["rs"]["batch_prompts"] == 4
    assert second["stages"]["sft"]["log"]["progress"] is False
