"""Generation tasks: answers extracted and scored as lm-eval's own filters and metric score them, the task
configs agreeing with lm-eval's task files, prompts rendered exactly, and runs on a tiny model and SmolLM2."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from lm_eval.api.metrics import exact_match_hf_evaluate
from lm_eval.filters.extraction import RegexFilter, WhitespaceFilter
from lm_eval.filters.selection import TakeFirstFilter

from herd.config import from_dict, load_toml
from herd.errors import ConfigError, InputError
from herd.eval.datasets import resolve
from herd.eval.generation import (
    GenerationSpec,
    build_questions,
    cut_at_stops,
    evaluate_generation,
    exact_match,
    extract,
    locate,
)
from herd.eval.tasks import rows_at
from herd.infer.byte_tokenizer import ByteTokenizer
from herd.infer.completion import generate
from herd.infer.engine import Engine
from herd.infer.loading import load_for_inference
from herd.model.build import build_model
from herd.model.presets import get_preset
from herd.tokenizer import Tokenizer

CONFIGS = Path(__file__).parents[2] / "configs" / "eval"
LM_EVAL_TASKS = Path(__import__("lm_eval").__file__).parent / "tasks"

# herd's own sets, where the shipped specs name them (package:herd/eval/data/...).
SHIPPED = resolve("package:herd/eval/data")


def lm_eval_yaml(task: str) -> dict[str, Any]:
    return yaml.safe_load((LM_EVAL_TASKS / task).read_text("utf-8"))


def config(name: str, **changes: Any) -> GenerationSpec:
    return dataclasses.replace(from_dict(GenerationSpec, load_toml(CONFIGS / f"{name}.toml")), **changes)


def metric_options(task_yaml: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments lm-eval passes its exact_match metric for this task."""
    options = dict(task_yaml["metric_list"][0])
    for key in ("metric", "aggregation", "higher_is_better"):
        options.pop(key)
    return options


def lm_eval_filtered(filters: list[Any], generation: str) -> str:
    responses: Any = [[generation]]
    for f in filters:
        responses = f.apply(responses, [{}])
    return next(iter(responses))


def lm_eval_hit(task_yaml: dict[str, Any], prediction: str, golds: list[str]) -> bool:
    """lm-eval's process_results for generate_until: one target, or any of several (multiple_target)."""
    score = exact_match_hf_evaluate(
        predictions=[prediction] * len(golds), references=golds, **metric_options(task_yaml)
    )["exact_match"]
    return bool(score > 0.0)


GSM8K_GOLD = "Step one.\nStep two is 2 * 3 = <<2*3=6>>6.\n#### {}"
# (generation, gold answer): hits and misses of both filters, commas, dollars, negatives, trailing periods.
GSM8K_CASES = [
    (" She makes 9 * 2 = <<9*2=18>>18 dollars.\n#### 18", "18"),
    (" The answer is 18.", "18"),
    (" The answer is $18.", "18"),
    (" So the total is 1,234 apples.\n#### 1,234", "1234"),
    (" #### 1234.", "1234"),
    (" It drops 3 - 10 = <<3-10=-7>>-7 degrees.\n#### -7", "-7"),
    (" It is -7", "7"),
    (" 3.5 + 1.5 = 5.0\n#### 5.0", "5"),
    (" #### $20", "20"),
    (" She pays $1,000.50 in total.", "1000"),
    (" I do not know the answer.", "18"),
    ("", "0"),
    (" #### 18\n#### 19", "19"),
    (" First 12, then 7", "7"),
    (" 2 + 3 = 5", "5"),
    (" Wait... so 4", "4"),
    (" #### 42 is the answer, not 41", "42"),
    (" The answer is 18.\n\n", "18"),
]


@pytest.mark.parametrize(("generation", "answer"), GSM8K_CASES)
def test_gsm8k_extraction_and_scoring_equal_lm_eval(generation: str, answer: str) -> None:
    task = lm_eval_yaml("gsm8k/gsm8k.yaml")
    spec = config("gsm8k")
    gold = GSM8K_GOLD.format(answer)
    ours = extract("gsm8k", generation)
    filters = {
        entry["name"].replace("-", "_"): [
            RegexFilter(**{k: v for k, v in step.items() if k != "function"})
            if step["function"] == "regex"
            else TakeFirstFilter()
            for step in entry["filter"]
        ]
        for entry in task["filter_list"]
    }
    assert list(ours) == list(filters) == ["strict_match", "flexible_extract"]
    for name, chain in filters.items():
        theirs = lm_eval_filtered(chain, generation)
        assert ours[name] == theirs
        assert exact_match(spec, ours[name], [gold]) == lm_eval_hit(task, theirs, [gold])


def test_the_gsm8k_table_has_hits_and_misses_of_both_filters() -> None:
    spec = config("gsm8k")
    outcomes = set()
    for generation, answer in GSM8K_CASES:
        extracted = extract("gsm8k", generation)
        gold = GSM8K_GOLD.format(answer)
        outcomes.add(tuple(exact_match(spec, extracted[m], [gold]) for m in extracted))
    assert outcomes == {(True, True), (False, True), (True, False), (False, False)}
    assert extract("gsm8k", " no number") == {"strict_match": "[invalid]", "flexible_extract": "[invalid]"}


QA_CASES = [
    (" Sunset Boulevard", ["Sunset Blvd", "Sunset Boulevard"]),
    (" sunset blvd.", ["Sunset Blvd", "Sunset Boulevard"]),
    ("  SUNSET   BOULEVARD ", ["Sunset Boulevard"]),
    (" The Beatles", ["Beatles", "The Beatles"]),
    (" the Beatles", ["Beatles"]),
    (" an apple", ["apple"]),
    (" Anne Boleyn", ["Boleyn"]),
    (" Mount Everest", ["Everest"]),
    (" O'Neill", ["ONeill"]),
    (" 14 December 1972", ["14 December 1972 UTC", "December 1972"]),
    ("", ["Paris"]),
    (" Paris", ["paris"]),
    (" café", ["Café"]),
]


@pytest.mark.parametrize("task_file", ["triviaqa/default.yaml", "nq_open/nq_open.yaml"])
@pytest.mark.parametrize(("generation", "golds"), QA_CASES)
def test_exact_match_tasks_equal_lm_eval(task_file: str, generation: str, golds: list[str]) -> None:
    task = lm_eval_yaml(task_file)
    spec = config("triviaqa" if task_file.startswith("triviaqa") else "nq_open")
    assert [step["function"] for step in task["filter_list"][0]["filter"]] == [
        "remove_whitespace",
        "take_first",
    ]
    theirs = lm_eval_filtered([WhitespaceFilter(), TakeFirstFilter()], generation)
    ours = extract("exact_match", generation)
    assert ours == {"exact_match": theirs}
    assert exact_match(spec, theirs, golds) == lm_eval_hit(task, theirs, golds)


def test_the_articles_and_punctuation_cases_tell_the_two_tasks_apart() -> None:
    trivia, nq = config("triviaqa"), config("nq_open")
    assert exact_match(nq, "the Beatles", ["Beatles"]) and not exact_match(trivia, "the Beatles", ["Beatles"])
    assert exact_match(trivia, "sunset blvd.", ["Sunset Blvd"])
    assert not exact_match(trivia, "Sunset", ["Sunset Blvd"])


@pytest.mark.parametrize(
    ("name", "task_file"),
    [
        ("gsm8k", "gsm8k/gsm8k.yaml"),
        ("triviaqa", "triviaqa/default.yaml"),
        ("nq_open", "nq_open/nq_open.yaml"),
    ],
)
def test_configs_agree_with_lm_eval_task_files(name: str, task_file: str) -> None:
    task = lm_eval_yaml(task_file)
    spec = config(name)
    assert spec.kind == "generate"
    assert spec.text == re.sub(r"\{\{(\w+)\}\}", r"{\1}", task["doc_to_text"])
    assert spec.until == task["generation_kwargs"]["until"]
    assert spec.description == task.get("description", "")
    assert spec.fewshot_delimiter == task.get("fewshot_delimiter", "\n\n")
    assert spec.target_delimiter == task.get("target_delimiter", " ")
    options = metric_options(task)
    assert spec.ignore_case == options.get("ignore_case", False)
    assert spec.ignore_punctuation == options.get("ignore_punctuation", False)
    assert spec.regexes_to_ignore == options.get("regexes_to_ignore", [])
    assert spec.target == task["doc_to_target"].strip("{} ")
    # A shot is lm-eval's prompt, target delimiter and target; gsm8k.toml spells it out.
    assert spec.shot in ("", spec.text + spec.target_delimiter + "{" + spec.target + "}")
    # lm-eval's gsm8k defaults to 5 shots; the Llama papers report 8-shot. The QA tasks default to 0.
    assert spec.num_fewshot == (8 if name == "gsm8k" else task.get("num_fewshot", 0))


def lm_eval_task(task_file: str, splits: dict[str, Path], cache: Path, **changes: Any) -> Any:
    """lm-eval's own task from its yaml, reading local JSONL files (and the first_n sampler, as herd's spec)."""
    from lm_eval.api.task import ConfigurableTask

    task = lm_eval_yaml(task_file)
    task.pop("tag", None)
    task.update(
        dataset_path="json",
        dataset_name=None,
        dataset_kwargs={"data_files": {k: str(v) for k, v in splits.items()}, "cache_dir": str(cache)},
        fewshot_config={"sampler": "first_n"},
        **changes,
    )
    return ConfigurableTask(config=task)


@pytest.mark.parametrize("shots", [0, 2, 8])
def test_gsm8k_prompts_equal_lm_eval_s_own(shots: int, tmp_path: Path) -> None:
    folder = SHIPPED / "herd_word_problems"
    splits = {"train": folder / "train.jsonl", "test": folder / "test.jsonl"}
    task = lm_eval_task("gsm8k/gsm8k.yaml", splits, tmp_path)
    _, questions = build_questions(config("gsm8k", num_fewshot=shots, fewshot_sampler="first_n"), limit=3)
    for doc, question in zip(task.test_docs(), questions, strict=False):
        assert question.prompt == task.fewshot_context(doc, num_fewshot=shots)
        assert question.golds == (task.doc_to_target(doc),)


@pytest.mark.parametrize(
    ("name", "task_file"), [("triviaqa", "triviaqa/default.yaml"), ("nq_open", "nq_open/nq_open.yaml")]
)
@pytest.mark.parametrize("shots", [0, 1, 5])
def test_qa_prompts_and_golds_equal_lm_eval_s_own(
    name: str, task_file: str, shots: int, tmp_path: Path
) -> None:
    """The first rows of the olmo validation split, as JSONL both sides read; shots from the same split."""
    spec = config(name)
    rows = rows_at(locate(spec.path, spec.split))[:8]
    data = tmp_path / "validation.jsonl"
    keep = spec.target.split(".")[0]
    write_jsonl(data, [{"question": row["question"], keep: row[keep]} for row in rows])
    # As the evaluated split (test_split), lm-eval leaves each question out of its own shots, as herd does.
    task = lm_eval_task(
        task_file,
        {"validation": data},
        tmp_path / "cache",
        fewshot_split="validation",
        test_split="validation",
    )
    local = dataclasses.replace(spec, path=str(data), split="", num_fewshot=shots, fewshot_sampler="first_n")
    _, questions = build_questions(local, limit=3)
    for doc, question in zip(task.test_docs(), questions, strict=False):
        assert question.prompt == task.fewshot_context(doc, num_fewshot=shots)
        assert list(question.golds) == task.doc_to_target(doc)


def test_cut_at_stops_cuts_as_lm_eval_does() -> None:
    assert cut_at_stops(" Paris, France.", ["\n", ".", ","]) == " Paris"
    assert cut_at_stops(" 42\n\nQuestion: next", ["Question:", "</s>"]) == " 42\n\n"
    assert cut_at_stops(" no stop here", ["\n"]) == " no stop here"
    # lm-eval splits on each stop in turn: "ab" is searched for only in what "b" left.
    assert cut_at_stops("xab", ["b", "ab"]) == "xa"
    assert cut_at_stops("text", ["", "x"]) == "te"


def test_the_default_gsm8k_runs_on_herds_own_problems_and_says_so() -> None:
    name, questions = build_questions(config("gsm8k", num_fewshot=0), limit=1)
    assert name == "herd_word_problems"
    assert questions[0].id == "herd_word_problems/0"
    assert questions[0].prompt == (
        "Question: Mia buys 5 notebooks at $2 each and 3 pens at $2 each. Mia pays with a $50 bill. "
        "How much change, in dollars, does Mia get back?\nAnswer:"
    )
    assert questions[0].golds[0].endswith("\n#### 34")


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), "utf-8")


def test_a_real_dataset_under_data_dir_replaces_herds_own(tmp_path: Path) -> None:
    test_rows = [
        {"question": f"What is {i} + 1?", "answer": f"{i} + 1 = <<{i}+1={i + 1}>>{i + 1}\n#### {i + 1}"}
        for i in range(3)
    ]
    write_jsonl(tmp_path / "gsm8k" / "test.jsonl", test_rows)
    spec = config("gsm8k", num_fewshot=1)
    # Without a train file the shots are the other test rows.
    name, questions = build_questions(spec, data_dir=tmp_path)
    assert name == "gsm8k"
    assert [q.id for q in questions] == ["gsm8k/0", "gsm8k/1", "gsm8k/2"]
    assert all(q.prompt.count("Question:") == 2 for q in questions)
    assert "What is 0 + 1?" not in questions[0].prompt.split("\n\n")[0]
    write_jsonl(tmp_path / "gsm8k" / "train.jsonl", [{"question": "Shot?", "answer": "#### 7"}])
    _, questions = build_questions(spec, data_dir=tmp_path)
    assert questions[1].prompt == "Question: Shot?\nAnswer: #### 7\n\nQuestion: What is 1 + 1?\nAnswer:"
    # A data_dir without the file leaves herd's own set in place.
    assert build_questions(spec, limit=1, data_dir=tmp_path / "elsewhere")[0] == "herd_word_problems"


def test_nq_open_shots_follow_the_description_one_newline_apart() -> None:
    # first_n: the first rows other than the question itself (row 0), each with its first answer.
    spec = config("nq_open", num_fewshot=2, fewshot_sampler="first_n")
    _, questions = build_questions(spec, limit=1)
    assert questions[0].prompt == (
        "Answer these questions:\n\n"
        "Q: who wrote he ain't heavy he's my brother lyrics?\nA: Bobby Scott\n"
        "Q: how many seasons of the bastard executioner are there?\nA: one\n"
        "Q: when was the last time anyone was on the moon?\nA:"
    )
    assert questions[0].golds == ("14 December 1972 UTC", "December 1972")


def test_triviaqa_prompts_keep_the_harness_s_extra_question_mark() -> None:
    _, questions = build_questions(config("triviaqa"), limit=1)
    assert questions[0].prompt == (
        "Question: Which Lloyd Webber musical premiered in the US on 10th December 1993??\nAnswer:"
    )
    assert "Sunset Boulevard" in questions[0].golds


def test_a_spec_without_target_or_with_an_unknown_extraction_is_refused() -> None:
    table = load_toml(CONFIGS / "triviaqa.toml")
    with pytest.raises(ConfigError, match=r"missing config key.*target"):
        from_dict(GenerationSpec, {k: v for k, v in table.items() if k != "target"})
    with pytest.raises(ConfigError, match="extraction: 'regex' is not one of"):
        from_dict(GenerationSpec, {**table, "extraction": "regex"})
    with pytest.raises(ConfigError, match="regexes_to_ignore"):
        from_dict(GenerationSpec, {**table, "regexes_to_ignore": ["("]})
    with pytest.raises(ConfigError, match="num_fewshot"):
        from_dict(GenerationSpec, {**table, "num_fewshot": -1})


def test_a_row_without_its_target_is_one_line_naming_the_file_and_row(tmp_path: Path) -> None:
    data = tmp_path / "qa.jsonl"
    write_jsonl(data, [{"q": "a?", "a": "x"}, {"q": "b?"}])
    spec = GenerationSpec(name="qa", path=str(data), text="{q}", target="a", extraction="exact_match")
    with pytest.raises(InputError) as caught:
        build_questions(spec)
    assert str(caught.value) == f"{data} row 1: no field 'a' (the row has q)"
    other = tmp_path / "numbers.jsonl"  # rows are cached by file, so another file
    write_jsonl(other, [{"q": "a?", "a": 3}])
    with pytest.raises(InputError, match=r"row 0: target field 'a' is not a string or a list of strings: 3$"):
        build_questions(dataclasses.replace(spec, path=str(other)))


# --- end to end -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny() -> tuple[Engine, Tokenizer]:
    tokenizer = ByteTokenizer()
    model = build_model(get_preset("llama2-tiny").replace(vocab_size=tokenizer.vocab_size), seed=0)
    model.init_weights(std=0.1, seed=0)
    return Engine(model.eval()), tokenizer


def tiny_spec(tmp_path: Path) -> GenerationSpec:
    data = tmp_path / "sums.jsonl"
    rows = [{"question": "1" * (i + 1) + " + 2?", "answer": f"#### {i}"} for i in (0, 5, 1, 4, 2, 3)]
    write_jsonl(data, rows)
    return GenerationSpec(
        name="sums",
        path=str(data),
        text="Question: {question}\nAnswer:",
        target="answer",
        extraction="gsm8k",
        num_fewshot=1,
        until=["\n\n"],
        max_new_tokens=6,
    )


def test_a_tiny_model_run_has_one_record_per_question_in_dataset_order(
    tiny: tuple[Engine, Tokenizer], tmp_path: Path
) -> None:
    engine, tokenizer = tiny
    spec = tiny_spec(tmp_path)
    done: list[int] = []
    result = evaluate_generation(spec, engine, tokenizer, limit=4, batch_size=4, progress=done.append)
    one = evaluate_generation(spec, engine, tokenizer, limit=4, batch_size=1)
    assert (result.task, result.kind, result.n) == ("sums", "generate", 4)
    assert [m.name for m in result.metrics] == ["strict_match", "flexible_extract"]
    assert all(0.0 <= m.value <= 1.0 and m.ci is not None for m in result.metrics)
    assert sum(done) == 4 and done == [4]
    _, questions = build_questions(spec, limit=4)
    assert [r["id"] for r in result.examples] == [f"sums/{i}" for i in range(4)]
    assert [r["prompt"] for r in result.examples] == [q.prompt for q in questions]
    assert [r["gold"] for r in result.examples] == ["#### 0", "#### 5", "#### 1", "#### 4"]
    # Batch 4 (sorted by length) and batch 1 give the same answers, each the answer to its own prompt.
    assert [r["generation"] for r in result.examples] == [r["generation"] for r in one.examples]
    for record, question in zip(result.examples, questions, strict=True):
        alone = generate(engine, tokenizer, question.prompt, max_new_tokens=6, temperature=0.0, stop=["\n\n"])
        assert record["generation"] == alone[0].text
        assert record["extracted"] == extract("gsm8k", record["generation"])
        assert set(record["hits"]) == {"strict_match", "flexible_extract"}
    assert json.loads(json.dumps(result.examples)) == result.examples


def test_long_prompts_are_kept_by_their_end_in_the_records(
    tiny: tuple[Engine, Tokenizer], tmp_path: Path
) -> None:
    engine, tokenizer = tiny
    data = tmp_path / "long.jsonl"
    write_jsonl(data, [{"q": "x" * 2500 + " end?", "a": "y"}])
    spec = GenerationSpec(
        name="long", path=str(data), text="{q}", target="a", extraction="exact_match", max_new_tokens=2
    )
    record = evaluate_generation(spec, engine, tokenizer).examples[0]
    assert record["prompt"] == ("x" * 2500 + " end?")[-2000:]
    assert record["prompt_chars"] == 2505


@pytest.fixture(scope="module")
def smollm2(smollm2_gguf: Path) -> Iterator[tuple[Engine, Tokenizer]]:
    model, tokenizer = load_for_inference(str(smollm2_gguf))
    yield Engine(model), tokenizer


EXPECTED_FIRST_PROMPT = (
    "Question: A jacket costs $140. This week it is on sale for 15% off. How much, in dollars, does Lucia pay"
    " if she buys 2 jackets on sale?\n"
    "Answer: The discount is 140 * 15 / 100 = $<<140*15/100=21>>21.\n"
    "A jacket on sale costs 140 - 21 = $<<140-21=119>>119.\n"
    "2 jackets cost 2 * 119 = $<<2*119=238>>238.\n"
    "#### 238\n\n"
    "Question: A train travels at 40 miles per hour for 3 hours, then at 75 miles per hour for 2 hours."
    " How many miles does the train travel in total?\n"
    "Answer: First it travels 40 * 3 = <<40*3=120>>120 miles.\n"
    "Then it travels 75 * 2 = <<75*2=150>>150 miles.\n"
    "In total it travels 120 + 150 = <<120+150=270>>270 miles.\n"
    "#### 270\n\n"
    "Question: Mia buys 5 notebooks at $2 each and 3 pens at $2 each. Mia pays with a $50 bill."
    " How much change, in dollars, does Mia get back?\n"
    "Answer:"
)


@pytest.mark.slow  # four prefills of ~330 tokens: 20-60 s on two busy cores
def test_smollm2_answers_herds_word_problems_two_shot(smollm2: tuple[Engine, Tokenizer]) -> None:
    engine, tokenizer = smollm2
    spec = config("gsm8k", num_fewshot=2, max_new_tokens=8)
    result = evaluate_generation(spec, engine, tokenizer, limit=4, batch_size=4)
    assert result.task == "herd_word_problems" and result.n == 4
    assert result.examples[0]["prompt"] == EXPECTED_FIRST_PROMPT
    assert all(0.0 <= m.value <= 1.0 for m in result.metrics)
    for record in result.examples:
        assert record["generation"].strip()  # the model answers something
        assert "Question:" not in record["generation"]
        assert record["extracted"] == extract("gsm8k", record["generation"])


@pytest.mark.slow  # SmolLM2 again, in its chat format: 10-35 s on two busy cores
def test_smollm2_chat_answers_each_prompt_as_one_user_turn(smollm2: tuple[Engine, Tokenizer]) -> None:
    engine, tokenizer = smollm2
    spec = config("nq_open", max_new_tokens=4)
    result = evaluate_generation(spec, engine, tokenizer, limit=2, chat=True)
    assert [r["id"] for r in result.examples] == ["nq_open/0", "nq_open/1"]
    assert [m.name for m in result.metrics] == ["exact_match"]
    for record in result.examples:
        assert not any(stop in record["generation"] for stop in spec.until)
