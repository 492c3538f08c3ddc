"""Multiple choice by log-likelihood: lm-evaluation-harness's ``acc`` and ``acc_norm``, with the Llama 3 paper's CI.

lm-eval's ``multiple_choice`` output type scores every answer by the summed
log-likelihood of its tokens after the context (:mod:`herd.eval.loglikelihood`)
and takes

* ``acc``: whether the argmax of the log-likelihoods is the gold answer;
* ``acc_norm``: the same with each log-likelihood divided by the answer's
  length in characters, the answer *without* the target delimiter (lm-eval
  divides by ``len(choice)`` of ``doc_to_choice``, while the request scores
  ``target_delimiter + choice``).

Ties go to the first answer, as ``numpy.argmax`` does. The task score is the
mean over questions, reported with the Llama 3 paper's 95% confidence interval
(§5.1.1) ``1.96·sqrt(S(1−S)/N)``. Each question's record also keeps the gold
answer's negative log-likelihood per character (the delimiter excluded, as for
``acc_norm``): the "normalized NLL per char" of the correct answer that the
Llama 3 paper's benchmark prediction (§3.2.1, Figure 4) fits against compute
and maps to accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from herd.errors import HerdError
from herd.eval.example import Choice
from herd.eval.loglikelihood import BATCH_SIZE, Scored, score_texts
from herd.infer.engine import Engine
from herd.model.transformer import Transformer
from herd.tokenizer import Tokenizer

# lm-eval's default target delimiter: every answer is scored as " " + answer.
TARGET_DELIMITER = " "


@dataclass(frozen=True)
class QuestionScore:
    """One question's record: each answer's log-likelihood and ``is_greedy``, the two predictions, and the
    gold answer's negative log-likelihood per character."""

    id: str
    gold: int
    logprobs: tuple[float, ...]
    is_greedy: tuple[bool, ...]
    pred: int
    pred_norm: int
    gold_nll_per_char: float

    @property
    def acc(self) -> bool:
        """Whether the most likely answer is the gold one (lm-eval ``acc``)."""
        return self.pred == self.gold

    @property
    def acc_norm(self) -> bool:
        """Whether the most likely answer per character is the gold one (lm-eval ``acc_norm``)."""
        return self.pred_norm == self.gold


@dataclass(frozen=True)
class TaskScore:
    """A task's ``acc`` and ``acc_norm`` over ``n`` questions, each with its 95% CI half-width."""

    n: int
    acc: float
    acc_ci: float
    acc_norm: float
    acc_norm_ci: float


def confidence_interval(score: float, n: int) -> float:
    """Half-width of the Llama 3 paper's 95% CI of a score ``S`` in [0, 1] over ``n`` examples: 1.96·sqrt(S(1−S)/N)."""
    if n < 1:
        raise HerdError(f"a confidence interval needs at least one example, got n={n}")
    if not 0.0 <= score <= 1.0:
        raise HerdError(f"score {score} is not in [0, 1]")
    return 1.96 * math.sqrt(score * (1.0 - score) / n)


def answer_length(continuation: str, target_delimiter: str = TARGET_DELIMITER) -> int:
    """Characters of the answer that ``acc_norm`` divides by: the continuation less its target delimiter."""
    return len(continuation.removeprefix(target_delimiter))


def _argmax(values: Sequence[float]) -> int:
    return max(range(len(values)), key=values.__getitem__)  # the first of equal maxima, like numpy


def score_question(
    choice: Choice, scored: Sequence[Scored], target_delimiter: str = TARGET_DELIMITER
) -> QuestionScore:
    """The record of ``choice`` from the scores of its continuations (in order)."""
    if len(scored) != len(choice.continuations):
        raise HerdError(f"{choice.id}: {len(scored)} scores for {len(choice.continuations)} answers")
    lengths = [answer_length(c, target_delimiter) for c in choice.continuations]
    if min(lengths) == 0:
        raise HerdError(f"{choice.id}: an answer is empty after its target delimiter {target_delimiter!r}")
    logprobs = tuple(s.logprob for s in scored)
    return QuestionScore(
        id=choice.id,
        gold=choice.gold,
        logprobs=logprobs,
        is_greedy=tuple(s.is_greedy for s in scored),
        pred=_argmax(logprobs),
        pred_norm=_argmax([lp / n for lp, n in zip(logprobs, lengths, strict=True)]),
        gold_nll_per_char=-logprobs[choice.gold] / lengths[choice.gold],
    )


def aggregate(questions: Sequence[QuestionScore]) -> TaskScore:
    """Mean ``acc`` and ``acc_norm`` over ``questions`` with their 95% CIs."""
    n = len(questions)
    if n == 0:
        raise HerdError("no questions to aggregate")
    acc = sum(q.acc for q in questions) / n
    acc_norm = sum(q.acc_norm for q in questions) / n
    return TaskScore(
        n=n,
        acc=acc,
        acc_ci=confidence_interval(acc, n),
        acc_norm=acc_norm,
        acc_norm_ci=confidence_interval(acc_norm, n),
    )


def evaluate(
    model: Transformer | Engine,
    tokenizer: Tokenizer,
    choices: Sequence[Choice],
    *,
    batch_size: int = BATCH_SIZE,
    add_bos: bool | None = None,
    target_delimiter: str = TARGET_DELIMITER,
) -> tuple[list[QuestionScore], TaskScore]:
    """Score every question of a task: the per-question records (in order) and the task score."""
    pairs = [(c.context_of(i), cont) for c in choices for i, cont in enumerate(c.continuations)]
    scored = score_texts(model, tokenizer, pairs, batch_size=batch_size, add_bos=add_bos)
    questions = []
    start = 0
    for choice in choices:
        end = start + len(choice.continuations)
        questions.append(score_question(choice, scored[start:end], target_delimiter))
        start = end
    return questions, aggregate(questions)
