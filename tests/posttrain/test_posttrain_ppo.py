"""herd.posttrain.ppo: the advantage switch by hand, and PPO (Llama 2 §3.2.3) on herd's trainer.

The run tests use a tiny random policy (2 layers, width 32) over the
llama2-style SentencePiece tokenizer of conftest.py and a tiny random reward
model of the same shape, which also serves as the safety reward model.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from posttrain_helpers import (
    PROMPTS,
    cpu_placement,
    crash_once_at,
    losses,
    posttrain_command,
    run_config,
    with_sections,
    write_rows,
    write_tiny_init,
    write_tiny_policy_and_rm,
)
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from herd.checkpoint.hf import write_hf
from herd.checkpoint.load import load_model, model_tensors, open_checkpoint
from herd.errors import ConfigError
from herd.model.presets import get_preset
from herd.posttrain.advantages import gae, group_advantages, whiten
from herd.posttrain.ppo import (
    ROLLOUT_FILE,
    PPOConfig,
    PPOObjective,
    PPOResult,
    RolloutBuffer,
    advantages,
    ppo,
)
from herd.posttrain.reward_model import RewardModel
from herd.posttrain.rollout import response_values
from herd.tokenizer import Tokenizer
from herd.train.config import load_run_config, run_config_from_dict
from herd.train.loop import Trainer
from herd.train.metrics import METRICS_FILE, read_metrics


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    rewards = torch.randn(4, 5, generator=generator, dtype=torch.float64)
    values = torch.randn(4, 5, generator=generator, dtype=torch.float64)
    mask = torch.tensor(
        [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 1, 1, 0, 0], [1, 1, 0, 0, 0]], dtype=torch.bool
    )
    return rewards, values, mask


def test_gae_advantages_are_whitened_and_returns_are_gaes() -> None:
    rewards, values, mask = _batch()
    out, returns = advantages("gae", rewards, mask, values=values)
    raw, expected_returns = gae(rewards, values, mask)
    torch.testing.assert_close(out, whiten(raw, mask))
    torch.testing.assert_close(returns, expected_returns)
    assert out[mask].mean().item() == pytest.approx(0, abs=1e-12)
    assert out[mask].std().item() == pytest.approx(1, abs=1e-6)


def test_group_advantages_broadcast_each_responses_total() -> None:
    rewards, _, mask = _batch()
    out, returns = advantages("group", rewards, mask, group_size=2)
    assert returns is None
    totals = [sum(rewards[b, t].item() for t in range(5) if mask[b, t]) for b in range(4)]
    for first in (0, 2):  # groups of two: (x − mean) / std is ±1/√2 for the unbiased std
        a, b = totals[first : first + 2]
        sign = math.copysign(1, a - b)
        assert out[first][mask[first]].tolist() == pytest.approx(
            [sign / math.sqrt(2)] * int(mask[first].sum()), abs=1e-5
        )
    expected = group_advantages(torch.tensor(totals, dtype=torch.float64), 2)
    torch.testing.assert_close(out, expected.unsqueeze(1) * mask)
    assert not out[~mask].any()


def test_advantage_settings_checked() -> None:
    rewards, _, mask = _batch()
    with pytest.raises(ConfigError, match="needs the value model's values"):
        advantages("gae", rewards, mask)
    with pytest.raises(ConfigError, match="needs group_size"):
        advantages("group", rewards, mask)
    with pytest.raises(ConfigError, match="unknown advantage 'vtrace' \\(expected gae, group\\)"):
        advantages("vtrace", rewards, mask)  # type: ignore[arg-type]


# ---- the objective on herd's trainer -------------------------------------------------------------


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, llama2_tokenizer: Tokenizer) -> Path:
    """``init/`` (a tiny random policy), ``rm/`` (a tiny random reward model), ``train.jsonl`` and ``val.jsonl``."""
    root = tmp_path_factory.mktemp("ppo")
    write_tiny_policy_and_rm(root, llama2_tokenizer)
    rows = [{"prompt": p, "safety": i % 2 == 0} for i, p in enumerate(PROMPTS)]
    write_rows(root / "train.jsonl", rows)
    write_rows(root / "val.jsonl", [{"prompt": "which group?"}, {"prompt": "a type, please"}])
    return root


def make_config(root: Path, out: Path, **keys: Any) -> PPOConfig:
    """4 responses (2 prompts × 2 samples) per rollout, mini-batches of 2 in micro-batches of 1, 2 PPO epochs:
    4 steps per rollout, 8 steps in all; checkpoints at the rollouts' boundaries."""
    base = run_config(root, out, seq_len=128, rows_per_step=1, micro_batch=1)
    raw = with_sections(
        base,
        {
            "reward_model": str(root / "rm"),
            "safety_reward_model": str(root / "rm"),
            "samples": 2,
            "max_new_tokens": 6,
            "rollout_prompts": 2,
            "mini_batch": 2,
            "ppo_epochs": 2,
            "train": {"steps": 8, "device": "cpu"},  # fp32: the exactness checks are fp32's
        },
    )
    raw = with_sections(raw, keys)
    return run_config_from_dict(PPOConfig, raw)


@pytest.fixture(scope="module")
def finished(workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> PPOResult:
    """An 8-step GAE run (two rollouts) with validation and the export."""
    return ppo(make_config(workspace, tmp_path_factory.mktemp("finished") / "run"))


def test_a_run_completes_and_logs_ppo_statistics(finished: PPOResult) -> None:
    assert finished.steps == 8 and finished.rollouts == 2 and finished.steps_per_rollout == 4
    assert finished.prompts == {"train": 4, "val": 2}
    assert finished.final_dir is not None and (Path(finished.final_dir) / "config.json").is_file()
    assert finished.eval_score is not None and finished.eval_score_before is not None
    records = [r for r in read_metrics(Path(finished.metrics)) if "loss" in r]
    assert [r["step"] for r in records] == list(range(1, 9))
    for key in ("policy_loss", "value_loss", "clip_fraction", "kl", "score", "reward", "response_length"):
        assert all(math.isfinite(r[key]) for r in records), key
    assert all(0 <= r["ended"] <= 1 and 1 <= r["response_length"] <= 6 for r in records)


def test_the_command_prints_the_held_out_figures_before_and_after(finished: PPOResult) -> None:
    from herd.cli.posttrain import ppo_rows

    rows = dict(ppo_rows(finished))
    score = f"{finished.eval_score_before:.4f} → {finished.eval_score:.4f}"
    assert rows["held-out score"] == score
    assert rows["rollouts"] == f"2 (4 steps each); advantage gae, beta {finished.beta:g}"
    assert rows["prompts"] == f"4 train, 2 val; {finished.epochs:.2f} epochs"
    assert rows["skipped prompts (train)"] == "none"
    assert rows["weights (Hugging Face layout)"].startswith(f"{finished.final_dir}, with the tokenizer from ")
    assert rows["score and KL plot"] == finished.reward_plot


def test_the_score_and_kl_plot_has_every_step_and_validation(finished: PPOResult) -> None:
    """rewards.png: the score and KL of each step's mini-batch and of the held-out prompts at step 0 and at the
    end, from metrics.jsonl; DPO's plot is drawn by the same function."""
    from herd.posttrain.curves import plot_curves
    from herd.posttrain.ppo import REWARD_PANELS

    out = Path(finished.out_dir)
    assert finished.reward_plot == str(out / "rewards.png")
    assert (out / "rewards.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    records = read_metrics(out / METRICS_FILE)
    assert sum("score" in r for r in records) == finished.steps and any("eval_score" in r for r in records)
    assert plot_curves([], {}, REWARD_PANELS, out / "none.png", train_label="", held_label="") is None


def test_the_command_reports_bad_input_in_one_line_with_exit_2(workspace: Path, tmp_path: Path) -> None:
    config = tmp_path / "ppo.toml"
    out = tmp_path / "run"
    config.write_text(f'init = "{workspace / "init"}"\nreward_model = "{workspace / "rm"}"\nbetta = 0.2\n')
    assert posttrain_command(["ppo", str(config), "-o", str(out)]) == (2, "unknown config key(s): betta")
    missing = tmp_path / "missing.jsonl"
    config.write_text(
        f'init = "{workspace / "init"}"\nreward_model = "{workspace / "rm"}"\n[data]\ntrain = "{missing}"\n'
    )
    assert posttrain_command(["ppo", str(config), "-o", str(out), "--quiet"]) == (
        2,
        f"data.train: no such file: {missing}",
    )
    assert not out.exists()


def test_first_mini_batch_of_each_rollout_is_on_policy(finished: PPOResult) -> None:
    """At the first step the policy is the reference: KL 0 exactly; at the first mini-batch of every rollout
    the training forward gives the rollout's log-probabilities and values (ratio 1, nothing clipped)."""
    records = {r["step"]: r for r in read_metrics(Path(finished.metrics)) if "loss" in r}
    assert records[1]["kl"] == 0.0
    for step in (1, 5):
        assert records[step]["clip_fraction"] == 0.0
        assert records[step]["value_clip_fraction"] == 0.0
        assert records[step]["approx_kl"] < 1e-10
    assert records[8]["kl"] != 0.0  # the policy moved away from the reference


def test_policy_reference_value_and_reward_models_share_no_parameter(workspace: Path, tmp_path: Path) -> None:
    trainer = Trainer(make_config(workspace, tmp_path / "run"), objective=PPOObjective)
    objective = trainer.objective
    assert isinstance(objective, PPOObjective)
    model = objective.model
    assert model is trainer.model and model is not None and model.value is not None
    assert objective.reference is not None
    holders = [model.transformer, model.value, objective.reference, *objective.reward_models.values()]
    pointers = [{p.data_ptr() for p in m.parameters()} for m in holders]
    assert sum(map(len, pointers)) == len(set().union(*pointers))
    assert not any(p.requires_grad for p in objective.reference.parameters())
    trainer.close()


def test_group_advantages_run_without_a_value_model(workspace: Path, tmp_path: Path) -> None:
    config = make_config(workspace, tmp_path / "run", advantage="group", train={"steps": 2})
    trainer = Trainer(config, objective=PPOObjective)
    assert isinstance(trainer.objective, PPOObjective)
    assert trainer.objective.model is not None and trainer.objective.model.value is None
    result = trainer.run()
    assert isinstance(result, PPOResult) and result.steps == 2 and result.advantage == "group"
    records = [r for r in read_metrics(Path(result.metrics)) if "loss" in r]
    assert records[0]["kl"] == 0.0 and records[0]["clip_fraction"] == 0.0
    assert "value_loss" not in records[0]


def test_a_program_reward_starts_the_value_model_from_the_policy_with_a_zero_head(
    workspace: Path, tmp_path: Path
) -> None:
    """reward_program without a reward model, advantage gae: no reward model is read; the value model is a copy
    of the policy's trunk (no shared memory) with a zero head, so every first value is 0; a step runs."""
    config = make_config(
        workspace,
        tmp_path / "run",
        reward_model="",
        safety_reward_model="",
        reward_program="length:3",
        train={"steps": 1},
        checkpoint={"export_hf": False},
    )
    trainer = Trainer(config, objective=PPOObjective)
    objective = trainer.objective
    assert isinstance(objective, PPOObjective) and objective.model is not None
    value, policy = objective.model.value, dict(objective.model.transformer.named_parameters())
    assert value is not None and not value.score.weight.any() and objective.reward_models == {}
    for name, tensor in value.transformer.named_parameters():
        assert torch.equal(tensor, policy[name]) and tensor.data_ptr() != policy[name].data_ptr(), name
    result = trainer.run()
    assert isinstance(result, PPOResult) and result.steps == 1 and result.eval_score is not None
    records = [r for r in read_metrics(Path(result.metrics)) if "loss" in r]
    assert records[0]["value_loss"] > 0 and -2 <= records[0]["score"] <= 1  # length:3 is at most 1


@pytest.mark.slow
def test_resume_at_a_rollout_boundary_continues_exactly(
    workspace: Path, tmp_path: Path, finished: PPOResult
) -> None:
    """4 steps, then resumed to 8: the losses of steps 5–8 are those of the uninterrupted run."""
    out = tmp_path / "run"
    ppo(make_config(workspace, out, train={"steps": 4}, checkpoint={"export_hf": False}))
    ppo(make_config(workspace, out, checkpoint={"export_hf": False}), resume=True)
    assert losses(out) == pytest.approx(losses(Path(finished.out_dir)), rel=1e-6)


def count_rollouts(monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """Record the prompts of every rollout drawn (steps 1–5), not read back."""
    calls: list[list[int]] = []
    original = PPOObjective._rollout

    def counted(self: PPOObjective, indices: list[int], seed: int) -> RolloutBuffer:
        calls.append(list(indices))
        return original(self, indices, seed)

    monkeypatch.setattr(PPOObjective, "_rollout", counted)
    return calls


def training_records(out: Path) -> dict[int, dict[str, float]]:
    """Each step's loss and PPO statistics, without its timings."""
    timings = ("tokens_per_s", "mfu", "step_s")
    records = (r for r in read_metrics(out / METRICS_FILE) if "loss" in r)
    return {r["step"]: {k: v for k, v in r.items() if k not in timings} for r in records}


def crash_mid_rollout(workspace: Path, out: Path, monkeypatch: pytest.MonkeyPatch) -> PPOConfig:
    """A run checkpointing every 3 steps (4 per rollout) killed in step 8: its last checkpoint, step 6, is in
    the middle of the second rollout; the run directory holds that rollout."""
    config = make_config(workspace, out, checkpoint={"every": 3, "export_hf": False})
    crash_once_at(monkeypatch, 7)
    with pytest.raises(RuntimeError, match="simulated"):
        ppo(config)
    with safe_open(out / ROLLOUT_FILE, framework="pt") as f:
        assert (f.metadata() or {})["period"] == "1"
    return config


@pytest.mark.slow
def test_resume_in_the_middle_of_a_rollout_continues_exactly(
    workspace: Path, tmp_path: Path, finished: PPOResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Resumed from step 6 (two mini-batches of the second rollout served), the run reads that rollout back
    instead of redrawing it: every step's loss and statistics are exactly the uninterrupted run's."""
    calls = count_rollouts(monkeypatch)
    config = crash_mid_rollout(workspace, tmp_path / "run", monkeypatch)
    assert len(calls) == 2
    ppo(config, resume=True)
    assert len(calls) == 2  # read back, not drawn again
    records = training_records(tmp_path / "run")
    assert list(records) == list(range(1, 9))
    assert records == training_records(Path(finished.out_dir))


@pytest.mark.slow
def test_a_rollout_written_for_another_run_is_redrawn(
    workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A rollout file whose key is not this run's is not used: the rollout is redrawn, as a warning says."""
    out = tmp_path / "run"
    config = crash_mid_rollout(workspace, out, monkeypatch)
    path = out / ROLLOUT_FILE
    save_file(load_file(path), str(path), metadata={"period": "1", "key": "another run"})
    calls = count_rollouts(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="herd.posttrain"):
        result = ppo(config, resume=True)
    assert result.steps == 8 and len(calls) == 1
    assert "no rollout 1 drawn for this run; redrawing it" in caplog.text
    with safe_open(path, framework="pt") as f:
        assert (f.metadata() or {})["key"] != "another run"  # the redrawn rollout replaced it


def test_ppo_settings_checked(workspace: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mini_batch must divide"):
        make_config(workspace, tmp_path, mini_batch=3)
    with pytest.raises(ConfigError, match='advantage = "group" needs samples >= 2'):
        make_config(workspace, tmp_path, advantage="group", samples=1)
    with pytest.raises(ConfigError, match="no prompt leaves room for max_new_tokens"):
        Trainer(make_config(workspace, tmp_path, max_new_tokens=127), objective=PPOObjective)


def test_response_values_are_the_head_read_one_column_before_each_response_token() -> None:
    """Per-token values: the reward model's score of the prefix ending just before each response token."""
    config = get_preset("llama2-tiny").replace(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=64)
    model = RewardModel.random(config, seed=0, pad_id=0)
    tokens = torch.randint(1, 64, (2, 7), generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(2, 7, dtype=torch.bool)
    mask[0, 3:7], mask[1, 2:5] = True, True
    with torch.no_grad():
        values = response_values(model, tokens, mask)
        for row, column in mask.nonzero().tolist():
            prefix = tokens[row : row + 1, :column]
            assert values[row, column].item() == pytest.approx(model(prefix).item(), abs=1e-5)
    assert not values[~mask].any()


@pytest.mark.parametrize("name", ["ppo-demo", "llama2-ppo"])
def test_the_recipes_are_llama_2_s(name: str) -> None:
    """Both configs load and keep Llama 2 §3.2.3's values: constant lr 1e-6, AdamW, β 0.01, clip 0.2."""
    config = load_run_config(PPOConfig, Path(__file__).parents[2] / "configs/posttrain" / f"{name}.toml")
    optim = config.optim
    assert (optim.lr, optim.beta1, optim.beta2, optim.eps, optim.weight_decay, optim.grad_clip) == (
        1e-6,
        0.9,
        0.95,
        1e-5,
        0.1,
        1.0,
    )
    assert (config.schedule.warmup_steps, config.schedule.min_lr_ratio) == (0, 1.0)
    assert (config.beta, config.clip, config.advantage) == (0.01, 0.2, "gae")
    if name == "llama2-ppo":
        assert (config.rollout_prompts, config.samples, config.mini_batch) == (512, 1, 64)


def test_a_position_in_the_middle_of_a_rollout_redraws_it(workspace: Path, tmp_path: Path) -> None:
    """The saved position is prompts drawn, rollouts drawn and mini-batches served: resumed mid-rollout, the
    objective steps back to that rollout's prompts and serves its remaining mini-batches; at a boundary, none."""
    objective = PPOObjective(make_config(workspace, tmp_path / "run"), cpu_placement())
    objective.load_state_dict({"taken": 4, "periods": 2, "served": 1})
    assert (objective.stream.taken, objective.periods, objective.served) == (2, 1, 1)
    objective.load_state_dict({"taken": 4, "periods": 2, "served": 4})
    assert (objective.stream.taken, objective.periods, objective.served) == (4, 2, 0)
    with pytest.raises(ValueError, match="served: expected an integer >= 0"):
        objective.load_state_dict({"taken": 4, "periods": 2, "served": -1})


# ---- a program reward on a tiny model --------------------------------------------------------------

WORD = "action"  # one piece of the tiny tokenizer (trained on argparse.py)


def write_biased_init(root: Path, tokenizer: Tokenizer, logits: dict[int, float]) -> Path:
    """:func:`write_tiny_init`'s policy made to favour the tokens of ``logits`` by about that many nats.

    Every embedding gets a first coordinate of 1, which dominates the tiny
    residual stream, so the final norm turns it into about √dim; only the
    output rows of ``logits`` read that coordinate. A random policy over 500
    tokens would almost never end an answer (and every answer cut off scores
    the same −3), nor say the word; this one ends about one answer in four
    tokens and says the word in some, so PPO has a signal from the first rollout.
    """
    init = write_tiny_init(root, tokenizer)
    model = load_model(init, dtype=torch.float32)
    with torch.no_grad():
        model.tok_embeddings.weight[:, 0] = 1.0
        model.output.weight[:, 0] = 0.0
        for token, logit in logits.items():
            model.output.weight[token, 0] = logit / math.sqrt(model.config.dim)
    with open_checkpoint(init) as reader:
        info = reader.info
    return write_hf(init, info, model_tensors(model))


def test_a_program_reward_rises_on_a_tiny_model(tmp_path: Path, llama2_tokenizer: Tokenizer) -> None:
    """PPO (group advantages, no reward or value model) against ``word:action`` raises the rollouts' mean
    score from about −0.5 (a quarter of the answers say the word) to above 0 in 10 rollouts of 4 steps
    (−0.5 → 0.5, the last two rollouts at 1.0 and 0.5, when written), with the KL to the reference bounded;
    the summary holds reward_start, reward_end, kl_end and iterations."""
    from herd.cli.posttrain import ppo_rows

    (word,) = llama2_tokenizer.encode(WORD)
    assert llama2_tokenizer.eos_id is not None
    write_biased_init(tmp_path, llama2_tokenizer, {llama2_tokenizer.eos_id: 5.0, word: 3.5})
    write_rows(tmp_path / "train.jsonl", [{"prompt": p} for p in PROMPTS])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = ppo(
            make_config(
                tmp_path,
                tmp_path / "run",
                reward_model="",
                safety_reward_model="",
                reward_program=f"word:{WORD}",
                advantage="group",
                samples=4,
                rollout_prompts=4,
                mini_batch=8,
                max_new_tokens=8,
                data={"val": "", "epochs": 10},
                optim={"lr": 1e-2},
                train={"steps": 0},
                checkpoint={"every": 1000, "export_hf": False},
            )
        )
    finally:
        torch.set_num_threads(threads)
    scores = [r["score"] for r in read_metrics(Path(result.metrics)) if "loss" in r]
    assert result.iterations == result.rollouts == 10 and result.steps == 40
    assert result.reward_start is not None and result.reward_end is not None and result.kl_end is not None
    assert result.reward_start < -0.4 and result.reward_end > max(0, result.reward_start + 0.75)
    assert sum(scores[-8:]) / 8 > sum(scores[:8]) / 8 + 0.75  # the last two rollouts against the first two
    assert 0 < result.kl_end < 5
    rows = dict(ppo_rows(result))
    assert rows["rollout score (first → last)"] == f"{result.reward_start:.4f} → {result.reward_end:.4f}"
    assert rows["last rollout's KL to the initial model"] == f"{result.kl_end:.4f} nats/token"
    summary = json.loads((Path(result.out_dir) / "summary.json").read_text())
    assert {k: summary[k] for k in ("reward_start", "reward_end", "kl_end", "iterations")} == {
        "reward_start": result.reward_start,
        "reward_end": result.reward_end,
        "kl_end": result.kl_end,
        "iterations": 10,
    }


# ---- bad input through the command: one line, exit 2 ---------------------------------------------


def reward_model_of_another_vocabulary(root: Path, tmp_path: Path) -> str:
    """A tiny random reward model over 508 tokens where the policy has 500."""
    with open_checkpoint(root / "init") as reader:
        config = reader.config.replace(vocab_size=reader.config.vocab_size + 8)
    RewardModel.random(config, seed=1, pad_id=2).save_pretrained(tmp_path / "rm-508")
    return str(tmp_path / "rm-508")


def reward_model_of_another_shape(root: Path, tmp_path: Path) -> str:
    """The workspace's reward model with a config.json twice as wide as its weights."""
    shutil.copytree(root / "rm", tmp_path / "rm-wide")
    config = json.loads((tmp_path / "rm-wide" / "config.json").read_text())
    config["hidden_size"] *= 2
    (tmp_path / "rm-wide" / "config.json").write_text(json.dumps(config))
    return str(tmp_path / "rm-wide")


#: Each case: its ``--set`` overrides, the reward model (workspace's, or one of the functions above, or the
#: policy), and the start of the one line the command prints.
BAD_PPO_INPUT: dict[str, tuple[list[str], str, str]] = {
    "every prompt too long": (
        ["--set", "max_new_tokens=127"],
        "",
        "{train}: no prompt leaves room for max_new_tokens: the prompts render to ",
    ),
    "reward model of another vocabulary": (
        [],
        "vocab",
        "reward_model: {rm} has a vocabulary of 508 tokens but the policy {init} has 500; "
        "it must share the policy's tokenizer",
    ),
    "reward model of another shape": (
        [],
        "shape",
        "{rm}/model.safetensors: tensor tok_embeddings.weight has shape (500, 32) but the config implies (500, 64)",
    ),
    "policy as reward model": (
        [],
        "policy",
        "{rm}/config.json: architectures is ['LlamaForCausalLM'], not a sequence classifier",
    ),
    "unknown reward_program kind": (
        ["--set", "reward_program=lenght:20"],
        "",
        "reward_program: unknown kind 'lenght' in 'lenght:20' (expected length, word as KIND:ARGUMENT); "
        "did you mean 'length'?",
    ),
}


@pytest.mark.parametrize("case", list(BAD_PPO_INPUT))
def test_bad_ppo_input_is_one_line_with_exit_2(case: str, workspace: Path, tmp_path: Path) -> None:
    """Prompts that leave no room to answer, a reward model of another vocabulary or of another shape than its
    weights, a policy where the reward model should be, an unknown reward_program: exit 2, one line naming
    the file or key, nothing written."""
    overrides, rm, expected = BAD_PPO_INPUT[case]
    reward_model = {
        "": str(workspace / "rm"),
        "vocab": reward_model_of_another_vocabulary(workspace, tmp_path),
        "shape": reward_model_of_another_shape(workspace, tmp_path),
        "policy": str(workspace / "init"),
    }[rm]
    config = tmp_path / "ppo.toml"
    config.write_text(
        f'init = "{workspace / "init"}"\nreward_model = "{reward_model}"\nmax_new_tokens = 6\n'
        f'[data]\ntrain = "{workspace / "train.jsonl"}"\nseq_len = 128\n[train]\ndevice = "cpu"\n'
    )
    out = tmp_path / "run"
    code, message = posttrain_command(["ppo", str(config), "-o", str(out), "--quiet", *overrides])
    assert code == 2 and "\n" not in message
    assert message.startswith(
        expected.format(train=workspace / "train.jsonl", rm=reward_model, init=workspace / "init")
    )
    if case == "every prompt too long":
        assert message.endswith(
            "a prompt may have at most 1 (the smaller of data.seq_len and the model's context, "
            "less max_new_tokens) (4 skipped (4 too long))"
        )
    assert not out.exists()


def test_the_program_reward_recipe_loads() -> None:
    """ppo-length.toml: SmolLM2 against length:4 with no reward model, group advantages, a larger learning rate."""
    config = load_run_config(PPOConfig, Path(__file__).parents[2] / "configs/posttrain/ppo-length.toml")
    assert (config.reward_program, config.reward_model, config.advantage) == ("length:4", "", "group")
    assert config.optim.lr > 1e-6 and config.beta > 0
