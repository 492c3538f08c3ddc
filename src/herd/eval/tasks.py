"""Evaluation tasks: a small TOML spec plus a dataset, rendered to :class:`~herd.eval.example.Choice` questions.

A spec (``configs/eval/*.toml``, loaded by :func:`load_task`) names the data,
maps its fields by name and says how a row becomes a prompt; :func:`build_examples`
reads the rows (:mod:`herd.eval.datasets`) and renders them the way
lm-evaluation-harness renders the same datasets, so that scores compare:

- ``style = "cloze"``: the prompt is ``text`` with ``{field}`` placeholders filled
  in, each answer is the target delimiter (" ") and the answer's text;
- ``style = "letters"``: the Llama papers' MMLU format, ``text``, then one line
  ``A. answer`` per answer, then ``Answer:``; the answers are " A", " B", ...;
- ``style = "fill_blank"``: WinoGrande, whose ``text`` holds a ``_`` blank that
  each option fills. As in the harness, each option has its own context (the
  sentence up to the blank with the option in it, :attr:`Choice.contexts`) and
  every option scores the same continuation, the rest of the sentence.

Few-shot examples are other rows of ``fewshot_split`` (never the question
itself), each rendered with its gold answer and joined by the few-shot delimiter
("\\n\\n"), after an optional ``description``. ``first_n`` takes the first rows;
``random`` draws with ``random.Random`` seeded by ``fewshot_seed`` and the row's
index, so that a question's shots do not depend on ``limit`` or on other rows.
"""

from __future__ import annotations

import random
import re
import string
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal, TypeVar

from herd.config import from_dict, load_toml
from herd.errors import ConfigError, InputError
from herd.eval.datasets import read_rows, resolve
from herd.eval.example import Choice

LETTERS = string.ascii_uppercase
T = TypeVar("T")

_SPEC_PLACEHOLDERS = ("subject", "split")


@dataclass(frozen=True)
class TaskSpec:
    """One evaluation task: where its rows are, how a row becomes a prompt, its answers and its gold.

    Exactly one of ``choices`` (a list field, dotted into a table as in ARC's
    ``choices.text``), ``choice_fields`` (one field per answer, as PIQA's
    ``sol1``/``sol2``) or ``choice_values`` (the same answers for every row, as
    BoolQ's ``["no", "yes"]``) gives the answers. ``gold`` is the field holding
    the correct answer, read as ``gold_kind``: a 0-based ``index``, a 1-based
    ``index1``, a ``letter`` (A is the first answer), a ``label`` looked up in the
    list field ``labels`` (ARC's ``answerKey`` in ``choices.label``) or a ``bool``
    (False is the first answer).
    """

    name: str
    path: str
    text: str
    gold: str
    kind: Literal["multiple_choice"] = "multiple_choice"
    split: str = ""
    subjects: str | list[str] = ""
    description: str = ""
    style: Literal["cloze", "letters", "fill_blank"] = "cloze"
    choices: str = ""
    choice_fields: list[str] = field(default_factory=list)
    choice_values: list[str] = field(default_factory=list)
    gold_kind: Literal["index", "index1", "letter", "label", "bool"] = "index"
    labels: str = ""
    strip: list[str] = field(default_factory=list)
    preprocess: Literal["", "hellaswag"] = ""
    num_fewshot: int = 0
    fewshot_split: str = ""
    fewshot_sampler: Literal["random", "first_n"] = "random"
    fewshot_seed: int = 1234
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"

    def __post_init__(self) -> None:
        """Refuse specs that cannot render: answers given twice or not at all, a label kind without labels."""
        sources = [key for key in ("choices", "choice_fields", "choice_values") if getattr(self, key)]
        if len(sources) != 1:
            raise ConfigError(
                f"task {self.name!r}: give exactly one of choices, choice_fields, choice_values"
                f" (got {', '.join(sources) or 'none'})"
            )
        if self.gold_kind == "label" and not self.labels:
            raise ConfigError(
                f"task {self.name!r}: gold_kind = 'label' needs labels (the field of answer labels)"
            )
        if self.num_fewshot < 0:
            raise ConfigError(f"task {self.name!r}: num_fewshot must be >= 0, got {self.num_fewshot}")
        if ("{subject}" in self.path) != bool(self.subjects):
            raise ConfigError(f"task {self.name!r}: subjects and a {{subject}} in path go together")
        if isinstance(self.subjects, str) and self.subjects not in ("", "all"):
            raise ConfigError(
                f"task {self.name!r}: subjects must be 'all' or a list of names, got {self.subjects!r}"
            )
        for key in ("path", "description"):
            unknown = _placeholders(getattr(self, key)) - set(_SPEC_PLACEHOLDERS)
            if unknown:
                raise ConfigError(f"task {self.name!r}: {key} has unknown placeholder(s) {sorted(unknown)}")
        _placeholders(self.text)  # a malformed template fails here, not on the first row


def _placeholders(template: str) -> set[str]:
    """The ``{field}`` names in ``template``; a malformed template or a format spec is a ConfigError."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(f"template {template!r}: {exc}") from None
    if any(spec or conversion for _, name, spec, conversion in parsed if name is not None):
        raise ConfigError(f"template {template!r}: only plain {{field}} placeholders are supported")
    return {name for _, name, _, _ in parsed if name is not None}


def load_task(path: Path | str) -> TaskSpec:
    """The task spec in the TOML file at ``path``; any bad key or value is one ConfigError naming the file."""
    return spec_from_table(TaskSpec, load_toml(path, "task spec"), path)


def spec_from_table(cls: type[T], table: dict[str, Any], path: Path | str) -> T:
    """A task spec of class ``cls`` from the table read from ``path``: every kind's specs refuse bad keys so,
    each error one ConfigError naming the file."""
    try:
        return from_dict(cls, table)
    except ConfigError as exc:
        message = str(exc)
        raise ConfigError(message if message.startswith(str(path)) else f"{path}: {message}") from None


def subjects_of(spec: TaskSpec) -> list[str]:
    """The subjects a spec covers: its list, every folder where ``{subject}`` stands for ``"all"``, or [""]."""
    if not spec.subjects:
        return [""]
    if isinstance(spec.subjects, list):
        return spec.subjects
    parent = resolve(spec.path.split("{subject}")[0])
    found = sorted(child.name for child in parent.iterdir() if child.is_dir()) if parent.is_dir() else []
    if not found:
        raise InputError(f"{parent}: no subject folders for task {spec.name!r}")
    return found


def build_examples(spec: TaskSpec, limit: int = 0) -> list[Choice]:
    """Every question of ``spec``'s split as a :class:`Choice`, the first ``limit`` of each subject when > 0."""
    examples: list[Choice] = []
    for subject in subjects_of(spec):
        where, rows = load_rows(spec, subject, spec.split)
        shots_where, shots = load_rows(spec, subject, spec.fewshot_split or spec.split)
        description = spec.description.format(subject=subject.replace("_", " "), split=spec.split)
        count = min(limit, len(rows)) if limit > 0 else len(rows)
        for index in range(count):
            question = _render(spec, rows[index], f"{where} row {index}")
            own = index if shots_where == where else None
            chosen = fewshot_indices(
                spec.name,
                spec.num_fewshot,
                spec.fewshot_sampler,
                spec.fewshot_seed,
                len(shots),
                own,
                index,
                shots_where,
            )
            prefix = "".join(
                _render(spec, shots[j], f"{shots_where} row {j}").shot + spec.fewshot_delimiter
                for j in chosen
            )
            context = description + prefix + question.prompt
            examples.append(
                Choice(
                    id=f"{spec.name}/{subject}/{index}" if subject else f"{spec.name}/{index}",
                    context=context,
                    continuations=question.continuations,
                    gold=question.gold,
                    contexts=tuple(context + own for own in question.contexts),
                )
            )
    return examples


def load_rows(spec: TaskSpec, subject: str, split: str) -> tuple[Path, list[dict[str, Any]]]:
    """The location and rows of one subject's split: ``{split}`` in path, else a ``split`` subfolder."""
    name = spec.path.format(subject=subject, split=split)
    location = resolve(name)
    if split and "{split}" not in spec.path:
        location = location / split
    return location, rows_at(location)


@cache
def rows_at(location: Path) -> list[dict[str, Any]]:
    """The rows at ``location``, read once per process: few-shot pools are re-read for every subject and split."""
    return read_rows(location)


def fewshot_indices(
    task: str, num_fewshot: int, sampler: str, seed: int, pool: int, own: int | None, index: int, where: Path
) -> list[int]:
    """Which of ``pool`` rows precede question ``index`` as its shots: never ``own`` (the question itself).

    ``first_n`` takes the first rows; ``random`` draws with ``random.Random``
    seeded by ``seed`` and ``index``, so a question's shots do not depend on
    which other questions run. Every task kind (multiple choice, generation)
    picks its shots here.
    """
    if num_fewshot == 0:
        return []
    candidates = [j for j in range(pool) if j != own]
    if num_fewshot > len(candidates):
        raise ConfigError(
            f"task {task!r}: num_fewshot {num_fewshot} but {where} has {len(candidates)} other rows"
        )
    if sampler == "first_n":
        return candidates[:num_fewshot]
    return random.Random(f"{seed}:{index}").sample(candidates, num_fewshot)


@dataclass(frozen=True)
class _Rendered:
    """One row as text: the prompt, every answer with its leading delimiter, and the gold answer's index."""

    prompt: str
    continuations: tuple[str, ...]
    gold: int
    contexts: tuple[str, ...] = ()  # one per answer (fill_blank), each after ``prompt``

    @property
    def shot(self) -> str:
        """The row as a solved few-shot example: the prompt (and the gold answer's context) and its answer."""
        own = self.contexts[self.gold] if self.contexts else ""
        return self.prompt + own + self.continuations[self.gold]


def _render(spec: TaskSpec, row: dict[str, Any], where: str) -> _Rendered:
    """``row`` rendered by ``spec``'s style; ``where`` (file and row) names it in errors."""
    row = _prepared(spec, row, where)
    text = fill_template(spec.text, row, where)
    answers = _answers(spec, row, where)
    if len(answers) < 2:
        raise InputError(f"{where}: {len(answers)} answer(s); a multiple-choice question needs at least two")
    gold = _gold(spec, row, answers, where)
    delimiter = spec.target_delimiter
    if spec.style == "letters":
        if len(answers) > len(LETTERS):
            raise InputError(f"{where}: {len(answers)} answers, more than the {len(LETTERS)} letters A-Z")
        options = "".join(f"\n{LETTERS[i]}. {answer}" for i, answer in enumerate(answers))
        letters = tuple(delimiter + LETTERS[i] for i in range(len(answers)))
        return _Rendered(text + options + "\nAnswer:", letters, gold)
    if spec.style == "fill_blank":
        if "_" not in text:
            raise InputError(f"{where}: no '_' blank in {text!r}")
        before, after = text.split("_", 1)
        rest = delimiter + after.strip()
        return _Rendered("", (rest,) * len(answers), gold, tuple(before + answer for answer in answers))
    return _Rendered(text, tuple(delimiter + answer for answer in answers), gold)


def _prepared(spec: TaskSpec, row: dict[str, Any], where: str) -> dict[str, Any]:
    """``row`` with the spec's ``strip`` fields stripped and its named preprocessing applied."""
    row = dict(row)
    for name in spec.strip:
        row[name] = str(field_value(row, name, where)).strip()
    if spec.preprocess == "hellaswag":
        context = f"{field_value(row, 'ctx_a', where)} {str(field_value(row, 'ctx_b', where)).capitalize()}"
        row["query"] = _clean_hellaswag(f"{field_value(row, 'activity_label', where)}: {context}")
        row["endings"] = [_clean_hellaswag(ending) for ending in field_value(row, "endings", where)]
    return row


def _clean_hellaswag(text: str) -> str:
    """HellaSwag's WikiHow text as the harness cleans it: " [title]" ends a sentence, other [tags] go,
    and one pass turns double spaces into single ones."""
    text = text.strip().replace(" [title]", ". ")
    return re.sub(r"\[.*?\]", "", text).replace("  ", " ")


def field_value(row: dict[str, Any], name: str, where: str) -> Any:
    """The value of the field ``name`` of ``row``, dotted names reaching into tables (``choices.text``)."""
    value: Any = row
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            fields = ", ".join(sorted(row))
            raise InputError(f"{where}: no field {name!r} (the row has {fields})")
        value = value[part]
    return value


def fill_template(template: str, row: dict[str, Any], where: str) -> str:
    """``template`` with each ``{field}`` replaced by that field of ``row``."""
    parts = []
    for literal, name, _, _ in string.Formatter().parse(template):
        parts.append(literal)
        if name is not None:
            parts.append(str(field_value(row, name, where)))
    return "".join(parts)


def _answers(spec: TaskSpec, row: dict[str, Any], where: str) -> list[str]:
    """The row's answer texts, from the spec's one source of answers."""
    if spec.choice_values:
        return list(spec.choice_values)
    if spec.choice_fields:
        return [str(field_value(row, name, where)) for name in spec.choice_fields]
    answers = field_value(row, spec.choices, where)
    if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
        raise InputError(f"{where}: field {spec.choices!r} is not a list of answer texts: {answers!r}")
    return answers


def _gold(spec: TaskSpec, row: dict[str, Any], answers: list[str], where: str) -> int:
    """The index of the correct answer, read from field ``gold`` as ``gold_kind`` says."""
    value = field_value(row, spec.gold, where)
    index: int | None = None
    if spec.gold_kind == "bool":
        index = int(value) if isinstance(value, bool) else None
    elif spec.gold_kind in ("index", "index1"):
        text = str(value).strip()
        if not isinstance(value, bool) and re.fullmatch(r"-?\d+", text):
            index = int(text) - (spec.gold_kind == "index1")
    elif spec.gold_kind == "letter":
        text = str(value).strip()
        index = LETTERS.index(text) if len(text) == 1 and text in LETTERS else None
    else:
        labels = field_value(row, spec.labels, where)
        text = str(value).strip()
        index = labels.index(text) if isinstance(labels, list) and text in labels else None
    if index is None or not 0 <= index < len(answers):
        raise InputError(
            f"{where}: gold field {spec.gold!r} = {value!r} is not a valid {spec.gold_kind}"
            f" for {len(answers)} answers"
        )
    return index
