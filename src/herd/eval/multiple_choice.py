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

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from herd.errors import HerdError
from herd.eval.example import Choice
from herd.eval.loglikelihood import BATCH_SIZE, Scored, score_requests, score_texts
from herd.eval.result import Metric, TaskResult
from herd.eval.tasks import TaskSpec, build_examples
from herd.infer.engine import Engine
from herd.model.transformer import Transformer
from herd.tokenizer import Tokenizer
from herd.tokenizer.chat import chat_format

KIND = "multiple_choice"

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


def aggregate(questions: Sequence[QuestionScore], task: str = "") -> TaskResult:
    """The task's ``acc`` and ``acc_norm`` (means over ``questions``, with their 95% CIs) and the records."""
    if not questions:
        raise HerdError(f"task {task!r}: no questions to aggregate")
    return TaskResult(
        task=task,
        kind=KIND,
        n=len(questions),
        metrics=(
            Metric.proportion("acc", [q.acc for q in questions]),
            Metric.proportion("acc_norm", [q.acc_norm for q in questions]),
        ),
        examples=[{**asdict(q), "acc": q.acc, "acc_norm": q.acc_norm} for q in questions],
    )


def evaluate(
    model: Transformer | Engine,
    tokenizer: Tokenizer,
    choices: Sequence[Choice],
    *,
    batch_size: int = BATCH_SIZE,
    add_bos: bool | None = None,
    target_delimiter: str = TARGET_DELIMITER,
    chat: bool = False,
    task: str = "",
) -> tuple[list[QuestionScore], TaskResult]:
    """Score every question of a task: the per-question records (in order) and the task's result.

    ``chat`` (instruct models): each context is one user turn in the model's
    chat format, followed by the opening of the assistant's turn, and each
    answer is scored as the start of the assistant's reply, without the target
    delimiter (the chat-template variant of the Llama 3 instruct evaluations).
    """
    if chat:
        scored = score_requests(
            model, _chat_requests(tokenizer, choices, target_delimiter), batch_size=batch_size
        )
    else:
        pairs = [(c.context_of(i), cont) for c in choices for i, cont in enumerate(c.continuations)]
        scored = score_texts(model, tokenizer, pairs, batch_size=batch_size, add_bos=add_bos)
    questions = []
    start = 0
    for choice in choices:
        end = start + len(choice.continuations)
        questions.append(score_question(choice, scored[start:end], target_delimiter))
        start = end
    return questions, aggregate(questions, task)


def _chat_requests(
    tokenizer: Tokenizer, choices: Sequence[Choice], target_delimiter: str
) -> list[tuple[list[int], list[int]]]:
    """(chat prompt ids, answer ids) for every answer: the context as one user turn, the answer as the reply."""
    fmt = chat_format(tokenizer)
    requests = []
    for choice in choices:
        for i, continuation in enumerate(choice.continuations):
            prompt = fmt.render_prompt([{"role": "user", "content": choice.context_of(i)}])
            requests.append((prompt, tokenizer.encode(continuation.removeprefix(target_delimiter))))
    return requests


def evaluate_multiple_choice(
    spec: TaskSpec,
    engine: Engine,
    tokenizer: Tokenizer,
    *,
    limit: int = 0,
    batch_size: int = BATCH_SIZE,
    chat: bool = False,
    data_dir: Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> TaskResult:
    """Run a multiple-choice task spec: its questions rendered (:mod:`herd.eval.tasks`), scored, aggregated.

    Questions are scored in chunks of a few batches so that ``progress`` (the
    number of questions just scored) can drive a progress bar; the chunks do
    not change a score (the scorer is independent of batching). ``data_dir`` is
    not used: every multiple-choice dataset herd names ships offline.
    """
    del data_dir
    choices = build_examples(spec, limit)
    if not choices:
        raise HerdError(f"task {spec.name!r}: no questions")
    records: list[QuestionScore] = []
    chunk = max(1, 4 * batch_size)
    for start in range(0, len(choices), chunk):
        part = choices[start : start + chunk]
        scored, _ = evaluate(
            engine,
            tokenizer,
            part,
            batch_size=batch_size,
            target_delimiter=spec.target_delimiter,
            chat=chat,
            task=spec.name,
        )
        records.extend(scored)
        if progress is not None:
            progress(len(part))
    return aggregate(records, spec.name)
