"""``--model herd`` in lm-evaluation-harness: the harness's own runs of local tasks give the same scores,
log-likelihoods and greedy generations with herd as with its HF model on the same checkpoint, and the same
log-likelihoods as herd's own multiple-choice scorer; lm-eval's command line runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from lm_eval import simple_evaluate
from lm_eval.api.instance import Instance
from lm_eval.api.registry import get_model
from lm_eval.tasks import TaskManager
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

import herd.eval.lm_eval_adapter as adapter
from herd.errors import ConfigError
from herd.eval.example import Choice
from herd.eval.lm_eval_adapter import HerdLM
from herd.eval.multiple_choice import evaluate
from herd.infer.completion import Completion

QUESTIONS = [
    ("Which animal carries loads in the Andes?", ["llama", "penguin", "whale", "camel"], 0),
    ("What do llamas eat?", ["grass", "fish", "rocks", "plastic"], 0),
    ("Where is the high pasture?", ["on the mountain", "under the sea", "in the city", "on the moon"], 0),
    ("What is the wool of an alpaca used for?", ["clothes", "fuel", "roads", "glass"], 0),
    ("Which is a herd animal?", ["a tiger", "a sheep", "an owl", "a shark"], 1),
    ("What does a herder do?", ["sings opera", "flies planes", "tends animals", "writes code"], 2),
    ("How many legs has a llama?", ["two", "six", "eight", "four"], 3),
    ("What colour is fresh snow?", ["black", "white", "green", "red"], 1),
]
PROMPTS = ["The llama walked up the", "Once upon a time,", "Salt, wool and maize", "2 + 2 ="]
DOCUMENTS = [
    "The herders of the valley drove their llamas up the old stone path every spring.",
    " ".join(["Every animal carried a small load of salt, wool and dried maize up the winding path."] * 6),
    " ".join(["At night the youngest herder counted the llamas twice and sang to them softly."] * 16),
]
MC_TASK = """task: herd_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: choices
doc_to_target: gold
metric_list:
  - metric: acc
  - metric: acc_norm
"""
GEN_TASK = """task: herd_gen
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "{{{{prompt}}}}"
doc_to_target: "{{{{prompt}}}}"
generation_kwargs:
  until: ["."]
  max_gen_toks: 12
  do_sample: false
metric_list:
  - metric: exact_match
"""
ROLLING_TASK = """task: herd_rolling
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: loglikelihood_rolling
doc_to_text: ""
doc_to_target: "{{{{text}}}}"
metric_list:
  - metric: word_perplexity
  - metric: byte_perplexity
  - metric: bits_per_byte
"""
TASKS = ["herd_mc", "herd_gen", "herd_rolling"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, llama3_tokenizer_dir: Path) -> Path:
    """A tiny random Llama saved by transformers, a 128-token context, with Meta's Llama-3 tokenizer."""
    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = AutoTokenizer.from_pretrained(llama3_tokenizer_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        rope_theta=500000.0,
        initializer_range=0.1,  # peaked distributions: some continuations are greedy, generations not ties
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tasks_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three local lm-eval tasks (multiple choice, generation, rolling log-likelihood) over JSONL files."""
    folder = tmp_path_factory.mktemp("tasks")
    rows = {
        "mc": [{"question": q, "choices": c, "gold": g} for q, c, g in QUESTIONS],
        "gen": [{"prompt": p} for p in PROMPTS],
        "rolling": [{"text": d} for d in DOCUMENTS],
    }
    for name, table in rows.items():
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in table), "utf-8")
    for name, template in (("mc", MC_TASK), ("gen", GEN_TASK), ("rolling", ROLLING_TASK)):
        (folder / f"herd_{name}.yaml").write_text(template.format(data=folder / f"{name}.jsonl"), "utf-8")
    return folder


def run(model: str, model_args: str, tasks: TaskManager, **kwargs: Any) -> dict[str, Any]:
    return simple_evaluate(
        model=model,
        model_args=model_args,
        tasks=TASKS,
        task_manager=tasks,
        log_samples=True,
        bootstrap_iters=0,
        **kwargs,
    )


@pytest.fixture(scope="module")
def results(checkpoint: Path, tasks_dir: Path) -> dict[str, dict[str, Any]]:
    """The harness's results of the three tasks with ``--model herd`` and ``--model hf``."""
    tasks = TaskManager(include_path=str(tasks_dir), include_defaults=False)  # not its 26,000 own task files
    return {
        # model_args' batch size wins over the CLI's (1 here); lm-eval's default device cuda:0 falls back to CPU.
        "herd": run("herd", f"path={checkpoint},batch_size=3", tasks, batch_size=1, device="cuda:0"),
        # Batch 1: lm-eval's HF model moves a 3-window document's sum by 1e-5 relative between batch 1 and 3
        # (its right padding); herd's scorer, whatever its batch, matches the batch-1 figures.
        "hf": run("hf", f"pretrained={checkpoint},dtype=float32", tasks, batch_size=1, device="cpu"),
    }


@pytest.fixture(scope="module")
def lm(checkpoint: Path) -> HerdLM:
    """The adapter as lm-eval's CLI builds it: ``--model_args`` plus the CLI's ``--batch_size``/``--device``."""
    return HerdLM.create_from_arg_string(f"path={checkpoint}", {"batch_size": 5, "device": None})


def responses(result: dict[str, Any], task: str) -> list[list[Any]]:
    """Each document's raw responses (one per request), in document order."""
    samples = sorted(result["samples"][task], key=lambda s: s["doc_id"])
    return [[response[0] for response in sample["resps"]] for sample in samples]


def test_multiple_choice_scores_and_loglikelihoods_equal_the_hf_model_and_herds_own(
    results: dict[str, dict[str, Any]], lm: HerdLM
) -> None:
    herd, hf = results["herd"], results["hf"]
    for metric in ("acc,none", "acc_norm,none"):
        assert herd["results"]["herd_mc"][metric] == hf["results"]["herd_mc"][metric]
    ours, theirs = responses(herd, "herd_mc"), responses(hf, "herd_mc")
    assert len(ours) == len(QUESTIONS)
    for question_ours, question_theirs in zip(ours, theirs, strict=True):
        for (logprob, is_greedy), (expected, expected_greedy) in zip(
            question_ours, question_theirs, strict=True
        ):
            assert logprob == pytest.approx(expected, abs=1e-4)
            assert is_greedy == expected_greedy
    # herd's own scorer on the same questions, built directly: the same log-likelihoods.
    assert get_model("herd") is HerdLM  # registered by importing the adapter
    choices = [
        Choice(id=str(i), context=f"Question: {q}\nAnswer:", continuations=tuple(" " + c for c in cs), gold=g)
        for i, (q, cs, g) in enumerate(QUESTIONS)
    ]
    questions, _ = evaluate(lm.engine, lm.tokenizer, choices)
    for question, question_ours in zip(questions, ours, strict=True):
        assert question.logprobs == pytest.approx([logprob for logprob, _ in question_ours], abs=1e-5)
    assert herd["results"]["herd_mc"]["acc,none"] == sum(q.acc for q in questions) / len(questions)
    assert herd["config"]["model"] == "herd"


def test_greedy_generations_equal_the_hf_model(results: dict[str, dict[str, Any]]) -> None:
    ours, theirs = responses(results["herd"], "herd_gen"), responses(results["hf"], "herd_gen")
    assert ours == theirs
    assert sum(bool(text) for (text,) in ours) >= 3  # a random model's words, cut before any "."
    assert not any("." in text for (text,) in ours)


def test_rolling_loglikelihoods_equal_the_hf_model(results: dict[str, dict[str, Any]], lm: HerdLM) -> None:
    ours, theirs = responses(results["herd"], "herd_rolling"), responses(results["hf"], "herd_rolling")
    for (logprob,), (expected,) in zip(ours, theirs, strict=True):
        assert logprob == pytest.approx(expected, rel=1e-5)
    assert (
        len(lm.tokenizer.encode(DOCUMENTS[-1], bos=True)) > 2 * 128
    )  # the last document spans three windows
    for metric in ("bits_per_byte,none", "byte_perplexity,none", "word_perplexity,none"):
        assert results["herd"]["results"]["herd_rolling"][metric] == pytest.approx(
            results["hf"]["results"]["herd_rolling"][metric], rel=1e-5
        )


def test_model_args_and_generation_kwargs(
    lm: HerdLM, checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (lm.batch_size, lm.engine.device.type) == (
        5,
        "cpu",
    )  # the CLI's batch size when model_args has none
    with pytest.raises(ConfigError, match="batch_size"):
        HerdLM(path=str(checkpoint), batch_size="auto")
    seen: list[dict[str, Any]] = []

    def fake_generate(engine: Any, tokenizer: Any, prompts: list[str], **settings: Any) -> list[Completion]:
        seen.append({"prompts": list(prompts), **settings})
        return [Completion(text=f"<{p}>", token_ids=[], finish_reason="stop") for p in prompts]

    monkeypatch.setattr(adapter, "generate", fake_generate)
    greedy = {"until": ["\n", ""], "max_gen_toks": 7, "do_sample": False, "temperature": 0.9}
    sampled = {"until": "Q:", "do_sample": True, "temperature": 0.7, "top_p": 0.9}
    requests = [
        Instance("generate_until", {}, (prompt, kwargs), i)
        for i, (prompt, kwargs) in enumerate([("a", greedy), ("b", sampled), ("c", greedy)])
    ]
    assert lm.generate_until(requests) == ["<a>", "<b>", "<c>"]
    assert seen == [
        {
            "prompts": ["a", "c"],
            "max_new_tokens": 7,
            "temperature": 0.0,
            "seed": None,
            "stop": ["\n"],
            "truncate": "left",
        },
        {
            "prompts": ["b"],
            "max_new_tokens": 256,
            "temperature": 0.7,
            "seed": 1234,
            "stop": ["Q:"],
            "top_p": 0.9,
            "truncate": "left",
        },
    ]
    with pytest.raises(ConfigError, match="num_beams"):
        lm.generate_until([Instance("generate_until", {}, ("a", {"num_beams": 4}), 0)])


@pytest.mark.slow  # lm-eval's command line reads its 26,000 task files before it starts
def test_lm_evals_command_line_runs_herd(
    results: dict[str, dict[str, Any]], checkpoint: Path, tasks_dir: Path, tmp_path: Path
) -> None:
    """lm-eval 0.4.13 reads no plugin entry points: herd's launcher registers herd, then runs lm-eval's CLI."""
    command = [sys.executable, "-m", "herd.eval.lm_eval_adapter", "--model", "herd"]
    command += ["--model_args", f"path={checkpoint},batch_size=4", "--tasks", "herd_mc"]
    command += ["--include_path", str(tasks_dir), "--limit", "4", "--output_path", str(tmp_path)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "herd_mc" in done.stdout
    (saved,) = tmp_path.rglob("results_*.json")
    scores = json.loads(saved.read_text("utf-8"))["results"]["herd_mc"]
    first = [s for s in results["herd"]["samples"]["herd_mc"] if s["doc_id"] < 4]
    assert scores["acc,none"] == sum(s["acc"] for s in first) / 4  # the in-process run's first four questions
    assert scores["acc_norm,none"] == sum(s["acc_norm"] for s in first) / 4
