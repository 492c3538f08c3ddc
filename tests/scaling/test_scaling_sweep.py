"""The IsoFLOP sweep: FLOP accounting by hand, the plan of a small grid, a real tiny sweep, and its resume.

Llama 3 §3.2.1 trains every model size at every compute budget; herd derives
each run's tokens from its budget and herd's exact FLOPs per token (PaLM's
``6·N_matmul + 12·L·H·Q·T``), beside Chinchilla's ``C / (6N)``. The parameter
and FLOP counts below are worked out by hand from the shapes, not by herd.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from herd.errors import ConfigError
from herd.io.token_shards import MANIFEST, write_dataset
from herd.scaling.runs import read_runs, write_runs
from herd.scaling.sweep import RUN_CONFIG, RUNS_CSV, load_sweep, plan, run_sweep, sweep_from_dict, to_toml
from herd.tokenizer.save import save_tokenizer
from herd.tokenizer.train import train_tokenizer
from herd.train.config import load_config
from herd.train.loop import Trainer

REPO = Path(__file__).resolve().parents[2]
ARC_EASY = REPO / "configs" / "eval" / "arc_easy.toml"

# Two shapes (llama3-tiny otherwise: untied embeddings, RMSNorm weights only, GQA), vocabulary 96, T = 32.
SMALL = {"name": "small", "dim": 32, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "hidden_dim": 64}
LARGE = {"name": "large", "dim": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "hidden_dim": 128}
# small, per layer: wq 32·32 + wk 32·(2·8) + wv 32·16 + wo 32·32 + SwiGLU 3·32·64 + 2 norms·32 = 9,280;
# 2 layers + final norm 32 = 18,592 non-embedding; + embedding and output 2·96·32 = 24,736.
# F = 6·(N − the embedding lookup 96·32) + 12·L·H·Q·T = 6·21,664 + 12·2·4·8·32 = 154,560.
SMALL_N, SMALL_NON_EMBEDDING, SMALL_F = 24_736, 18_592, 154_560
# large: 64·64 + 64·32 + 64·32 + 64·64 + 3·64·128 + 2·64 = 36,992 per layer; 2 layers + 64 = 74,048;
# + 2·96·64 = 86,336. F = 6·(86,336 − 6,144) + 12·2·4·16·32 = 481,152 + 49,152 = 530,304.
LARGE_N, LARGE_NON_EMBEDDING, LARGE_F = 86_336, 74_048, 530_304

TEXTS = [f"The quick brown fox {i} jumps over the lazy dog, which sleeps {i % 7} hours." for i in range(240)]


def base_table(data: Path, **model: Any) -> dict[str, Any]:
    """A tiny pretraining config: 256-token steps of 8 sequences, a checkpoint every 3 steps."""
    return {
        "out_dir": "unused",
        "model": {"preset": "llama3-tiny", "max_seq_len": 64, **model},
        "data": {"path": str(data), "seq_len": 32},
        "optim": {"lr": 1e-2},
        "train": {"batch_tokens": 256, "micro_batch_size": 4},
        "checkpoint": {"every": 3, "keep": 2, "export_hf": False},
        "log": {"progress": False, "tensorboard": False, "val_batches": 2},
    }


def write_base(tmp_path: Path, table: dict[str, Any]) -> Path:
    path = tmp_path / "base.toml"
    path.write_text(to_toml(table))
    return path


def test_the_derived_toml_reads_back_as_the_same_pretraining_config(tmp_path: Path) -> None:
    table = base_table(tmp_path / "data", vocab_size=96) | {"data": {"path": "d", "weights": {"a b": 2.0}}}
    assert load_config(write_base(tmp_path, table)).to_dict()["data"]["weights"] == {"a b": 2.0}


def test_tokens_come_from_herd_s_exact_flops_beside_6n(tmp_path: Path) -> None:
    """D = C / F with F counted by hand; C/(6N) and 6·N·D reported beside it; steps = round(D / batch)."""
    base = write_base(tmp_path, base_table(tmp_path / "no-data-needed", vocab_size=96))
    sweep = sweep_from_dict(
        {"base": str(base), "out_dir": str(tmp_path / "s"), "budgets": [4e8, 2e9], "models": [SMALL, LARGE]}
        | {"min_steps": 1}
    )
    rows = plan(sweep)
    assert [r.name for r in rows] == ["small-4e8", "large-4e8", "small-2e9", "large-2e9"]
    assert [(r.params, r.non_embedding_params, r.flops_per_token) for r in rows[:2]] == [
        (SMALL_N, SMALL_NON_EMBEDDING, SMALL_F),
        (LARGE_N, LARGE_NON_EMBEDDING, LARGE_F),
    ]
    small = rows[0]
    assert small.tokens == pytest.approx(4e8 / 154_560, rel=1e-15)  # 2,587.97 tokens
    assert small.tokens_6n == pytest.approx(4e8 / (6 * 24_736), rel=1e-15)  # 2,695.16: 6N undercounts F
    assert small.flops_6nd == pytest.approx(6 * 24_736 * 4e8 / 154_560, rel=1e-12)
    assert [r.steps for r in rows] == [10, 3, 51, 15]  # round(2,587.97/256), round(754.3/256), ...
    assert small.config is not None and small.config.train.steps == 10
    assert small.config.out_dir == str(tmp_path / "s" / "runs" / "small-4e8")
    assert small.config.model_config().hidden_dim == 64
    assert (small.config.schedule.warmup_steps, small.config.schedule.warmup_ratio) == (0, 0.05)
    assert all(r.skipped == "" for r in rows)


def test_absurd_pairs_are_skipped_with_their_reason(tmp_path: Path) -> None:
    base = write_base(tmp_path, base_table(tmp_path / "d", vocab_size=96))
    raw = {"base": str(base), "budgets": [4e8, 2e9], "models": [SMALL, LARGE], "min_steps": 5}
    sweep = sweep_from_dict(raw | {"max_tokens_per_param": 0.05})
    reasons = {r.name: r.skipped for r in plan(sweep)}
    assert reasons == {
        "small-4e8": "D/N 0.105 > max_tokens_per_param 0.05",  # 2,587.97 / 24,736
        "large-4e8": "3 steps < min_steps 5",
        "small-2e9": "D/N 0.523 > max_tokens_per_param 0.05",
        "large-2e9": "",  # 3,771.4 / 86,336 = 0.0437
    }
    assert all(r.config is None for r in plan(sweep) if r.skipped)
    assert plan(sweep_from_dict(raw | {"min_tokens_per_param": 0.2}))[2].skipped == ""


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"budgets": [1e9, -1.0]}, "budgets must be positive"),
        ({"models": []}, "models must list at least one model"),
        ({"warmup_fraction": 1.0}, r"warmup_fraction must be in \[0, 1\)"),
        ({"learning_rate": 1}, "unknown config key.*learning_rate"),
        ({"models": [3]}, r"models\[0\]: expected a preset name or a table"),
    ],
)
def test_bad_sweep_configs_are_one_line_errors(change: dict[str, Any], message: str) -> None:
    raw = {"base": "b.toml", "budgets": [1e9], "models": ["llama3-tiny"]} | change
    with pytest.raises(ConfigError, match=message):
        sweep_from_dict(raw)


def test_a_model_entry_with_an_unknown_key_or_a_repeated_name_is_refused(tmp_path: Path) -> None:
    base = write_base(tmp_path, base_table(tmp_path / "d", vocab_size=96))
    with pytest.raises(ConfigError, match=r"models\[1\]: unknown key\(s\) width"):
        plan(sweep_from_dict({"base": str(base), "budgets": [1e9], "models": [SMALL, {"width": 3}]}))
    twice = sweep_from_dict({"base": str(base), "budgets": [1e9], "models": [SMALL, SMALL | {"dim": 48}]})
    with pytest.raises(ConfigError, match="two runs of the sweep are named 'small-1e9'"):
        plan(twice)


def test_a_base_without_held_out_data_is_refused_before_training(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "d", {"train": {"web": [[0, *range(2, 90), 1]] * 4}}, vocab_size=96)
    base = write_base(tmp_path, base_table(data, vocab_size=96))
    out = tmp_path / "o"
    sweep = sweep_from_dict({"base": str(base), "out_dir": str(out), "budgets": [4e8], "models": [SMALL]})
    with pytest.raises(ConfigError, match=r"d: no held-out split \(val\)"):
        run_sweep(sweep, say=lambda line: None)
    assert not out.exists()


def test_an_eval_task_that_is_not_multiple_choice_is_refused_before_training(
    tokenized_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "o"
    raw = {"base": str(write_base(tmp_path, base_table(tokenized_data))), "out_dir": str(out)}
    sweep = sweep_from_dict(
        raw | {"budgets": [4e8], "models": [SMALL], "eval_task": str(REPO / "configs/eval/gsm8k.toml")}
    )
    with pytest.raises(
        ConfigError,
        match=r"eval_task .*gsm8k\.toml' is a generate task: the sweep needs a multiple-choice one",
    ):
        run_sweep(sweep, say=lambda line: None)
    with pytest.raises(ConfigError, match="unknown task 'no_such_task'"):
        run_sweep(sweep_from_dict(raw | {"budgets": [4e8], "models": [SMALL], "eval_task": "no_such_task"}))
    assert not out.exists()


@pytest.fixture(scope="module")
def tokenized_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Token shards of TEXTS (train and val) made by a tiny Llama-3-style tokenizer that the manifest names."""
    root = tmp_path_factory.mktemp("tokenized")
    tokenizer = train_tokenizer(
        iter(TEXTS), root / "trained", style="llama3", vocab_size=300, heldout=0
    ).tokenizer
    docs = [tokenizer.encode(text, bos=True, eos=True) for text in TEXTS]
    data = write_dataset(
        root / "data",
        {"train": {"web": docs[:200]}, "val": {"web": docs[200:]}},
        vocab_size=tokenizer.vocab_size,
    )
    save_tokenizer(tokenizer, data / "tokenizer")
    manifest = json.loads((data / MANIFEST).read_text())
    (data / MANIFEST).write_text(json.dumps(manifest | {"tokenizer": "tokenizer"}))
    return data


def inline(table: dict[str, Any]) -> str:
    """A flat table as a TOML inline table."""
    return "{" + ", ".join(f"{key} = {json.dumps(value)}" for key, value in table.items()) + "}"


def sweep_file(tmp_path: Path, data: Path, out: Path, budgets: str = "[2.5e8, 5e8]") -> Path:
    """``budgets`` (2 by default) × 2 models of 1 to 8 steps on ``data``, evaluated on 4 ARC-Easy questions."""
    base = write_base(tmp_path, base_table(data))
    lines = [
        f"base = {json.dumps(str(base))}",
        f"out_dir = {json.dumps(str(out))}",
        f"budgets = {budgets}",
        f"models = [{inline(LARGE)}, {inline(SMALL)}]",
        "min_steps = 1",
        f"eval_task = {json.dumps(str(ARC_EASY))}",
        "eval_limit = 4",
    ]
    path = tmp_path / "sweep.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def finished_sweep(tokenized_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The out_dir of an uninterrupted tiny sweep."""
    tmp = tmp_path_factory.mktemp("full")
    run_sweep(load_sweep(sweep_file(tmp, tokenized_data, tmp / "out")), say=lambda line: None)
    return tmp / "out"


def test_a_tiny_sweep_writes_one_row_per_run(finished_sweep: Path) -> None:
    runs = read_runs(
        finished_sweep / RUNS_CSV, ["params", "tokens", "flops", "val_loss", "eval_nll", "eval_acc"]
    )
    assert [r.run for r in runs] == ["large-2.5e8", "small-2.5e8", "large-5e8", "small-5e8"]
    assert [r.tokens for r in runs] == [256, 4 * 256, 3 * 256, 8 * 256]  # round(C / F / 256) steps
    for run in runs:
        config = load_config(finished_sweep / "runs" / run.run / RUN_CONFIG)
        assert run.tokens == config.train.steps * 256
        assert run.flops_6nd == 6 * run.params * run.tokens
        dim, head_dim = (32, 8) if run.run.startswith("small") else (64, 16)
        # PaLM's count by hand: every weight but the 556-id embedding lookup, and the attention at T = 32
        assert run.flops == (6 * (run.params - 556 * dim) + 12 * 2 * 4 * head_dim * 32) * run.tokens
        assert run.eval_task == "arc_easy" and run.eval_nll > 0 and 0 <= run.eval_acc <= 1
        summary = json.loads((finished_sweep / "runs" / run.run / "summary.json").read_text())
        assert run.val_loss == summary["val_loss"]
    assert [r.budget for r in runs] == [2.5e8, 2.5e8, 5e8, 5e8]


def test_a_rerun_skips_the_finished_runs(finished_sweep: Path, tokenized_data: Path, tmp_path: Path) -> None:
    before = (finished_sweep / RUNS_CSV).read_bytes()
    lines: list[str] = []
    sweep = load_sweep(sweep_file(tmp_path, tokenized_data, finished_sweep))
    run_sweep(sweep, say=lines.append)
    assert (finished_sweep / RUNS_CSV).read_bytes() == before
    assert len(lines) == 4 and all("done (row in" in line for line in lines)


def test_an_interrupted_sweep_resumes_to_the_same_rows(
    finished_sweep: Path, tokenized_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second run dies in step 4 (after its checkpoint at 3); the rerun skips the first, resumes the second.

    The rows equal the uninterrupted sweep's bit for bit (its first budget: the same two runs).
    """
    sweep = load_sweep(sweep_file(tmp_path, tokenized_data, tmp_path / "out", budgets="[2.5e8]"))
    original = Trainer.train_step
    calls: list[str] = []

    def dies_once(self: Trainer) -> tuple[float, float, float]:
        if self.out_dir.name == "small-2.5e8" and self.step == 3 and not calls:
            calls.append(str(self.out_dir))
            raise RuntimeError("simulated node failure")
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", dies_once)
    with pytest.raises(RuntimeError, match="simulated"):
        run_sweep(sweep, say=lambda line: None)
    assert [r.run for r in read_runs(tmp_path / "out" / RUNS_CSV, ["run"])] == ["large-2.5e8"]
    lines: list[str] = []
    run_sweep(sweep, say=lines.append)
    assert any("small-2.5e8: resuming from" in line and "step_00000003" in line for line in lines), lines
    resumed = (tmp_path / "out" / RUNS_CSV).read_text().splitlines()
    assert resumed == (finished_sweep / RUNS_CSV).read_text().splitlines()[:3]  # the header and two rows


def test_a_run_killed_between_its_training_and_its_row_gets_the_same_row(
    finished_sweep: Path, tokenized_data: Path, tmp_path: Path
) -> None:
    """The last run's final checkpoint is there but its row is not: the rerun resumes at the end, validates
    and evaluates again, and appends the row it would have written."""
    out = Path(shutil.copytree(finished_sweep, tmp_path / "out"))
    write_runs(out / RUNS_CSV, read_runs(out / RUNS_CSV, ["run"])[:-1])
    lines: list[str] = []
    run_sweep(load_sweep(sweep_file(tmp_path, tokenized_data, out)), say=lines.append)
    assert any("small-5e8: resuming from" in line and "step_00000008" in line for line in lines), lines
    assert (out / RUNS_CSV).read_bytes() == (finished_sweep / RUNS_CSV).read_bytes()


def test_cli_dry_run_prints_the_plan_and_trains_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from herd.cli.scaling_sweep import add_parser

    base = write_base(tmp_path, base_table(tmp_path / "d", vocab_size=96))
    config = tmp_path / "sweep.toml"
    config.write_text(f'base = "{base}"\nbudgets = [4e8]\nmodels = ["llama3-tiny"]\n')
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(
        ["sweep", str(config), "-o", str(tmp_path / "o"), "--dry-run", "--set", "min_steps=1"]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("| run | budget | model | N | F (FLOPs/token) | D = C/F | C/(6N) | 6ND | steps |")
    assert "| llama3-tiny-4e8 | 4e+08 | llama3-tiny |" in out
    assert not (tmp_path / "o").exists()
    args = parser.parse_args(["sweep", str(config), "--dry-run", "--json", "--set", "budgets=[1e3]"])
    assert args.func(args) == 0
    (row,) = json.loads(capsys.readouterr().out)["plan"]
    assert row["steps"] == 0 and row["skipped"] == "0 steps < min_steps 10"
