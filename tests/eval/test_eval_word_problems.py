"""herd's own grade-school word problems (not GSM8K): the shipped files are what the generator writes, and
every worked solution is re-checked here with an evaluator of its own."""

from __future__ import annotations

import ast
import json
import re
from fractions import Fraction
from pathlib import Path

import pytest

from herd.eval import word_problems
from herd.eval.datasets import resolve

ANNOTATION = re.compile(r"<<([^=<>]+)=([^<>]+)>>")
# Numbers a solution may bring in that the question says in words: twice/half (2), weekdays (5),
# minutes per hour (60), percent (100).
WORDED = {2, 5, 60, 100}

# herd's own sets, where the shipped specs name them (package:herd/eval/data/...).
SHIPPED = resolve("package:herd/eval/data")


def evaluate(expression: str) -> Fraction:
    """``expression`` (integers, + - * / and parentheses only) evaluated exactly."""

    def value(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Expression):
            return value(node.body)
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return Fraction(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -value(node.operand)
        if isinstance(node, ast.BinOp):
            left, right = value(node.left), value(node.right)
            if isinstance(node.op, ast.Add):
                return left + right
            if isinstance(node.op, ast.Sub):
                return left - right
            if isinstance(node.op, ast.Mult):
                return left * right
            if isinstance(node.op, ast.Div):
                return left / right
        raise ValueError(f"not plain arithmetic: {ast.dump(node)}")

    return value(ast.parse(expression, mode="eval"))


def shipped(split: str) -> list[dict[str, str]]:
    return [json.loads(line) for line in (SHIPPED / "herd_word_problems" / f"{split}.jsonl").open()]


def test_the_evaluator_refuses_anything_but_arithmetic() -> None:
    assert evaluate("140*15/100") == 21
    assert evaluate("(3-10)*2") == -14
    with pytest.raises(ValueError):
        evaluate("__import__('os')")
    with pytest.raises(ValueError):
        evaluate("2**10")


def test_the_shipped_files_are_exactly_what_the_generator_writes(tmp_path: Path) -> None:
    assert word_problems.FOLDER == SHIPPED / "herd_word_problems"
    word_problems.write(tmp_path)
    for split in ("test", "train"):
        expected = (tmp_path / f"{split}.jsonl").read_bytes()
        assert (word_problems.FOLDER / f"{split}.jsonl").read_bytes() == expected
        assert word_problems.render(word_problems.generate()[split]) == expected


def test_sizes_fields_and_no_question_twice() -> None:
    test, train = shipped("test"), shipped("train")
    assert (len(test), len(train)) == (200, 16)
    assert all(set(row) == {"question", "answer"} for row in test + train)
    questions = [row["question"] for row in test + train]
    assert len(set(questions)) == len(questions)


@pytest.mark.parametrize("split", ["test", "train"])
def test_every_solution_adds_up(split: str) -> None:
    for index, row in enumerate(shipped(split)):
        where = f"{split} row {index}"
        *steps, last = row["answer"].split("\n")
        final = re.fullmatch(r"#### (-?\d+)", last)
        assert final, f"{where}: no '#### <integer>' line"
        answer = int(final.group(1))
        known = {Fraction(int(n)) for n in re.findall(r"\d+", row["question"])} | set(map(Fraction, WORDED))
        results = []
        for step in steps:
            assert len(ANNOTATION.findall(step)) == 1, f"{where}: {step!r} is not one annotated calculation"
            for expression, stated in ANNOTATION.findall(step):
                computed = evaluate(expression)
                assert computed == int(stated), f"{where}: {expression} is {computed}, not {stated}"
                # Every number used comes from the question, an earlier step, or a worded constant.
                for number in re.findall(r"\d+", expression):
                    assert Fraction(int(number)) in known, (
                        f"{where}: {number} in {expression} comes from nowhere"
                    )
                known.add(computed)
                results.append(computed)
        assert results, f"{where}: no calculation"
        assert results[-1] == answer, f"{where}: the last step gives {results[-1]}, the answer says {answer}"
        assert answer > 0, f"{where}: answer {answer}"


def test_every_template_is_used_in_the_test_split() -> None:
    # One phrase only each template's questions have; 200 problems from 12 templates in turn: 16 or 17 each.
    phrases = [
        "notebooks",
        "A train",
        "aunt",
        "stickers",
        "piano",
        "bakery",
        "jacket",
        "bike",
        "tomato",
        "recipe",
        "Tickets",
        "printer",
    ]
    assert len(phrases) == len(word_problems.TEMPLATES)
    test = shipped("test")
    counts = {phrase: sum(phrase in row["question"] for row in test) for phrase in phrases}
    assert all(16 <= count <= 17 for count in counts.values()), counts
    assert sum(counts.values()) == len(test)


def test_the_data_says_it_is_herds_own_and_not_gsm8k() -> None:
    assert "not GSM8K" in (word_problems.__doc__ or "")
    text = (Path(__file__).parents[2] / "configs" / "eval" / "gsm8k.toml").read_text("utf-8")
    assert "herd's OWN WORD PROBLEMS, NOT GSM8K" in text
    assert 'name = "herd_word_problems"' in text
