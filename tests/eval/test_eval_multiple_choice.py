"""acc, acc_norm, the gold answer's NLL per character and the Llama 3 CI, on hand-made questions."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from herd.errors import HerdError
from herd.eval.example import Choice
from herd.eval.loglikelihood import Scored, score_requests, score_texts
from herd.eval.multiple_choice import (
    QuestionScore,
    aggregate,
    answer_length,
    evaluate,
    score_question,
)
from herd.eval.result import confidence_interval
from herd.infer.byte_tokenizer import ByteTokenizer
from herd.model.build import build_model
from herd.model.presets import get_preset
from herd.tokenizer import load_tokenizer


def scores(*logprobs: float) -> list[Scored]:
    return [Scored(logprob=lp, is_greedy=False, tokens=1) for lp in logprobs]


def test_acc_takes_the_likeliest_answer_and_acc_norm_the_likeliest_per_character() -> None:
    # " cat" (3 characters) -3.0: -1.0 per character; " elephant" (8) -4.0: -0.5 per character.
    question = Choice(id="q", context="Big animal:", continuations=(" cat", " elephant"), gold=1)
    record = score_question(question, scores(-3.0, -4.0))
    assert (record.pred, record.pred_norm) == (0, 1)
    assert not record.acc and record.acc_norm
    assert record.logprobs == (-3.0, -4.0)
    assert record.gold_nll_per_char == pytest.approx(0.5)  # 4.0 / len("elephant")


def test_ties_go_to_the_first_answer_like_numpy_argmax() -> None:
    question = Choice(id="q", context="c", continuations=(" ab", " cd", " ef"), gold=1)
    record = score_question(question, scores(-2.0, -1.0, -1.0))
    assert record.pred == record.pred_norm == 1
    assert record.acc and record.acc_norm


def test_the_length_excludes_the_target_delimiter_only() -> None:
    assert answer_length(" Paris") == 5
    assert answer_length("  two spaces") == 11
    assert answer_length("Paris", target_delimiter="") == 5
    # " a" (1 character) -1.1 vs " bb" (2 characters) -2.0: -1.1 < -1.0 per character, so " bb".
    # Counting the delimiter would give -0.55 vs -0.67 and pick " a".
    record = score_question(
        Choice(id="q", context="c", continuations=(" a", " bb"), gold=1), scores(-1.1, -2.0)
    )
    assert record.pred_norm == 1


def test_a_mismatch_of_scores_and_answers_is_an_error() -> None:
    question = Choice(id="q", context="c", continuations=(" a", " b"), gold=0)
    with pytest.raises(HerdError, match="1 scores for 2 answers"):
        score_question(question, scores(-1.0))
    with pytest.raises(HerdError, match="empty after its target delimiter"):
        score_question(Choice(id="q", context="c", continuations=(" ", " b"), gold=0), scores(-1.0, -1.0))


def test_confidence_interval_is_the_llama3_formula() -> None:
    assert confidence_interval(0.5, 100) == pytest.approx(1.96 * 0.05)  # sqrt(0.25 / 100) = 0.05
    assert confidence_interval(0.9, 400) == pytest.approx(1.96 * math.sqrt(0.09 / 400))  # 0.0294
    assert confidence_interval(1.0, 10) == 0.0
    with pytest.raises(HerdError):
        confidence_interval(0.5, 0)
    with pytest.raises(HerdError):
        confidence_interval(1.5, 10)


def test_aggregate_means_and_intervals() -> None:
    def record(pred: int, pred_norm: int) -> QuestionScore:
        return QuestionScore("q", 0, (0.0, 0.0), (False, False), pred, pred_norm, 1.0)

    task = aggregate([record(0, 0), record(0, 1), record(1, 1), record(0, 0)], "t")
    assert (task.task, task.kind, task.n) == ("t", "multiple_choice", 4)
    assert (task.metric("acc").value, task.metric("acc_norm").value) == (0.75, 0.5)
    assert task.primary.name == "acc"
    assert task.metric("acc").ci == pytest.approx(1.96 * math.sqrt(0.75 * 0.25 / 4))
    assert task.metric("acc_norm").ci == pytest.approx(1.96 * math.sqrt(0.25 / 4))
    assert [e["acc"] for e in task.examples] == [True, True, False, True]
    assert task.examples[1]["pred_norm"] == 1 and task.examples[1]["acc_norm"] is False
    with pytest.raises(HerdError, match="no questions"):
        aggregate([], "t")


def test_evaluate_scores_every_question_from_its_answers_logprobs() -> None:
    tokenizer = ByteTokenizer()
    model = build_model(get_preset("llama2-tiny").replace(vocab_size=tokenizer.vocab_size), seed=0)
    model.init_weights(std=0.1, seed=0)
    questions = [
        Choice(id="a", context="Q: sky?\nA:", continuations=(" blue", " green", " red"), gold=0),
        Choice(id="b", context="Q: two plus two?\nA: ", continuations=("four", "five"), gold=1),
        Choice(id="c", context="Q: sky?\nA:", continuations=(" x", " yy", " zzz"), gold=2),
    ]
    records, task = evaluate(model.eval(), tokenizer, questions, batch_size=4, add_bos=True)
    pairs = [(q.context, c) for q in questions for c in q.continuations]
    flat = score_texts(model, tokenizer, pairs, batch_size=4, add_bos=True)
    assert [r.id for r in records] == ["a", "b", "c"]
    assert records[0] == score_question(questions[0], flat[:3])
    assert records[1] == score_question(questions[1], flat[3:5])
    assert records[2] == score_question(questions[2], flat[5:])
    assert task == aggregate(records)
    assert task.examples[0]["gold_nll_per_char"] == records[0].gold_nll_per_char


def test_chat_scores_the_answer_as_the_start_of_the_assistants_reply(llama3_tokenizer_dir: Path) -> None:
    """--chat: the context is one user turn in Llama 3's format, each answer (no leading space) the reply."""
    tokenizer = load_tokenizer(llama3_tokenizer_dir)
    model = build_model(get_preset("llama3-tiny").replace(vocab_size=tokenizer.vocab_size), seed=0).eval()
    questions = [Choice(id="a", context="Q: sky?\nA:", continuations=(" A", " B"), gold=1)]
    records, _ = evaluate(model, tokenizer, questions, chat=True)
    header = "<|start_header_id|>{}<|end_header_id|>\n\n"
    prompt = tokenizer.encode(
        "<|begin_of_text|>" + header.format("user") + "Q: sky?\nA:<|eot_id|>" + header.format("assistant"),
        allow_special=True,
    )
    expected = score_requests(model, [(prompt, tokenizer.encode("A")), (prompt, tokenizer.encode("B"))])
    assert records[0].logprobs == tuple(s.logprob for s in expected)
    plain, _ = evaluate(model, tokenizer, questions)
    assert plain[0].logprobs != records[0].logprobs
