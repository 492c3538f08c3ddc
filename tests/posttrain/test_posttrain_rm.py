"""Reward-model training on the one trainer: the loss, ranked rows, learning, per-rating accuracy, resume, the export, bad input.

The model is a tiny random Llama in Hugging Face layout with a real tokenizer
(the llama2-style SentencePiece model of conftest.py, 500 ids) saved beside
it. The preferences are separable: the chosen answer calls a fruit "fresh
good", the rejected one "rotten bad", so a reward model learns them in a
few dozen steps; ratings cycle through Llama 2's four levels, some rows are
rankings of three answers and some are marked ``safety``.
"""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from posttrain_helpers import (
    cpu_placement,
    crash_once_at,
    losses,
    run_config,
    with_sections,
    write_rows,
    write_tiny_init,
)

from herd.errors import ConfigError, InputError
from herd.posttrain.data import RATINGS
from herd.posttrain.reward_model import RewardModel
from herd.posttrain.rm import (
    SCORE_PLOT,
    RewardBatch,
    RewardObjective,
    RMConfig,
    RMResult,
    collate,
    train_rm,
)
from herd.tokenizer import Tokenizer
from herd.tokenizer.chat import Llama2Chat
from herd.train.config import load_run_config, run_config_from_dict
from herd.train.loop import Trainer
from herd.train.metrics import METRICS_FILE, read_metrics

FRUITS = ["apple", "pear", "plum", "fig", "lime", "peach", "grape", "melon", "berry", "cherry"]
# Llama 2 Table 27's small margins, written out by hand (not read from herd.posttrain.losses).
SMALL = {"significantly_better": 1.0, "better": 2 / 3, "slightly_better": 1 / 3, "negligibly_better": 0.0}


def pair_row(rng: random.Random, n: int) -> dict[str, Any]:
    fruit = rng.choice(FRUITS)
    row: dict[str, Any] = {
        "prompt": f"{fruit} {n}?",
        "chosen": f"fresh good {fruit}",
        "rejected": f"rotten bad {fruit}",
    }
    if n % 5:  # every fifth row is unrated
        row["rating"] = RATINGS[n % 4]
    if n % 7 == 0:
        row["safety"] = True
    return row


def ranked_row(rng: random.Random, n: int) -> dict[str, Any]:
    fruit = rng.choice(FRUITS)
    return {
        "prompt": f"rank {fruit} {n}",
        "responses": [
            f"fresh good {fruit}",
            f"plain {fruit}",
            f"rotten bad {fruit}",
        ],
    }


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """One CPU thread: the fastest for tiny models (two threads spin against each other on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, llama2_tokenizer: Tokenizer) -> Path:
    """``init/`` (a tiny model with its tokenizer), ``train.jsonl`` (pairs, rankings, two bad rows), ``val.jsonl``."""
    root = tmp_path_factory.mktemp("rm")
    write_tiny_init(root, llama2_tokenizer)
    rng = random.Random(0)
    train = [pair_row(rng, n) if n % 6 else ranked_row(rng, n) for n in range(120)]
    bad = ["{not json", json.dumps({"prompt": "no answers", "rejected": "only this"})]
    write_rows(root / "train.jsonl", train + bad)
    write_rows(root / "val.jsonl", [pair_row(rng, n) for n in range(1000, 1040)])
    return root


def raw_config(root: Path, out: Path, **sections: Any) -> dict[str, Any]:
    """A raw RM config of the workspace: 8 rows of up to 128 tokens per step, 2 micro-batches of 4."""
    base = run_config(root, out, seq_len=128, rows_per_step=8, micro_batch=4)
    base["margin"] = "small"
    return with_sections(base, sections)


def make_config(root: Path, out: Path, **sections: Any) -> RMConfig:
    return run_config_from_dict(RMConfig, raw_config(root, out, **sections))


def initial_model(root: Path, seed: int = 0) -> RewardModel:
    return RewardModel.from_pretrained_lm(root / "init", seed=seed, dtype=torch.float32).eval()


def alone(model: RewardModel, ids: list[int]) -> float:
    """The score of one sequence, by itself, at its last token."""
    with torch.no_grad():
        return float(model(torch.tensor([ids]), torch.tensor([len(ids) - 1]))[0])


def responses_of(batch: RewardBatch) -> dict[tuple[int, int], list[int]]:
    """(row, response) → the response's token ids, cut out of the packed rows by their document ids."""
    out = {}
    for r in range(batch.tokens.shape[0]):
        for d in range(batch.last_index.shape[1]):
            ids = batch.tokens[r][batch.document_ids[r] == d].tolist()
            if ids:
                assert batch.last_index[r, d] == (batch.document_ids[r] == d).nonzero().max()
                out[r, d] = ids
    return out


@pytest.fixture(scope="module")
def finished(workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> RMResult:
    """A 40-step run with validation every 10 steps and the export."""
    out = tmp_path_factory.mktemp("finished") / "run"
    sections = {"train": {"steps": 40}, "log": {"val_every": 10}, "checkpoint": {"every": 20}}
    return train_rm(make_config(workspace, out, **sections))


def test_accuracy_rises_from_chance_on_held_out_pairs_and_is_reported(finished: RMResult) -> None:
    out = Path(finished.out_dir)
    records = read_metrics(out / METRICS_FILE)
    evals = [(r["step"], r["eval_accuracy"]) for r in records if "eval_accuracy" in r]
    assert [step for step, _ in evals] == [10, 20, 30, 40]
    assert finished.eval_accuracy == evals[-1][1] >= 0.9
    # The untrained head ranks the near-identical pairs all alike, often all wrong; the hand count is below.
    assert finished.eval_accuracy_before <= 0.5
    assert finished.eval_loss < math.log(2) < records[0]["loss"] + 0.05
    summary = json.loads((out / "summary.json").read_text())
    assert summary["eval_accuracy"] == finished.eval_accuracy
    assert summary["skipped_rows"] == {"train": {"invalid JSON": 1, "'chosen' missing": 1}, "val": {}}
    assert summary["rows"] == {"train": 120, "val": 40}
    assert summary["pairs"] == {"train": 100 + 20 * 3, "val": 40}  # a ranking of three gives three pairs
    assert (
        summary["final_dir"] == str(out / "final") and summary["steps"] == 40 and summary["margin"] == "small"
    )
    assert summary["epochs"] == pytest.approx(40 * 8 / 120)
    assert list(summary["accuracy"]) == [*RATINGS, "all"]
    assert summary["accuracy"]["all"]["after"] == finished.eval_accuracy
    assert summary["accuracy"]["all"]["before"] == finished.eval_accuracy_before
    after = summary["scores"]["after"]
    assert after["chosen_mean"] > after["rejected_mean"] and after["chosen_std"] > 0
    assert set(summary["scores"]["before"]) == set(after)
    for plot in (finished.score_plot, finished.loss_plot):
        assert Path(plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert finished.score_plot == str(out / SCORE_PLOT)


def test_per_rating_accuracy_is_a_hand_count_before_and_after(
    finished: RMResult, workspace: Path, llama2_tokenizer: Tokenizer
) -> None:
    """Score every val pair alone, with the initial model and with the exported one, and count per rating
    the pairs ranked right (chosen strictly higher)."""
    fmt = Llama2Chat(llama2_tokenizer)
    rows = [json.loads(line) for line in (workspace / "val.jsonl").read_text().splitlines()]
    models = {
        "before": initial_model(workspace),
        "after": RewardModel.from_pretrained(finished.final_dir).eval(),
    }
    for when, model in models.items():
        hits: dict[str, list[bool]] = {level: [] for level in [*RATINGS, "all"]}
        for row in rows:
            prompt = {"role": "user", "content": row["prompt"]}
            chosen, rejected = (
                alone(model, fmt.render([prompt, {"role": "assistant", "content": row[key]}]).ids)
                for key in ("chosen", "rejected")
            )
            for level in ("all", row.get("rating")):
                if level:
                    hits[level].append(chosen > rejected)
        for level, found in hits.items():
            assert finished.accuracy[level]["pairs"] == len(found)
            assert finished.accuracy[level][when] == pytest.approx(sum(found) / len(found), abs=1e-12), (
                when,
                level,
            )


def test_final_loads_alone_in_transformers_with_herd_s_scores(
    finished: RMResult, workspace: Path, llama2_tokenizer: Tokenizer
) -> None:
    transformers = pytest.importorskip("transformers")
    final = Path(finished.final_dir)
    fmt = Llama2Chat(llama2_tokenizer)
    texts = ["fresh good fig", "rotten bad fig", "fig"]
    seqs = [
        fmt.render([{"role": "user", "content": "is the fig ok?"}, {"role": "assistant", "content": t}]).ids
        for t in texts
    ]
    width = max(map(len, seqs))
    pad = finished.pad_id
    assert pad == llama2_tokenizer.bos_id  # the tokenizer has no padding token
    tokens = torch.tensor([s + [pad] * (width - len(s)) for s in seqs])
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(
        final, torch_dtype=torch.float32
    ).eval()
    assert hf.config.pad_token_id == pad
    herd = RewardModel.from_pretrained(final).eval()
    with torch.no_grad():
        theirs = hf(tokens).logits[:, 0]
        ours = herd(tokens)
    torch.testing.assert_close(theirs, ours, atol=1e-4, rtol=1e-4)
    assert [alone(herd, s) for s in seqs] == pytest.approx(ours.tolist(), abs=1e-5)
    assert ours[0] > ours[1]  # trained: good above bad
    initial = initial_model(workspace)
    assert abs(alone(initial, seqs[0]) - float(ours[0])) > 0.1  # the trained weights, not the init's
    auto = transformers.AutoTokenizer.from_pretrained(final)
    assert auto(texts[0], add_special_tokens=False)["input_ids"] == llama2_tokenizer.encode(texts[0])


def test_the_first_step_s_loss_is_the_mean_margin_loss_over_pairs(workspace: Path, tmp_path: Path) -> None:
    """Every response of the step's rows scored alone by the initial reward model; Table 27's small margins by
    hand; −log σ(r_c − r_r − m) averaged over the pairs in float64."""
    trainer = Trainer(make_config(workspace, tmp_path / "run"), objective=RewardObjective)
    assert trainer.schedule.warmup_steps == 1  # 3% of 12 steps, rounded up
    drawn: list[RewardBatch] = []
    original = trainer.objective.micro_batches

    def recorded() -> list[RewardBatch]:
        drawn.extend(original())
        return drawn

    trainer.objective.micro_batches = recorded  # type: ignore[method-assign]
    loss, _, _ = trainer.train_step()
    trainer.close()
    reference = initial_model(workspace)
    terms = []
    for batch in drawn:
        scores = {key: alone(reference, ids) for key, ids in responses_of(batch).items()}
        k = batch.last_index.shape[1]
        for better, worse, rating in zip(
            batch.better.tolist(), batch.worse.tolist(), batch.ratings, strict=True
        ):
            margin = SMALL[rating] if rating else 0.0
            d = scores[divmod(better, k)] - scores[divmod(worse, k)] - margin
            terms.append(math.log1p(math.exp(-d)))
    assert len(drawn) == 2 and len(terms) > 8  # 8 rows, some of them rankings of three
    assert any(r in ("significantly_better", "better") for b in drawn for r in b.ratings)
    assert loss == pytest.approx(sum(terms) / len(terms), rel=1e-5)


def test_a_ranked_row_is_scored_once_and_gives_every_ordered_pair(
    workspace: Path, tmp_path: Path, llama2_tokenizer: Tokenizer
) -> None:
    """One forward pass over one packed row of the four responses; the loss equals scoring each of the six
    ordered pairs separately (no rating, so no margin)."""
    answers = [
        "fresh good fig",
        "good fig",
        "plain fig",
        "rotten bad fig",
    ]
    path = write_rows(tmp_path / "ranked.jsonl", [{"prompt": "rank the fig", "responses": answers}])
    # The row (4 responses) is longer than the model's context (128): each response starts at position 0.
    raw = raw_config(
        workspace,
        tmp_path / "run",
        data={"train": str(path), "val": "", "seq_len": 192},
        train={"batch_tokens": 192, "micro_batch_size": 1},
    )
    objective = RewardObjective(run_config_from_dict(RMConfig, raw), cpu_placement())
    (row,) = objective.train_split.rows
    fmt = Llama2Chat(llama2_tokenizer)
    rendered = [
        fmt.render([{"role": "user", "content": "rank the fig"}, {"role": "assistant", "content": a}]).ids
        for a in answers
    ]
    assert [list(s) for s in row.sequences] == rendered
    batch = collate([row], objective.pad_id)
    assert objective.count(batch) == 6
    assert batch.tokens.shape == (1, sum(map(len, rendered)))  # each response once
    model = initial_model(workspace)
    calls = []
    forward = model.transformer.hidden_states

    def counted(tokens: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        calls.append(tokens.shape)
        return forward(tokens, **kwargs)

    model.transformer.hidden_states = counted  # type: ignore[method-assign]
    with torch.no_grad():
        loss = objective.loss(model, batch).loss_sum
    assert calls == [batch.tokens.shape]
    model.transformer.hidden_states = forward  # type: ignore[method-assign]
    scores = [alone(model, ids) for ids in rendered]
    pairs = [(i, j) for i in range(4) for j in range(i + 1, 4)]
    expected = sum(math.log1p(math.exp(-(scores[i] - scores[j]))) for i, j in pairs)
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_each_epoch_visits_every_row_once_in_a_new_order(workspace: Path, tmp_path: Path) -> None:
    raw = raw_config(
        workspace, tmp_path / "run", train={"steps": 0, "batch_tokens": 128, "micro_batch_size": 1}
    )
    raw["data"]["epochs"] = 2
    objective = RewardObjective(run_config_from_dict(RMConfig, raw), cpu_placement())
    rows = len(objective.train_split.rows)
    assert objective.steps == 2 * rows
    assert objective.config.schedule.warmup(objective.steps) == math.ceil(0.03 * 2 * rows)  # Llama 2: 3%
    first = [tuple(objective.micro_batches()[0].tokens[0].tolist()) for _ in range(rows)]
    second = [tuple(objective.micro_batches()[0].tokens[0].tolist()) for _ in range(rows)]
    assert sorted(first) == sorted(second) and len(set(first)) == rows
    assert first != second
    assert objective.state_dict() == {"taken": 2 * rows}


def test_data_safety_picks_the_safety_or_the_helpfulness_rows(workspace: Path, tmp_path: Path) -> None:
    rows = [json.loads(line) for line in (workspace / "train.jsonl").read_text().splitlines()[:-2]]
    marked = sum(1 for r in rows if r.get("safety"))
    for safety, kept, reason in (
        ("only", marked, "not a safety row (data.safety = only)"),
        ("exclude", len(rows) - marked, "safety row (data.safety = exclude)"),
    ):
        raw = raw_config(workspace, tmp_path / safety, data={"safety": safety})
        objective = RewardObjective(run_config_from_dict(RMConfig, raw), cpu_placement())
        assert len(objective.train_split.rows) == kept
        assert objective.train_split.skipped[reason] == len(rows) - kept


def test_max_pairs_draws_a_seeded_sample_of_rows(workspace: Path, tmp_path: Path) -> None:
    def sample(seed: int) -> RewardObjective:
        raw = raw_config(workspace, tmp_path / "run", data={"max_pairs": 10, "max_val_pairs": 4})
        raw["train"]["seed"] = seed
        return RewardObjective(run_config_from_dict(RMConfig, raw), cpu_placement())

    whole = RewardObjective(make_config(workspace, tmp_path / "run"), cpu_placement()).train_split.rows
    first, again, other = sample(0), sample(0), sample(1)
    assert first.val_split is not None and first.val_split.pairs == 4
    rows = first.train_split.rows
    assert first.train_split.pairs >= 10 > first.train_split.pairs - len(rows[-1].pairs)
    assert set(rows) < set(whole) and rows != whole[: len(rows)]  # drawn, not the file's head
    assert again.train_split.rows == rows and other.train_split.rows != rows


def test_a_crashed_run_resumes_exactly(
    workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two epochs over 24 rows; crashed two steps after a checkpoint of the second epoch and resumed: the same
    losses in the same data order, and the same held-out figures, as an uninterrupted run."""
    rng = random.Random(1)
    small = write_rows(tmp_path / "small.jsonl", [pair_row(rng, n) for n in range(24)])
    sections = {
        "data": {"train": str(small), "epochs": 2},
        "train": {"steps": 0},
        "checkpoint": {"every": 2, "export_hf": False},
    }
    full = train_rm(make_config(workspace, tmp_path / "full", **sections))
    assert full.steps == 6 and full.epochs == 2
    config = make_config(workspace, tmp_path / "run", **sections)
    crash_once_at(monkeypatch, 5)
    with pytest.raises(RuntimeError, match="simulated"):
        train_rm(config)
    resumed = train_rm(config, resume=True)
    assert losses(tmp_path / "run") == losses(tmp_path / "full")
    assert resumed.final_loss == full.final_loss
    assert resumed.accuracy == full.accuracy and resumed.scores == full.scores


# Runs train_rm on the config (JSON) named by argv[1]: what `herd rm` does, under torchrun.
RUN_RM = """
import json, sys
from herd.posttrain.rm import RMConfig, train_rm
from herd.train.config import load_run_config, run_config_from_dict
train_rm(run_config_from_dict(RMConfig, json.loads(open(sys.argv[1]).read())))
"""


@pytest.mark.slow
def test_two_fsdp_processes_match_one(workspace: Path, tmp_path: Path) -> None:
    """Sharded: the reward model is built on the meta device, each process sets its shards of the init
    checkpoint and the new head; the losses, held-out figures and the export equal one process's."""
    sections = {"train": {"steps": 4}, "checkpoint": {"every": 4}, "data": {"max_val_pairs": 8}}
    single = train_rm(make_config(workspace, tmp_path / "single", **sections))
    raw = raw_config(workspace, tmp_path / "sharded", parallel={"strategy": "fsdp"}, **sections)
    config = tmp_path / "sharded.json"
    config.write_text(json.dumps(raw))
    script = tmp_path / "run_rm.py"
    script.write_text(RUN_RM)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    done = subprocess.run(
        [*launcher, str(script), str(config)],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "sharded" / "summary.json").read_text())
    assert summary["extra"]["strategy"] == "fsdp" and summary["extra"]["world_size"] == 2
    got, expected = losses(tmp_path / "sharded"), losses(tmp_path / "single")
    assert sorted(got) == sorted(expected)
    for step, loss in expected.items():
        assert got[step] == pytest.approx(loss, rel=1e-4), step
    assert summary["accuracy"] == single.accuracy
    ours = RewardModel.from_pretrained(tmp_path / "sharded" / "final").state_dict()
    for name, tensor in RewardModel.from_pretrained(single.final_dir).state_dict().items():
        torch.testing.assert_close(ours[name], tensor, rtol=1e-3, atol=1e-5, msg=name)


def test_a_file_without_chosen_is_one_error_and_writes_nothing(workspace: Path, tmp_path: Path) -> None:
    bad = write_rows(tmp_path / "bad.jsonl", [{"prompt": "is it ok?", "rejected": "no"}] * 3)
    config = make_config(workspace, tmp_path / "run", data={"train": str(bad)})
    with pytest.raises(InputError) as info:
        train_rm(config)
    assert str(info.value) == f"{bad}: no usable rows: 3 skipped (3 'chosen' missing)"
    assert not (tmp_path / "run").exists()


def test_config_checks_and_defaults(workspace: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown config key\(s\): data.trian"):
        run_config_from_dict(RMConfig, raw_config(workspace, tmp_path, data={"trian": "x"}))
    with pytest.raises(ConfigError, match="margin") as info:
        run_config_from_dict(RMConfig, raw_config(workspace, tmp_path, margin="huge"))
    assert "\n" not in str(info.value) and "huge" in str(info.value)
    with pytest.raises(ConfigError, match=r"data\.safety"):
        run_config_from_dict(RMConfig, raw_config(workspace, tmp_path, data={"safety": "some"}))
    with pytest.raises(ConfigError, match="init must name the checkpoint"):
        run_config_from_dict(RMConfig, raw_config(workspace, tmp_path, init=""))
    defaults = run_config_from_dict(RMConfig, {"init": "x", "data": {"train": "y"}})
    assert defaults.optim.lr == 1e-5 and defaults.margin == "small"
    assert (defaults.schedule.warmup_ratio, defaults.schedule.min_lr_ratio) == (0.03, 0.1)
    assert (defaults.train.steps, defaults.data.epochs) == (0, 1)
    assert defaults.train.batch_tokens // defaults.data.seq_len == 512  # 512 pairs per step


@pytest.fixture
def herd_main(monkeypatch: pytest.MonkeyPatch) -> Callable[[list[str]], int]:
    """``herd.cli.main``, with ``rm`` in the command table if the table does not list it yet."""
    import herd.cli as cli

    if "rm" not in {command.name for command in cli.COMMANDS}:
        row = cli.Command(
            "rm", "posttrain", "train a reward model on preference pairs (Llama 2 reward models)"
        )
        monkeypatch.setattr(cli, "COMMANDS", (*cli.COMMANDS, row))
    return cli.main


def write_toml(path: Path, raw: dict[str, Any]) -> Path:
    """A raw config (scalars and one level of tables) as TOML."""
    lines = [f"{key} = {json.dumps(value)}" for key, value in raw.items() if not isinstance(value, dict)]
    for section, values in raw.items():
        if isinstance(values, dict):
            lines += [f"[{section}]", *(f"{key} = {json.dumps(value)}" for key, value in values.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_herd_rm_prints_the_accuracy_per_rating(
    workspace: Path, tmp_path: Path, herd_main: Callable[[list[str]], int], capsys: pytest.CaptureFixture[str]
) -> None:
    toml = write_toml(tmp_path / "rm.toml", raw_config(workspace, tmp_path / "unused"))
    out = tmp_path / "out"
    assert herd_main(["rm", str(toml), "-o", str(out), "--set", "train.steps=2", "--quiet"]) == 0
    text = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    lines = [line.split() for line in text.splitlines()]
    assert ["held-out", "accuracy", "before", "→", "after", "training", "(pairs)"] in lines
    for level, words in (("significantly_better", 2), ("negligibly_better", 4), ("all", 1)):
        row = summary["accuracy"][level]
        expected = f"{100 * row['before']:.1f}% → {100 * row['after']:.1f}% ({row['pairs']})".split()
        assert any(line[words:] == expected for line in lines), (level, text)
    assert f"{out / 'final'}, with the tokenizer from {workspace / 'init'}; pad id 1" in text
    skipped = "2 skipped (1 'chosen' missing, 1 invalid JSON)"
    assert any(line[:3] == ["skipped", "rows", "(train)"] and " ".join(line[3:]) == skipped for line in lines)


def test_herd_rm_reports_bad_input_in_one_line_with_exit_2(
    workspace: Path, tmp_path: Path, herd_main: Callable[[list[str]], int], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    bad = write_rows(tmp_path / "bad.jsonl", [{"prompt": "is it ok?", "rejected": "no"}] * 3)
    toml = write_toml(tmp_path / "rm.toml", raw_config(workspace, out, data={"train": str(bad)}))
    assert herd_main(["rm", str(toml), "--quiet"]) == 2
    assert capsys.readouterr().err == f"herd: error: {bad}: no usable rows: 3 skipped (3 'chosen' missing)\n"
    toml = write_toml(tmp_path / "rm.toml", raw_config(workspace, out))
    for setting in ("margin=huge", "data.trian=x"):
        assert herd_main(["rm", str(toml), "--set", setting]) == 2
        err = capsys.readouterr().err
        assert err.startswith("herd: error: ") and err.count("\n") == 1 and setting.split("=")[0] in err
    assert not out.exists()


ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("name", "margin", "safety", "rows_per_step"),
    [
        ("rm-demo", "small", "all", 8),
        ("llama2-rm-helpful", "small", "exclude", 512),
        ("llama2-rm-safety", "small", "only", 512),
        ("llama3-rm", "none", "all", 512),
    ],
)
def test_the_configs_load_with_the_papers_values(
    name: str, margin: str, safety: str, rows_per_step: int
) -> None:
    config = load_run_config(RMConfig, ROOT / "configs" / "posttrain" / f"{name}.toml")
    assert (config.margin, config.data.safety) == (margin, safety)
    assert config.train.batch_tokens == rows_per_step * config.data.seq_len
    assert (config.optim.lr, config.schedule.warmup_ratio, config.schedule.min_lr_ratio) == (1e-5, 0.03, 0.1)
    assert (config.train.steps, config.data.epochs) == (0, 1)
    assert (ROOT / config.data.train).is_file() and (ROOT / config.data.val).is_file()
