"""Supervised fine-tuning on the pretraining trainer: learning, the loss, the data stream, resume, the export, bad input.

The model is a tiny random Llama in Hugging Face layout with a real tokenizer
(the llama2-style SentencePiece model of conftest.py, 500 ids) saved beside
it; the conversations are additions ("add 3 and 4" → "the sum is 7"), so the
answers are learnable in a few dozen steps.
"""

from __future__ import annotations

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
    run_config,
    with_sections,
    write_rows,
    write_tiny_init,
)

from herd.checkpoint.load import load_model
from herd.cli import main
from herd.errors import ConfigError, InputError
from herd.model.cross_entropy import IGNORE_INDEX
from herd.posttrain.config import SFTConfig
from herd.posttrain.sft import SFTObjective, SFTResult, sft, stack
from herd.tokenizer import Tokenizer, load_tokenizer
from herd.tokenizer.base import TokenizerError
from herd.train.config import load_run_config, run_config_from_dict
from herd.train.dataset import Batch
from herd.train.loop import Trainer
from herd.train.metrics import METRICS_FILE, read_metrics

BAD_ROWS = [
    "{not json",
    json.dumps({"text": "no messages"}),
    json.dumps({"messages": [{"role": "user", "content": "add 1 and 2"}]}),
]


def addition(rng: random.Random) -> dict[str, Any]:
    a, b = rng.randint(1, 30), rng.randint(1, 30)
    return {
        "messages": [
            {"role": "user", "content": f"add {a} and {b}"},
            {"role": "assistant", "content": f"the sum is {a + b}"},
        ]
    }


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, llama2_tokenizer: Tokenizer) -> Path:
    """``init/`` (a tiny model with its tokenizer), ``train.jsonl`` (with three bad rows) and ``val.jsonl``."""
    root = tmp_path_factory.mktemp("sft")
    write_tiny_init(root, llama2_tokenizer)
    rng = random.Random(0)
    write_rows(root / "train.jsonl", [addition(rng) for _ in range(200)] + BAD_ROWS)
    write_rows(root / "val.jsonl", [addition(rng) for _ in range(24)])
    return root


def raw_config(root: Path, out: Path, **sections: dict) -> dict[str, Any]:
    """A raw SFT config of the workspace: 8 sequences of 64 tokens per step, 2 micro-batches of 4."""
    base = run_config(root, out, seq_len=64, rows_per_step=8, micro_batch=4)
    return with_sections(base, sections)


def make_config(root: Path, out: Path, **sections: dict) -> SFTConfig:
    return run_config_from_dict(SFTConfig, raw_config(root, out, **sections))


@pytest.fixture(scope="module")
def finished(workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> SFTResult:
    """A 30-step run with validation every 10 steps and the export."""
    out = tmp_path_factory.mktemp("finished") / "run"
    return sft(make_config(workspace, out, train={"steps": 30}, log={"val_every": 10}))


def test_sft_lowers_the_held_out_loss_and_reports(finished: SFTResult, llama2_tokenizer: Tokenizer) -> None:
    out = Path(finished.out_dir)
    records = read_metrics(out / METRICS_FILE)
    train = [r["loss"] for r in records if "loss" in r]
    evals = [(r["step"], r["eval_loss"]) for r in records if "eval_loss" in r]
    assert train[0] == pytest.approx(math.log(llama2_tokenizer.vocab_size), abs=0.5)  # a random start
    assert [step for step, _ in evals] == [10, 20, 30]
    assert evals[-1][1] == finished.eval_loss < evals[0][1] < train[0]
    assert finished.eval_loss < train[0] - 2.0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["eval_loss"] == finished.eval_loss
    assert summary["skipped_rows"] == {
        "train": {"invalid JSON": 1, "'messages' missing": 1, "last message not from the assistant": 1},
        "val": {},
    }
    assert summary["conversations"] == {"train": 200, "val": 24}
    assert summary["final_dir"] == str(out / "final") and summary["steps"] == 30
    assert summary["tokens"] == 30 * 8 * 64
    assert Path(finished.loss_plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_final_loads_alone_in_transformers(
    finished: SFTResult, workspace: Path, llama2_tokenizer: Tokenizer
) -> None:
    """`final/` holds the trained weights and the tokenizer: transformers reads both, with herd's logits."""
    transformers = pytest.importorskip("transformers")
    final = Path(finished.final_dir)
    text = "[INST] add 3 and 4 [/INST] the sum is"
    ids = llama2_tokenizer.encode(text, bos=True)
    assert transformers.AutoTokenizer.from_pretrained(final)(text)["input_ids"] == ids
    assert load_tokenizer(final).encode(text, bos=True) == ids
    tokens = torch.tensor([ids])
    hf = transformers.AutoModelForCausalLM.from_pretrained(final, torch_dtype=torch.float32).eval()
    with torch.no_grad():
        ours = load_model(final)(tokens)
        theirs = hf(tokens).logits
        initial = load_model(workspace / "init")(tokens)
    torch.testing.assert_close(theirs, ours, atol=1e-4, rtol=1e-4)
    assert (ours - initial).abs().max() > 1.0  # the fine-tuned weights, not the init's


def _first_step(config: SFTConfig) -> tuple[Trainer, float, list[Batch]]:
    """Build a trainer, run one step's forward and backward passes; the micro-batches it drew."""
    trainer = Trainer(config, objective=SFTObjective)
    drawn: list[Batch] = []
    original = trainer.objective.micro_batches

    def recorded() -> list[Batch]:
        drawn.extend(original())
        return drawn

    trainer.objective.micro_batches = recorded  # type: ignore[method-assign]
    loss, _, _ = trainer.train_step()
    return trainer, loss, drawn


def test_a_step_s_loss_and_gradient_are_the_mean_over_answer_tokens(workspace: Path, tmp_path: Path) -> None:
    """Summed cross-entropy of the unmasked targets over their number, computed by hand on full logits;
    2 micro-batches of 2 sequences give the gradient of 1 micro-batch of 4."""
    runs = []
    for micro in (4, 2):
        raw = raw_config(
            workspace,
            tmp_path / f"mb{micro}",
            train={"batch_tokens": 4 * 64, "micro_batch_size": micro},
            optim={"grad_clip": 1e9},
        )
        runs.append(_first_step(run_config_from_dict(SFTConfig, raw)))
    (whole, loss, batches), (split, split_loss, split_batches) = runs
    assert len(batches) == 1 and len(split_batches) == 2
    counts = [int((b.targets != IGNORE_INDEX).sum()) for b in split_batches]
    assert counts[0] != counts[1]  # unequal micro-batches: a mean of their means would differ

    reference = load_model(workspace / "init", dtype=torch.float32).train()
    batch = batches[0]
    logits = reference(batch.inputs, document_ids=batch.document_ids)
    targets = batch.targets.flatten()
    kept = targets != IGNORE_INDEX
    per_token = F.cross_entropy(logits.flatten(0, 1)[kept], targets[kept], reduction="none")
    expected = per_token.sum() / kept.sum()
    expected.backward()
    assert loss == pytest.approx(expected.item(), rel=1e-5)
    assert split_loss == pytest.approx(expected.item(), rel=1e-5)
    assert torch.equal(torch.cat([b.targets for b in split_batches]), batch.targets)
    for trainer in (whole, split):
        got = dict(trainer.model.named_parameters())
        for name, param in reference.named_parameters():
            torch.testing.assert_close(got[name].grad, param.grad, rtol=1e-4, atol=1e-7, msg=name)
        trainer.close()


def test_only_answer_tokens_are_trained(workspace: Path, tmp_path: Path, llama2_tokenizer: Tokenizer) -> None:
    """Each conversation's trained targets are its answers and their end-of-turn token, nothing of the prompts."""
    conversations = [
        {
            "system": "be brief",
            "messages": [
                {"role": "user", "content": "add 2 and 2"},
                {"role": "assistant", "content": "four"},
                {"role": "user", "content": "and twice that"},
                {"role": "assistant", "content": "eight"},
            ],
        },
        {
            "messages": [
                {"role": "user", "content": "name a colour"},
                {"role": "assistant", "content": "blue"},
            ]
        },
    ]
    path = write_rows(tmp_path / "chat.jsonl", conversations)
    raw = raw_config(workspace, tmp_path / "run", data={"train": str(path), "val": "", "seq_len": 128})
    objective = SFTObjective(run_config_from_dict(SFTConfig, raw), cpu_placement())
    assert objective.train_split.conversations == 2
    eos = llama2_tokenizer.eos_id
    answers, trained = [], 0
    for packed in objective.train_split.sequences:
        for doc in packed.document_ids.unique().tolist():
            ids = packed.targets[(packed.document_ids == doc) & (packed.targets != IGNORE_INDEX)].tolist()
            if ids:  # padding is a document of its own, with no targets
                answers.append([llama2_tokenizer.decode(piece).strip() for piece in _split_at(ids, eos)])
            trained += len(ids)
    assert sorted(answers) == [["blue"], ["four", "eight"]]
    assert trained == sum(objective.count(stack([s])) for s in objective.train_split.sequences)


def _split_at(ids: list[int], end: int) -> list[list[int]]:
    """``ids`` cut after each ``end`` token (which closes every answer), without it."""
    assert ids and ids[-1] == end, ids
    pieces, current = [], []
    for token in ids:
        if token == end:
            pieces.append(current)
            current = []
        else:
            current.append(token)
    return pieces


def test_each_epoch_visits_every_packed_sequence_once_in_a_new_order(workspace: Path, tmp_path: Path) -> None:
    raw = raw_config(
        workspace, tmp_path / "run", train={"steps": 0, "batch_tokens": 64, "micro_batch_size": 1}
    )
    objective = SFTObjective(run_config_from_dict(SFTConfig, raw), cpu_placement())
    packed = sorted(tuple(s.inputs.tolist()) for s in objective.train_split.sequences)
    assert objective.steps == 2 * len(packed)  # data.epochs 2, one sequence per step
    first = [tuple(objective.micro_batches()[0].inputs[0].tolist()) for _ in packed]
    second = [tuple(objective.micro_batches()[0].inputs[0].tolist()) for _ in packed]
    assert sorted(first) == sorted(second) == packed
    assert first != second
    assert objective.state_dict() == {"taken": 2 * len(packed)}


def test_a_crashed_run_resumes_exactly(
    workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two epochs; crashed two steps into the second (after a checkpoint of the first), resumed: the same
    losses, in the same order of the data, as an uninterrupted run."""
    rng = random.Random(1)
    small = write_rows(tmp_path / "small.jsonl", [addition(rng) for _ in range(40)])
    sections = {
        "data": {"train": str(small)},
        "train": {"steps": 0, "batch_tokens": 4 * 64},
        "checkpoint": {"every": 3, "export_hf": False},
    }
    full = sft(make_config(workspace, tmp_path / "full", **sections))
    assert full.steps >= 8 and full.epochs >= 2
    config = make_config(workspace, tmp_path / "run", **sections)
    crash_once_at(monkeypatch, full.steps // 2 + 2)
    with pytest.raises(RuntimeError, match="simulated"):
        sft(config)
    resumed = sft(config, resume=True)
    assert losses(tmp_path / "run") == losses(tmp_path / "full")
    assert resumed.final_loss == full.final_loss and resumed.eval_loss == full.eval_loss


def test_a_file_without_usable_rows_is_one_error_and_writes_nothing(workspace: Path, tmp_path: Path) -> None:
    bad = write_rows(tmp_path / "bad.jsonl", BAD_ROWS)
    config = make_config(workspace, tmp_path / "run", data={"train": str(bad)})
    with pytest.raises(InputError) as info:
        sft(config)
    assert str(info.value) == (
        f"{bad}: no usable rows: 3 skipped (1 'messages' missing, 1 invalid JSON, "
        "1 last message not from the assistant)"
    )
    assert not (tmp_path / "run").exists()


def test_a_tokenizer_too_big_for_the_model_is_refused(
    workspace: Path, tmp_path: Path, llama3_tokenizer_dir: Path
) -> None:
    config = make_config(workspace, tmp_path / "run", tokenizer=str(llama3_tokenizer_dir))
    with pytest.raises(TokenizerError, match=r"has 128257 ids but the model's vocabulary has only 500 rows"):
        sft(config)
    assert not (tmp_path / "run").exists()


def test_config_checks(workspace: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown config key\(s\): data.trian"):
        run_config_from_dict(SFTConfig, raw_config(workspace, tmp_path, data={"trian": "x"}))
    with pytest.raises(ConfigError, match="init must name the checkpoint"):
        run_config_from_dict(SFTConfig, raw_config(workspace, tmp_path, init=""))
    config = make_config(workspace, tmp_path / "run", data={"seq_len": 256})
    with pytest.raises(ConfigError, match=r"data.seq_len 256 exceeds the context length 128 of"):
        sft(config)
    defaults = run_config_from_dict(SFTConfig, {"init": "x", "data": {"train": "y"}, "train": {"seed": 1}})
    assert (defaults.optim.lr, defaults.optim.weight_decay, defaults.train.batch_tokens) == (
        2e-5,
        0.1,
        64 * 4096,
    )
    assert (defaults.train.steps, defaults.data.epochs, defaults.data.seq_len) == (0, 2, 4096)


def test_eval_loss_is_the_mean_over_the_answer_tokens_of_log_val_batches(
    workspace: Path, tmp_path: Path
) -> None:
    """``log.val_batches`` micro-batches of the packed val file, by hand; 0 turns validation off."""
    raw = raw_config(workspace, tmp_path / "run", train={"micro_batch_size": 2}, log={"val_batches": 1})
    objective = SFTObjective(run_config_from_dict(SFTConfig, raw), cpu_placement())
    model = load_model(workspace / "init", dtype=torch.float32)
    with torch.no_grad():
        got = objective.validate(model)
        first = stack(objective.val_split.sequences[:2])
        logits = model(first.inputs, document_ids=first.document_ids)
    expected = F.cross_entropy(logits.flatten(0, 1), first.targets.flatten(), ignore_index=IGNORE_INDEX)
    assert got == {"eval_loss": pytest.approx(expected.item(), rel=1e-5)}
    raw["log"]["val_batches"] = 0
    assert SFTObjective(run_config_from_dict(SFTConfig, raw), cpu_placement()).validate(model) == {}


# ---- the command ---------------------------------------------------------------------------------

DEMO = Path(__file__).resolve().parents[2] / "configs" / "posttrain" / "sft-demo.toml"


def herd_sft(root: Path, out: Path, *flags: str, train: Path | None = None) -> list[str]:
    """``herd sft`` on the shipped demo config, pointed at the workspace's model and data (2 steps)."""
    sets = {
        "init": root / "init",
        "data.train": train or root / "train.jsonl",
        "data.val": root / "val.jsonl",
        "data.seq_len": 64,
        "train.steps": 2,
        "log.tensorboard": "false",
    }
    return ["sft", str(DEMO), "-o", str(out), *(f"--set={k}={v}" for k, v in sets.items()), *flags]


def test_the_command_prints_the_summary_with_the_skipped_rows(
    workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(herd_sft(workspace, out, "--quiet")) == 0
    rows = dict(line.split("  ", 1) for line in capsys.readouterr().out.splitlines())
    rows = {key.strip(): value.strip() for key, value in rows.items()}
    assert rows["steps"] == "2 (1,024 tokens)"
    assert rows["skipped rows (train)"] == (
        "3 skipped (1 'messages' missing, 1 invalid JSON, 1 last message not from the assistant)"
    )
    assert rows["skipped rows (val)"] == "none"
    assert rows["eval loss"].endswith(" nats/answer token") and rows["conversations"].startswith(
        "200 train, 24 val"
    )
    assert (
        rows["weights (Hugging Face layout)"]
        == f"{out / 'final'}, with the tokenizer from {workspace / 'init'}"
    )
    assert main(herd_sft(workspace, out, "--quiet", "--json", "--overwrite")) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((out / "summary.json").read_text())
    assert printed["skipped_rows"]["train"]["invalid JSON"] == 1


def test_the_command_resumes_with_the_saved_config(
    workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--resume`` continues the run as it was saved; a longer run is one reported change."""
    out = tmp_path / "run"
    assert main(herd_sft(workspace, out, "--quiet")) == 0
    capsys.readouterr()
    assert main(herd_sft(workspace, out, "--quiet", "--resume", "--set=train.steps=3")) == 0
    assert capsys.readouterr().err.splitlines() == [
        "resume: train.steps 2 → 3 (the LR schedule is re-planned over 3 steps)"
    ]
    assert sorted(losses(out)) == [1, 2, 3]


@pytest.mark.parametrize("problem", ["no usable rows", "tokenizer too big", "unknown key"])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    workspace: Path,
    tmp_path: Path,
    llama3_tokenizer_dir: Path,
    capsys: pytest.CaptureFixture[str],
    problem: str,
) -> None:
    out = tmp_path / "run"
    bad = write_rows(tmp_path / "bad.jsonl", BAD_ROWS)
    argv = {
        "no usable rows": herd_sft(workspace, out, train=bad),
        "tokenizer too big": herd_sft(workspace, out, f"--set=tokenizer={llama3_tokenizer_dir}"),
        "unknown key": herd_sft(workspace, out, "--set=data.trian=x.jsonl"),
    }[problem]
    expected = {
        "no usable rows": f"{bad}: no usable rows: 3 skipped (1 'messages' missing, 1 invalid JSON, "
        "1 last message not from the assistant)",
        "tokenizer too big": "has 128257 ids but the model's vocabulary has only 500 rows",
        "unknown key": "unknown config key(s): data.trian",
    }[problem]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("herd: error: ") and expected in err
    assert not out.exists()


def test_the_shipped_recipes_carry_the_papers_values() -> None:
    """docs/spec.md §5.1 (Llama 2 §3.1) and §5.6 (Llama 3 §4.1.3)."""
    configs = DEMO.parent
    llama2 = load_run_config(SFTConfig, configs / "llama2-sft.toml")
    assert (llama2.optim.lr, llama2.optim.weight_decay, llama2.data.epochs) == (2e-5, 0.1, 2)
    assert llama2.train.batch_tokens == 64 * llama2.data.seq_len and llama2.data.seq_len == 4096
    assert llama2.train.steps == 0 and llama2.chat_format == "llama2"
    llama3 = load_run_config(SFTConfig, configs / "llama3-sft.toml")
    assert (llama3.optim.lr, llama3.chat_format) == (1e-5, "llama3")
    demo = load_run_config(SFTConfig, DEMO)
    assert demo.init == "smollm2-135m-instruct" and demo.optim.lr == 2e-5
