"""DPO on the one trainer: the loss against float64 by hand, learning, the reference pass, resume, the export, bad input.

The model is a tiny random Llama in Hugging Face layout with a real tokenizer
(the llama2-style SentencePiece model of conftest.py, 500 ids) saved beside
it. The preferences are separable: the chosen answer says a thing "is good",
the rejected one that it "is bad", so the implicit reward learns to rank them
in a few dozen steps.
"""

from __future__ import annotations

import gc
import json
import math
import random
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from posttrain_helpers import (
    cpu_placement,
    crash_once_at,
    losses,
    posttrain_command,
    run_config,
    with_sections,
    write_rows,
    write_tiny_init,
)

from herd.checkpoint.load import load_model
from herd.errors import ConfigError, InputError
from herd.model.cross_entropy import IGNORE_INDEX
from herd.model.transformer import Transformer
from herd.posttrain.data import EpochStream
from herd.posttrain.dpo import (
    REFERENCE_FILE,
    DPOConfig,
    DPOObjective,
    DPOResult,
    PairBatch,
    dpo,
    pack_pairs,
    plot_rewards,
)
from herd.tokenizer import Tokenizer
from herd.train.config import load_run_config, run_config_from_dict
from herd.train.loop import Trainer
from herd.train.metrics import METRICS_FILE, read_metrics

# Words of argparse.py, on which the test tokenizer was trained: a pair is about 55 tokens, two to a row.
WORDS = ["argument", "action", "option", "name", "parser", "default", "help", "group", "value", "type"]
BAD_ROWS = [
    "{not json",
    json.dumps({"prompt": "no answers"}),
    json.dumps({"prompt": "same", "chosen": "x", "rejected": "x"}),
]


def preference(rng: random.Random) -> dict[str, Any]:
    a, b = rng.sample(WORDS, 2)
    return {"prompt": f"{a} {b}?", "chosen": f"the {a} is good", "rejected": f"the {a} is bad"}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, llama2_tokenizer: Tokenizer) -> Path:
    """``init/`` (a tiny model with its tokenizer), ``train.jsonl`` (with three bad rows) and ``val.jsonl``."""
    root = tmp_path_factory.mktemp("dpo")
    write_tiny_init(root, llama2_tokenizer)
    rng = random.Random(0)
    write_rows(root / "train.jsonl", [preference(rng) for _ in range(120)] + BAD_ROWS)
    write_rows(root / "val.jsonl", [preference(rng) for _ in range(24)])
    return root


def raw_config(root: Path, out: Path, **sections: Any) -> dict[str, Any]:
    """A raw DPO config of the workspace: 4 rows of 128 tokens per step (two pairs a row), 2 rows a pass."""
    base = run_config(root, out, seq_len=128, rows_per_step=4, micro_batch=2)
    return with_sections(base, sections)


def make_config(root: Path, out: Path, **sections: Any) -> DPOConfig:
    return run_config_from_dict(DPOConfig, raw_config(root, out, **sections))


@pytest.fixture(scope="module")
def finished(workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> DPOResult:
    """A 30-step run of plain DPO (no NLL term, which alone would favour the chosen answers) with validation
    every 10 steps and the export."""
    out = tmp_path_factory.mktemp("finished") / "run"
    return dpo(make_config(workspace, out, variant="standard", train={"steps": 30}, log={"val_every": 10}))


# ---- the loss ------------------------------------------------------------------------------------


def hand_logprobs(model: Transformer, objective: DPOObjective, pairs: list[int]) -> torch.Tensor:
    """(pairs, 2) log-probabilities of each response, each sequence alone through full float64 logits."""
    split = objective.splits["train"]
    out = []
    for i in pairs:
        cut = split.chosen_len[i]
        sides = []
        for tokens, targets in (
            (split.tokens[i][:cut], split.targets[i][:cut]),
            (split.tokens[i][cut:], split.targets[i][cut:]),
        ):
            logits = model(tokens[None]).double()[0]
            kept = targets != IGNORE_INDEX
            sides.append(torch.log_softmax(logits[kept], -1).gather(1, targets[kept, None]).sum())
        out.append(torch.stack(sides))
    return torch.stack(out)


def first_step(config: DPOConfig, offsets: float = 0.0) -> tuple[Trainer, float, list[PairBatch]]:
    """A trainer's first step (forward and backward), the reference moved by random ``offsets``; its micro-batches."""
    trainer = Trainer(config, objective=DPOObjective)
    objective = trainer.objective
    assert isinstance(objective, DPOObjective)
    reference = objective.reference["train"]
    objective.reference["train"] = reference + offsets * torch.randn(
        reference.shape, generator=torch.Generator().manual_seed(0)
    )
    drawn: list[PairBatch] = []
    original = objective.micro_batches

    def recorded() -> list[PairBatch]:
        drawn.extend(original())
        return drawn

    objective.micro_batches = recorded  # type: ignore[method-assign]
    loss, _, _ = trainer.train_step()
    return trainer, loss, drawn


@pytest.mark.parametrize("variant", ["llama3", "standard"])
def test_a_step_s_loss_and_gradient_are_dpo_by_hand(workspace: Path, tmp_path: Path, variant: str) -> None:
    """The step's loss is the mean over its pairs of −log σ(β((π_c − ref_c) − (π_r − ref_r))) plus 0.2 × the mean
    NLL per chosen token (llama3), from float64 full-logit log-probabilities of each sequence alone; 2
    micro-batches give the loss and gradient of 1."""
    runs = []
    for micro in (4, 2):
        config = make_config(
            workspace,
            tmp_path / f"mb{micro}",
            variant=variant,
            train={"micro_batch_size": micro},
            optim={"grad_clip": 1e9},
        )
        runs.append(first_step(config, offsets=2.0))
    (whole, loss, batches), (split, split_loss, split_batches) = runs
    assert len(batches) == 1 and len(split_batches) == 2
    objective = whole.objective
    assert isinstance(objective, DPOObjective)
    pairs = batches[0].pairs.tolist()
    assert torch.cat([b.pairs for b in split_batches]).tolist() == pairs and len(pairs) >= 6

    model = load_model(workspace / "init", dtype=torch.float64).train()
    policy = hand_logprobs(model, objective, pairs)
    reference = objective.reference["train"][pairs].double()
    logits = 0.1 * ((policy[:, 0] - reference[:, 0]) - (policy[:, 1] - reference[:, 1]))
    expected = -F.logsigmoid(logits).mean()
    if variant == "llama3":
        chosen_tokens = objective.splits["train"].chosen_tokens[pairs].sum()
        expected = expected + 0.2 * -policy[:, 0].sum() / chosen_tokens
    expected.backward()
    assert loss == pytest.approx(expected.item(), rel=1e-5)
    assert split_loss == pytest.approx(expected.item(), rel=1e-5)
    for trainer in (whole, split):
        got = dict(trainer.model.named_parameters())
        for name, param in model.named_parameters():
            torch.testing.assert_close(
                got[f"transformer.{name}"].grad, param.grad.float(), rtol=1e-3, atol=1e-6, msg=name
            )
        trainer.close()


def test_the_reference_is_the_initial_model_so_the_first_loss_is_log_2(
    workspace: Path, tmp_path: Path
) -> None:
    """Reference log-probabilities equal float64 ones of the init checkpoint; at step 0 every pair's loss is log 2."""
    trainer, loss, _ = first_step(make_config(workspace, tmp_path / "run"))
    objective = trainer.objective
    assert isinstance(objective, DPOObjective)
    every = list(range(len(objective.splits["train"])))
    model = load_model(workspace / "init", dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(
            objective.reference["train"].double(),
            hand_logprobs(model, objective, every),
            rtol=1e-5,
            atol=1e-4,
        )
    stats = trainer.step_stats
    assert stats["preference_loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert stats["reward_margin"] == pytest.approx(0.0, abs=1e-4)
    assert loss == pytest.approx(math.log(2) + 0.2 * stats["nll"], rel=1e-6)
    assert stats["nll"] == pytest.approx(math.log(500), rel=0.2)  # a random model: about log(vocab) per token
    trainer.close()


def test_llama3_masks_the_end_of_turn_token_out_of_both_responses(
    workspace: Path, tmp_path: Path, llama2_tokenizer: Tokenizer
) -> None:
    """Standard DPO scores each response and the token that ends its turn; llama3 the response alone."""
    trained: dict[str, list[tuple[list[int], list[int]]]] = {}
    for variant in ("llama3", "standard"):
        split = DPOObjective(make_config(workspace, tmp_path, variant=variant), cpu_placement()).splits[
            "train"
        ]
        trained[variant] = [
            (t[:cut][t[:cut] != IGNORE_INDEX].tolist(), t[cut:][t[cut:] != IGNORE_INDEX].tolist())
            for t, cut in zip(split.targets, split.chosen_len, strict=True)
        ]
        assert split.chosen_tokens.tolist() == [len(chosen) for chosen, _ in trained[variant]]
    eos = llama2_tokenizer.eos_id
    for (chosen, rejected), (chosen_eot, rejected_eot) in zip(
        trained["llama3"], trained["standard"], strict=True
    ):
        assert (chosen_eot, rejected_eot) == ([*chosen, eos], [*rejected, eos])
        assert llama2_tokenizer.decode(chosen).strip().endswith(" is good")
        assert llama2_tokenizer.decode(rejected).strip().endswith(" is bad")


# ---- learning and the result -----------------------------------------------------------------------


def test_dpo_learns_to_rank_the_held_out_pairs_and_reports(finished: DPOResult) -> None:
    out = Path(finished.out_dir)
    records = read_metrics(out / METRICS_FILE)
    evals = [
        (r["step"], r["eval_reward_accuracy"], r["eval_reward_margin"]) for r in records if "eval_loss" in r
    ]
    assert [step for step, _, _ in evals] == [10, 20, 30]
    assert (finished.eval_reward_accuracy_before, finished.eval_reward_margin_before) == (0.0, 0.0)
    assert finished.eval_reward_accuracy >= 0.9 and finished.eval_reward_margin > 0.5
    assert finished.eval_loss < finished.eval_loss_before
    steps = [r for r in records if "loss" in r]
    assert steps[0]["preference_loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert steps[-1]["reward_accuracy"] >= 0.9
    for key in (
        "rewards_chosen",
        "rewards_rejected",
        "logps_chosen",
        "logps_rejected",
        "reward_margin",
        "nll",
    ):
        assert math.isfinite(steps[-1][key]), key
    assert steps[-1]["rewards_chosen"] > steps[-1]["rewards_rejected"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["eval_reward_accuracy"] == finished.eval_reward_accuracy
    assert summary["eval_reward_margin_before"] == 0.0
    assert summary["skipped_rows"] == {
        "train": {"invalid JSON": 1, "'chosen' missing": 1, "chosen equals rejected": 1},
        "val": {},
    }
    assert summary["pairs"] == {"train": 120, "val": 24}
    assert summary["final_dir"] == str(out / "final") and summary["steps"] == 30
    assert summary["variant"] == "standard" and summary["beta"] == 0.1
    assert Path(summary["reference_logps"]).is_file()
    assert summary["reward_plot"] == str(out / "rewards.png")
    assert (out / "rewards.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_rewards([r for r in records if "loss" not in r], {}, out / "none.png") is None
    assert not (out / "none.png").exists()


def test_final_loads_alone_in_transformers(
    finished: DPOResult, workspace: Path, llama2_tokenizer: Tokenizer
) -> None:
    """`final/` holds the trained weights and the tokenizer: transformers reads both, with herd's logits, and
    prefers the chosen answer more than the initial model did."""
    transformers = pytest.importorskip("transformers")
    final = Path(finished.final_dir)
    texts = [f"[INST] action name? [/INST] the action is {answer}" for answer in ("good", "bad")]
    ids = [llama2_tokenizer.encode(text, bos=True) for text in texts]
    assert transformers.AutoTokenizer.from_pretrained(final)(texts)["input_ids"] == ids
    hf = transformers.AutoModelForCausalLM.from_pretrained(final, dtype=torch.float32).eval()
    shared = next(i for i, (a, b) in enumerate(zip(*ids, strict=False)) if a != b)
    rewards = []
    for tokens in ids:
        tokens = torch.tensor([tokens])
        with torch.no_grad():
            ours, initial = load_model(final)(tokens), load_model(workspace / "init")(tokens)
            torch.testing.assert_close(hf(tokens).logits, ours, atol=1e-4, rtol=1e-4)
        answer = tokens[0, shared:]
        logps = [
            logits[0, shared - 1 : -1].log_softmax(-1).gather(1, answer[:, None]).sum()
            for logits in (ours, initial)
        ]
        rewards.append(logps[0] - logps[1])
    assert rewards[0] - rewards[1] > 1.0  # "is good" gained on "is bad"


# ---- the reference pass, memory and resume ---------------------------------------------------------


def count_reference_passes(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    calls: list[list[str]] = []
    original = DPOObjective._compute_reference

    def counted(self: DPOObjective, model: torch.nn.Module, names: list[str]) -> dict[str, torch.Tensor]:
        calls.append(list(names))
        return original(self, model, names)

    monkeypatch.setattr(DPOObjective, "_compute_reference", counted)
    return calls


def test_a_crashed_run_resumes_exactly_without_a_second_reference_pass(
    workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over an epoch boundary, crashed after a checkpoint and resumed (then restarted in-process): the same
    losses as an uninterrupted run, and the reference log-probabilities computed once, read back after."""
    calls = count_reference_passes(monkeypatch)
    sections = {
        "train": {"steps": 0},
        "data": {"epochs": 2, "max_pairs": 32},
        "checkpoint": {"every": 3, "export_hf": False},
    }
    full = dpo(make_config(workspace, tmp_path / "full", **sections))
    assert calls == [["train", "val"]]
    config = make_config(workspace, tmp_path / "run", **sections)
    crash_once_at(monkeypatch, full.steps // 2 + 1)  # after the checkpoint of step 3, past the epoch's end
    with pytest.raises(RuntimeError, match="simulated"):
        dpo(config)
    assert len(calls) == 2
    reference = (tmp_path / "run" / REFERENCE_FILE).read_bytes()
    resumed = dpo(config, resume=True)
    assert len(calls) == 2  # read back, not computed again
    assert (tmp_path / "run" / REFERENCE_FILE).read_bytes() == reference
    assert losses(tmp_path / "run") == losses(tmp_path / "full")
    assert resumed.final_loss == full.final_loss and resumed.eval_loss == full.eval_loss
    assert resumed.eval_reward_accuracy_before == full.eval_reward_accuracy_before == 0.0
    assert (
        full.steps == 8 and 2.0 <= full.epochs < 2.25
    )  # two passes; the last step spills over by less than one

    crash_once_at(monkeypatch, 2)
    restarted = dpo(make_config(workspace, tmp_path / "restart", **sections, fault={"max_restarts": 1}))
    assert restarted.restarts == 1 and len(calls) == 3
    assert losses(tmp_path / "restart") == losses(tmp_path / "full")


def test_a_changed_held_out_file_recomputes_only_its_reference(
    workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = count_reference_passes(monkeypatch)
    dpo(make_config(workspace, tmp_path / "run", train={"steps": 2}, checkpoint={"export_hf": False}))
    other = write_rows(tmp_path / "val.jsonl", [preference(random.Random(5)) for _ in range(6)])
    resumed = dpo(
        make_config(workspace, tmp_path / "run", data={"val": str(other)}, train={"steps": 3}),
        resume=True,
    )
    assert calls == [["train", "val"], ["val"]]
    assert resumed.pairs == {"train": 120, "val": 6}


def test_no_reference_model_is_alive_while_training(
    workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """During training the only decoder alive is the policy, and the only parameters are its own.

    Objects that earlier tests in this process left alive are not the run's: they are held (so
    their ids cannot be reused) and left out of the count.
    """
    seen: list[tuple[int, int, int]] = []
    original = Trainer.train_step

    def counted() -> list[object]:
        gc.collect()  # compared by type: isinstance would touch deprecated torch objects
        return [o for o in gc.get_objects() if type(o) in (Transformer, torch.nn.Parameter)]

    earlier = counted()
    before = {id(o) for o in earlier}

    def inspected(self: Trainer) -> tuple[float, float, float]:
        alive = [o for o in counted() if id(o) not in before]
        decoders = [o for o in alive if type(o) is Transformer]
        parameters = {id(o): o.numel() for o in alive if type(o) is torch.nn.Parameter}
        own = sum(p.numel() for p in self.model.parameters())
        seen.append((len(decoders), sum(parameters.values()), own))
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", inspected)
    dpo(make_config(workspace, tmp_path / "run", train={"steps": 2}, checkpoint={"export_hf": False}))
    assert [(n, total == own) for n, total, own in seen] == [(1, True), (1, True)]


# ---- batching --------------------------------------------------------------------------------------


def test_steps_pack_whole_pairs_into_rows_and_visit_every_pair_once_per_epoch(
    workspace: Path, tmp_path: Path
) -> None:
    objective = DPOObjective(
        make_config(workspace, tmp_path, train={"steps": 0}, data={"epochs": 2}), cpu_placement()
    )
    lengths = objective.lengths
    drawn: list[int] = []
    per_step = []
    for _ in range(objective.steps):
        batches = objective.micro_batches()
        per_step.append(sum(len(batch.pairs) for batch in batches))
        assert len(batches) == 2
        for batch in batches:
            assert batch.tokens.shape[0] == 2 and batch.tokens.shape[1] <= 128
            pairs = batch.pairs.tolist()
            assert batch.documents == 2 * len(pairs) + 1
            for j, i in enumerate(pairs):  # chosen then rejected, as long as the pair
                assert (
                    int((batch.document_ids == 2 * j).sum() + (batch.document_ids == 2 * j + 1).sum())
                    == lengths[i]
                )
            drawn += pairs
    n = len(lengths)
    assert sorted(drawn[:n]) == sorted(drawn[n : 2 * n]) == list(range(n))
    assert drawn[:n] != drawn[n : 2 * n]
    assert objective.state_dict() == {"taken": len(drawn)} and 0 <= len(drawn) - 2 * n < per_step[-1]


def test_pack_pairs_fills_rows_greedily() -> None:
    lengths = [5, 4, 3, 6, 2, 7]
    assert pack_pairs(range(6), lengths, 10) == [[0, 1], [2, 3], [4, 5]]
    assert pack_pairs(iter([5, 0, 1, 2, 3, 4]), lengths, 10, rows=2) == [[5], [0, 1]]
    stream = EpochStream(6, seed=1)
    rows = pack_pairs(stream.upcoming(), lengths, 10, rows=2)
    assert stream.take(sum(map(len, rows))) == [i for row in rows for i in row]


# ---- bad input -----------------------------------------------------------------------------------


def test_a_file_without_usable_pairs_is_one_error_and_writes_nothing(workspace: Path, tmp_path: Path) -> None:
    bad = write_rows(
        tmp_path / "bad.jsonl", [{"prompt": "hi", "rejected": "no"}, {"prompt": "yo", "rejected": "x"}]
    )
    config = make_config(workspace, tmp_path / "run", data={"train": str(bad)})
    with pytest.raises(InputError) as info:
        dpo(config)
    assert str(info.value) == f"{bad}: no usable rows: 2 skipped (2 'chosen' missing)"
    assert not (tmp_path / "run").exists()


def dpo_command(argv: list[str]) -> tuple[int, str]:
    return posttrain_command(["dpo", *argv])


def test_the_command_reports_bad_input_in_one_line_with_exit_2(workspace: Path, tmp_path: Path) -> None:
    bad = write_rows(tmp_path / "bad.jsonl", [{"prompt": "hi", "rejected": "no"}])
    config = tmp_path / "dpo.toml"
    config.write_text(f'init = "{workspace / "init"}"\n[data]\ntrain = "{bad}"\n')
    out = tmp_path / "run"
    assert dpo_command([str(config), "-o", str(out), "--quiet"]) == (
        2,
        f"{bad}: no usable rows: 1 skipped (1 'chosen' missing)",
    )
    assert not out.exists()
    config.write_text(f'init = "{workspace / "init"}"\nbetta = 0.2\n[data]\ntrain = "{bad}"\n')
    assert dpo_command([str(config)]) == (2, "unknown config key(s): betta")


def test_the_command_prints_accuracy_and_margin_before_and_after(finished: DPOResult) -> None:
    from herd.cli.posttrain import dpo_rows

    rows = dict(dpo_rows(finished))
    assert rows["reward plot"] == finished.reward_plot
    accuracy = f"0.0% → {100 * finished.eval_reward_accuracy:.1f}% (24 pairs; before: the initial model, every reward 0)"
    assert rows["held-out reward accuracy"] == accuracy
    assert rows["held-out reward margin"] == f"0.0000 → {finished.eval_reward_margin:.4f}"
    assert (
        rows["pairs"] == "120 train, 24 val; " + f"{finished.epochs:.2f} epochs; beta 0.1, variant standard"
    )
    assert (
        rows["skipped rows (train)"]
        == "3 skipped (1 'chosen' missing, 1 chosen equals rejected, 1 invalid JSON)"
    )
    assert rows["weights (Hugging Face layout)"].startswith(f"{finished.final_dir}, with the tokenizer from ")


def test_config_checks_and_defaults(workspace: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown config key\(s\): betta"):
        run_config_from_dict(DPOConfig, raw_config(workspace, tmp_path, betta=0.2))
    with pytest.raises(ConfigError, match="beta must be positive"):
        make_config(workspace, tmp_path, beta=0.0)
    with pytest.raises(ConfigError, match=r"data\.train must name the training preferences"):
        make_config(workspace, tmp_path, data={"train": ""})
    with pytest.raises(ConfigError, match="variant"):
        make_config(workspace, tmp_path, variant="ipo")
    defaults = run_config_from_dict(DPOConfig, {"init": "x", "data": {"train": "y"}})
    assert (defaults.optim.lr, defaults.beta, defaults.variant, defaults.nll_weight) == (
        1e-5,
        0.1,
        "llama3",
        0.2,
    )
    assert (defaults.data.epochs, defaults.out_dir) == (1, "runs/dpo")
    assert (
        run_config_from_dict(
            DPOConfig, {"init": "x", "data": {"train": "y"}, "variant": "standard"}
        ).nll_weight
        == 0.0
    )


@pytest.mark.parametrize("name", ["dpo-demo", "llama3-dpo"])
def test_the_recipes_are_llama_3_s(name: str) -> None:
    """Both configs load and keep Llama 3 §4.1.4's values: lr 1e-5, β 0.1, masking and the 0.2 NLL term."""
    config = load_run_config(DPOConfig, Path(__file__).parents[2] / "configs/posttrain" / f"{name}.toml")
    assert (config.optim.lr, config.beta, config.variant, config.nll_weight) == (1e-5, 0.1, "llama3", 0.2)
