"""Generation tasks (GSM8K, TriviaQA, NaturalQuestions): greedy answers, extracted and scored as lm-eval does.

The Llama papers score these benchmarks on generated text: NaturalQuestions
and TriviaQA by exact match, 0/1/5/64-shot (Llama 1 §3.2, Tables 4 and 5) and
5-shot (Llama 2 §2.3), GSM8K 8-shot (Llama 2 §2.3, Llama 3 §5.1.1). A spec (``configs/eval/{gsm8k,triviaqa,nq_open}.toml``,
``kind = "generate"``) renders each row as lm-evaluation-harness 0.4 renders it
for ``generate_until``: the ``description``, then ``num_fewshot`` solved rows
(``shot``, or the prompt, the target delimiter " " and the gold answer, the
first alias of a list), each followed by the few-shot delimiter, then the
question's prompt (``text``). The model answers greedily (temperature 0)
through :func:`herd.infer.completion.generate`, or :func:`herd.infer.chat_session.chat`
with the whole prompt as one user turn; the answer ends at the first of the
``until`` strings, cut as the harness cuts it.

Answers are extracted as the harness's task files say:

* ``extraction = "gsm8k"`` (lm-eval's ``gsm8k.yaml``): ``strict_match`` takes
  the first ``#### <number>`` of the answer, ``flexible_extract`` the last
  number anywhere in it (lm-eval's regex filter, ``group_select: -1``), and
  "[invalid]" when there is none;
* ``extraction = "exact_match"`` (TriviaQA, NQ-open): the whole answer,
  stripped of surrounding whitespace.

Each extracted answer is scored by lm-eval's ``exact_match``: the
``regexes_to_ignore`` removed from both sides, then lower case
(``ignore_case``) and ASCII punctuation removed (``ignore_punctuation``), then
string equality with the gold answer or any of its aliases. The metrics are
the mean hits with the Llama 3 paper's 95% CI (§5.1.1).

Data that herd cannot ship (GSM8K) is read from the user's ``--data-dir``:
when ``data_dir/data_dir_file`` exists it replaces ``path`` (and its
``fewshot_split`` file gives the shots, if present, else the other rows of the
same file), and the task is reported as ``data_dir_name``. ``package:herd/eval/data/<path>``
names a file herd ships.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from herd.errors import ConfigError, InputError
from herd.eval.batching import check_batch_size, map_longest_first
from herd.eval.datasets import resolve
from herd.eval.result import Metric, TaskResult
from herd.eval.tasks import fewshot_indices, field_value, fill_template, rows_at
from herd.infer.chat_session import chat as chat_replies
from herd.infer.completion import generate
from herd.infer.engine import Engine
from herd.tokenizer import Tokenizer

# lm-eval's gsm8k.yaml filters: "strict-match" (first match) and "flexible-extract" (last match).
STRICT_PATTERN = re.compile(r"#### (\-?[0-9\.\,]+)")
FLEXIBLE_PATTERN = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
FALLBACK = "[invalid]"
METRICS = {"gsm8k": ("strict_match", "flexible_extract"), "exact_match": ("exact_match",)}
# Prompts longer than this are kept in the records by their last characters only (few-shot prompts repeat).
RECORD_PROMPT_CHARS = 2000
_PUNCTUATION = str.maketrans("", "", string.punctuation)


@dataclass(frozen=True)
class GenerationSpec:
    """One generation task: its rows, how a row becomes a prompt, how the answer ends, is extracted and scored.

    ``target`` is the field with the gold answer: a string, or a list of
    accepted aliases (dotted into a table as TriviaQA's ``answer.aliases``).
    """

    name: str
    path: str
    text: str
    target: str
    extraction: Literal["gsm8k", "exact_match"]
    kind: Literal["generate"] = "generate"
    split: str = ""
    description: str = ""
    shot: str = ""
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    num_fewshot: int = 0
    fewshot_split: str = ""
    fewshot_sampler: Literal["random", "first_n"] = "random"
    fewshot_seed: int = 1234
    until: list[str] = field(default_factory=list)
    max_new_tokens: int = 256
    ignore_case: bool = False
    ignore_punctuation: bool = False
    regexes_to_ignore: list[str] = field(default_factory=list)
    data_dir_file: str = ""
    data_dir_name: str = ""

    def __post_init__(self) -> None:
        """Refuse specs that cannot run: bad counts, malformed templates or regexes, a name without a file."""
        if self.num_fewshot < 0:
            raise ConfigError(f"task {self.name!r}: num_fewshot must be >= 0, got {self.num_fewshot}")
        if self.max_new_tokens < 1:
            raise ConfigError(f"task {self.name!r}: max_new_tokens must be >= 1, got {self.max_new_tokens}")
        for key in ("text", "shot"):
            try:
                list(string.Formatter().parse(getattr(self, key)))
            except ValueError as exc:
                raise ConfigError(f"task {self.name!r}: {key} is not a valid template ({exc})") from None
        for pattern in self.regexes_to_ignore:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ConfigError(f"task {self.name!r}: regexes_to_ignore {pattern!r}: {exc}") from None
        if self.data_dir_name and not self.data_dir_file:
            raise ConfigError(f"task {self.name!r}: data_dir_name needs data_dir_file")


@dataclass(frozen=True)
class Question:
    """One rendered question: its id, the full prompt (shots included) and the accepted gold answers."""

    id: str
    prompt: str
    golds: tuple[str, ...]
    gold: str | list[str]  # the target field as the row has it


@dataclass(frozen=True)
class Source:
    """Where a task's questions and shots are read from, and the name the task is reported under."""

    name: str
    rows: Path
    shots: Path


def locate(path: str, split: str) -> Path:
    """The file or folder of ``split``: ``{split}`` in ``path``, else a ``split`` subfolder."""
    location = resolve(path.format(split=split))
    return location / split if split and "{split}" not in path else location


def source(spec: GenerationSpec, data_dir: Path | None = None) -> Source:
    """The data the task runs on: the user's copy under ``data_dir`` when it has one, else ``path``."""
    shots_split = spec.fewshot_split or spec.split
    if data_dir is not None and spec.data_dir_file:
        rows = data_dir / spec.data_dir_file.format(split=spec.split)
        if rows.exists():
            shots = data_dir / spec.data_dir_file.format(split=shots_split)
            return Source(spec.data_dir_name or spec.name, rows, shots if shots.exists() else rows)
    return Source(spec.name, locate(spec.path, spec.split), locate(spec.path, shots_split))


def golds_of(
    spec: GenerationSpec, row: dict[str, Any], where: str
) -> tuple[str | list[str], tuple[str, ...]]:
    """The row's target as it is, and as the tuple of accepted answers (one string, or every alias)."""
    value = field_value(row, spec.target, where)
    if isinstance(value, str):
        return value, (value,)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value, tuple(value)
    raise InputError(f"{where}: target field {spec.target!r} is not a string or a list of strings: {value!r}")


def render_shot(spec: GenerationSpec, row: dict[str, Any], where: str) -> str:
    """A solved example: ``shot`` filled in, or the prompt, the target delimiter and the (first) gold answer."""
    if spec.shot:
        return fill_template(spec.shot, row, where)
    return fill_template(spec.text, row, where) + spec.target_delimiter + golds_of(spec, row, where)[1][0]


def build_questions(
    spec: GenerationSpec, limit: int = 0, data_dir: Path | None = None
) -> tuple[str, list[Question]]:
    """The task's reported name and its first ``limit`` questions (all when 0), rendered with their shots."""
    found = source(spec, data_dir)
    rows, shots = rows_at(found.rows), rows_at(found.shots)
    count = min(limit, len(rows)) if limit > 0 else len(rows)
    questions = []
    for index in range(count):
        where = f"{found.rows} row {index}"
        own = index if found.shots == found.rows else None
        chosen = fewshot_indices(
            spec.name,
            spec.num_fewshot,
            spec.fewshot_sampler,
            spec.fewshot_seed,
            len(shots),
            own,
            index,
            found.shots,
        )
        prefix = "".join(
            render_shot(spec, shots[j], f"{found.shots} row {j}") + spec.fewshot_delimiter for j in chosen
        )
        gold, golds = golds_of(spec, rows[index], where)
        prompt = spec.description + prefix + fill_template(spec.text, rows[index], where)
        questions.append(Question(f"{found.name}/{index}", prompt, golds, gold))
    return found.name, questions


def cut_at_stops(text: str, until: Sequence[str]) -> str:
    """``text`` cut as lm-eval cuts each generation: before the first ``until[0]``, of that before ``until[1]``, ..."""
    for stop in until:
        if stop:
            text = text.split(stop, 1)[0]
    return text


def regex_answer(pattern: re.Pattern[str], text: str, select: int) -> str:
    """lm-eval's regex filter: match ``select`` of all matches (its first non-empty group), stripped; or FALLBACK."""
    matches = pattern.findall(text)
    if not matches:
        return FALLBACK
    match = matches[select]
    if isinstance(match, tuple):
        match = next((group for group in match if group), FALLBACK)
    return match.strip()


def extract(extraction: str, generation: str) -> dict[str, str]:
    """The answer each metric of ``extraction`` scores, by metric name."""
    if extraction == "gsm8k":
        return {
            "strict_match": regex_answer(STRICT_PATTERN, generation, 0),
            "flexible_extract": regex_answer(FLEXIBLE_PATTERN, generation, -1),
        }
    return {"exact_match": generation.strip()}


def normalise(spec: GenerationSpec, text: str) -> str:
    """``text`` as lm-eval's ``exact_match`` compares it: ignored regexes removed, then case, then punctuation."""
    for pattern in spec.regexes_to_ignore:
        text = re.sub(pattern, "", text)
    if spec.ignore_case:
        text = text.lower()
    if spec.ignore_punctuation:
        text = text.translate(_PUNCTUATION)
    return text


def exact_match(spec: GenerationSpec, answer: str, golds: Sequence[str]) -> bool:
    """Whether ``answer`` equals any gold answer once both are normalised (lm-eval's multiple targets: any)."""
    mine = normalise(spec, answer)
    return any(mine == normalise(spec, gold) for gold in golds)


def _answer(
    spec: GenerationSpec, engine: Engine, tokenizer: Tokenizer, prompts: list[str], chat: bool
) -> list[str]:
    """Greedy answers to ``prompts`` in one batch, as plain completions or as replies to one user turn each."""
    if chat:
        conversations = [[{"role": "user", "content": prompt}] for prompt in prompts]
        replies = chat_replies(
            engine, tokenizer, conversations, max_new_tokens=spec.max_new_tokens, temperature=0.0
        )
    else:
        completions = generate(
            engine,
            tokenizer,
            prompts,
            max_new_tokens=spec.max_new_tokens,
            temperature=0.0,
            stop=spec.until,
            truncate="left",
        )
        replies = [c.text for c in completions]
    return [cut_at_stops(reply, spec.until) for reply in replies]


def evaluate_generation(
    spec: GenerationSpec,
    engine: Engine,
    tokenizer: Tokenizer,
    *,
    limit: int = 0,
    batch_size: int = 16,
    chat: bool = False,
    data_dir: Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> TaskResult:
    """Answer every question of ``spec`` greedily and score the extracted answers (see the module docstring).

    Prompts run longest first in batches of ``batch_size`` (less padding);
    the records come back in dataset order.
    """
    check_batch_size(batch_size)
    name, questions = build_questions(spec, limit, data_dir)
    if not questions:
        raise InputError(f"task {name!r}: the dataset has no rows")
    generations = map_longest_first(
        questions,
        lambda q: len(q.prompt),
        batch_size,
        lambda batch: _answer(spec, engine, tokenizer, [q.prompt for q in batch], chat),
        progress,
    )
    names = METRICS[spec.extraction]
    records = []
    for question, generation in zip(questions, generations, strict=True):
        extracted = extract(spec.extraction, generation)
        records.append(
            {
                "id": question.id,
                "prompt": question.prompt[-RECORD_PROMPT_CHARS:],
                "prompt_chars": len(question.prompt),
                "generation": generation,
                "extracted": extracted,
                "gold": question.gold,
                "hits": {m: exact_match(spec, extracted[m], question.golds) for m in names},
            }
        )
    metrics = tuple(Metric.proportion(m, [r["hits"][m] for r in records]) for m in names)
    return TaskResult(name, spec.kind, len(records), metrics, records)
