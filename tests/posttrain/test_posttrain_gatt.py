"""Ghost Attention (Llama 2 §3.3): weighted rows, instructions and their checkers, dialogue building, evaluation.

A tiny random Llama 2 model over the tiny SentencePiece tokenizer of
tests/posttrain/conftest.py answers, so every run takes well under a second.
The prompts the engine receives are recorded (``generate_ids`` wrapped) and
compared with prompts rendered here from the expected messages; the checkers
and the per-turn shares are compared with values worked out by hand.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

from herd.errors import ConfigError, InputError
from herd.infer import Generated
from herd.model.build import build_model
from herd.model.presets import get_preset
from herd.model.transformer import Transformer
from herd.posttrain import gatt
from herd.posttrain.data import SkipCounts, read_conversations, render_conversation
from herd.posttrain.gatt import (
    CHECKABLE,
    FORMATS,
    INSTRUCTIONS,
    Dialogue,
    Instruction,
    at_most_words,
    build_gatt_dialogues,
    combine,
    draw_instruction,
    ends_with_question,
    following_shares,
    in_capitals,
    in_language,
    instruction_following,
    plot_instruction_following,
    read_dialogues,
    write_rows,
)
from herd.tokenizer import Tokenizer
from herd.tokenizer.chat import ChatFormat, Llama2Chat

ROOT = Path(__file__).resolve().parents[2]
DIALOGUES = [
    Dialogue(("Name a colour.", "Another one?", "And a third?")),
    Dialogue(("What is a parser?", "Why is it useful?")),
    Dialogue(("Tell me about help.", "Is it short?"), system="Be brief."),
]
FRENCH = next(i for i in INSTRUCTIONS if i.text == "Always answer in French.")
QUESTION, SHORT, CAPITALS = FORMATS


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def masked_runs(mask: list[int]) -> list[tuple[int, int]]:
    """The [start, end) runs of 1s of a loss mask."""
    runs, start = [], None
    for i, m in enumerate([*mask, 0]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            runs.append((start, i))
            start = None
    return runs


# --- the data format: "weight" ------------------------------------------------------------------


def test_weight_rows_are_read_and_bad_ones_skipped(
    tmp_path: Path, chat_formats: dict[str, ChatFormat]
) -> None:
    user, answer = {"role": "user", "content": "Hi."}, {"role": "assistant", "content": "Hello."}
    good = {"messages": [user, {**answer, "weight": 0}, user, answer]}
    rows = [
        good,
        {"messages": [user, {**answer, "weight": None}]},  # null is no weight (Parquet fills missing keys so)
        {"messages": [user, {**answer, "weight": 1}]},
        {"messages": [user, {**answer, "weight": 2}]},
        {"messages": [user, {**answer, "weight": True}]},
        {"messages": [{**user, "weight": 0}, answer]},
        {"messages": [{"role": "system", "content": "S.", "weight": 1}, user, answer]},
        {"messages": [user, {**answer, "weight": 0}]},
        {"messages": [user, {**answer, "weight": 0}, user, {**answer, "weight": 0}]},
    ]
    skipped = SkipCounts()
    conversations = list(read_conversations(write_jsonl(tmp_path / "rows.jsonl", rows), skipped))
    assert [c.messages for c in conversations] == [
        (user, {**answer, "weight": 0}, user, answer),
        (user, answer),
        (user, {**answer, "weight": 1}),
    ]
    assert skipped == {
        "'weight' not 0 or 1": 2,
        "'weight' not on an assistant message": 2,
        "nothing to train": 2,
    }
    for fmt in chat_formats.values():
        example = render_conversation(fmt, conversations[0], 512)
        plain = fmt.render([user, answer, user, answer])
        assert example.ids == plain.ids
        assert masked_runs(example.loss_mask) == masked_runs(plain.loss_mask)[1:]


# --- instructions and checkers ------------------------------------------------------------------


def test_language_checker_on_hand_written_answers() -> None:
    french = "Je pense que la tour Eiffel est très belle, et vous devriez la visiter."
    spanish = "Creo que la torre es muy bonita y deberías visitarla."
    german = "Ich glaube, der Turm ist sehr schön und du solltest ihn besuchen."
    english = "The Eiffel Tower is in Paris, and it is tall."
    # French: je que la est très et vous la = 8 of 13 words; Spanish words among them: que la la = 3
    assert in_language(french, "french") and not in_language(french, "spanish")
    # Spanish: que la es muy y = 5 of 9; French: que la = 2
    assert in_language(spanish, "spanish") and not in_language(spanish, "french")
    assert in_language(german, "german") and not in_language(german, "french")
    assert not in_language(english, "french") and in_language(english, "english")
    assert not in_language("", "french") and not in_language("42 !", "french")
    # one function word in 8 (12.5%) is under the 15% floor
    assert not in_language("Bonjour mon ami, bienvenue chez Marcel Proust aujourd'hui", "french")
    assert FRENCH.check is not None and FRENCH.check(french) and not FRENCH.check(english)


def test_format_checkers_on_hand_written_answers() -> None:
    assert ends_with_question("Do you like it?") and ends_with_question('He asked "why?"  ')
    assert ends_with_question("Ready? **Are you?**") and not ends_with_question("Why? Because.")
    assert not ends_with_question("")
    twenty = " ".join(["word"] * 20)
    assert at_most_words(twenty, 20) and not at_most_words(twenty + " more", 20)
    assert not at_most_words("   ", 20) and at_most_words("Yes.", 20)
    assert in_capitals("YES, 42 TIMES!") and in_capitals("ÇA VA.")
    assert not in_capitals("YES, 42 Times!") and not in_capitals("42 !") and not in_capitals("")
    assert QUESTION.check is ends_with_question and SHORT.check is not None and CAPITALS.check is in_capitals
    assert SHORT.check(twenty) and not SHORT.check(twenty + " more")


def test_instruction_lists_and_combination() -> None:
    categories = {i.category for i in INSTRUCTIONS}
    assert {"hobby", "language", "figure"} <= categories  # Llama 2's three synthetic constraints
    assert all(i.short and len(i.short) < len(i.text) for i in INSTRUCTIONS)
    assert set(CHECKABLE) == {
        i for i in INSTRUCTIONS if i.category in ("language", "ending", "length", "case")
    }
    napoleon = next(i for i in INSTRUCTIONS if "Napoleon" in i.text)
    assert (napoleon.text, napoleon.short) == ("Always act as Napoleon from now on.", "Figure: Napoleon.")
    both = combine([FRENCH, QUESTION])
    assert both.text == "Always answer in French. Always end your answer with a question."
    assert both.short == "Language: French. End with a question."
    assert both.category == "language+ending" and both.check is not None
    assert both.check("Qu'est-ce que vous aimez?")  # qu est ce que vous: 5 of 6 words French, ends with ?
    assert not both.check("Qu'est-ce que vous aimez.") and not both.check("What do you like?")
    assert combine([FRENCH, napoleon]).check is None  # a persona cannot be checked, so neither can the whole
    assert combine([QUESTION]) is QUESTION
    assert Instruction(FRENCH.text, FRENCH.short, FRENCH.category) == FRENCH  # the checker is not compared


def test_draw_instruction_is_seeded_and_combines_distinct_categories() -> None:
    draws = [draw_instruction(random.Random(seed), max_parts=3) for seed in range(200)]
    assert draws == [draw_instruction(random.Random(seed), max_parts=3) for seed in range(200)]
    parts = [d.category.split("+") for d in draws]
    assert {len(p) for p in parts} == {1, 2, 3}
    assert all(len(set(p)) == len(p) for p in parts)
    assert all(d.category in {i.category for i in INSTRUCTIONS} for d in draws if "+" not in d.category)
    assert {len(draw_instruction(random.Random(s), max_parts=1).category.split("+")) for s in range(50)} == {
        1
    }
    with pytest.raises(ConfigError, match="max_parts must be at least 1, got 0"):
        draw_instruction(random.Random(0), max_parts=0)
    # a dialogue's draw depends on (seed, index) alone; the short text comes half of the time (Llama 2 §3.3)
    choices = [gatt.choose(i, 5, INSTRUCTIONS, 2, 0.5) for i in range(400)]
    assert choices == [gatt.choose(i, 5, INSTRUCTIONS, 2, 0.5) for i in range(400)]
    assert 160 < sum(c.short for c in choices) < 240
    assert all(c.kept == (c.instruction.short if c.short else c.instruction.text) for c in choices)


# --- building the dialogues ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def model(llama2_tokenizer: Tokenizer) -> Transformer:
    config = get_preset("llama2-tiny").replace(vocab_size=llama2_tokenizer.vocab_size, max_seq_len=512)
    return build_model(config, seed=0).eval()


@pytest.fixture(scope="module")
def fmt(llama2_tokenizer: Tokenizer) -> Llama2Chat:
    return Llama2Chat(llama2_tokenizer)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[list[list[int]]]:
    """The prompts of every ``generate_ids`` call gatt makes, in order."""
    seen: list[list[list[int]]] = []
    real = gatt.generate_ids

    def recording(engine, prompts, **kwargs):  # type: ignore[no-untyped-def]
        seen.append([list(p) for p in prompts])
        return real(engine, prompts, **kwargs)

    monkeypatch.setattr(gatt, "generate_ids", recording)
    return seen


def build(model: Transformer, fmt: ChatFormat, **options: Any) -> list[dict[str, Any]]:
    defaults: dict[str, Any] = {"max_new_tokens": 6, "batch_size": 2, "seed": 3}
    return build_gatt_dialogues(model, fmt, DIALOGUES, **{**defaults, **options})


def test_rows_keep_the_instruction_in_the_first_turn_only(
    model: Transformer, fmt: Llama2Chat, calls: list[list[list[int]]]
) -> None:
    rows = build(model, fmt)
    assert [row["dialogue_index"] for row in rows] == [0, 1, 2]
    for row, dialogue in zip(rows, DIALOGUES, strict=True):
        messages, kept = row["messages"], row["kept_instruction"]
        assert kept in (row["instruction"], short_of(row["instruction"]))
        system = f"{dialogue.system}\n\n{kept}" if dialogue.system else kept
        assert messages[0] == {"role": "system", "content": system}
        users = [m["content"] for m in messages if m["role"] == "user"]
        assert users == list(dialogue.users)  # the instruction is in no user turn
        answers = [m for m in messages if m["role"] == "assistant"]
        assert len(answers) == len(dialogue.users)
        assert [m.get("weight") for m in answers] == [0] * (len(answers) - 1) + [None]
        assert all(set(m) <= {"role", "content", "weight"} and m["content"] for m in messages)

    # batch 1 (dialogues 0 and 1): turns 1, 2, 3; batch 2 (dialogue 2): turns 1, 2
    assert [len(prompts) for prompts in calls] == [2, 2, 1, 1, 1]
    # (dialogue, turn from 0) → (call, row of the call)
    where = {(0, 0): (0, 0), (1, 0): (0, 1), (0, 1): (1, 0), (1, 1): (1, 1), (0, 2): (2, 0), (2, 0): (3, 0)}
    for (i, t), (call, position) in (where | {(2, 1): (4, 0)}).items():
        dialogue, row = DIALOGUES[i], rows[i]
        answers = [m["content"] for m in row["messages"] if m["role"] == "assistant"]
        expected: list[dict[str, str]] = (
            [{"role": "system", "content": dialogue.system}] if dialogue.system else []
        )
        for n in range(t + 1):  # the instruction concatenated to every user turn up to t
            expected.append({"role": "user", "content": f"{dialogue.users[n]}\n\n{row['instruction']}"})
            if n < t:
                expected.append({"role": "assistant", "content": answers[n]})
        assert calls[call][position] == fmt.render_prompt(expected), (i, t)


def short_of(text: str) -> str:
    """The short text of the (combined) instruction whose text is ``text``: each part's, in order."""
    shorts = {i.text: i.short for i in INSTRUCTIONS}
    return " ".join(shorts[part] for part in re.split(r"(?<=\.) ", text))


def test_rows_are_read_by_sft_with_loss_on_the_last_answer_only(
    model: Transformer, fmt: Llama2Chat, tmp_path: Path
) -> None:
    rows = build(model, fmt, placement="user", short_share=1.0)
    path = write_rows(tmp_path / "out" / "gatt.jsonl", rows)
    assert [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] == rows
    skipped = SkipCounts()
    conversations = list(read_conversations(path, skipped))
    assert not skipped and len(conversations) == len(DIALOGUES)
    for row, conv, dialogue in zip(rows, conversations, DIALOGUES, strict=True):
        assert row["kept_instruction"] == short_of(row["instruction"])  # short_share 1: always short
        first_user = next(m for m in conv.messages if m["role"] == "user")
        assert first_user["content"] == f"{dialogue.users[0]}\n\n{row['kept_instruction']}"
        assert conv.messages[0]["role"] == ("system" if dialogue.system else "user")
        example = render_conversation(fmt, conv, 256)
        plain = fmt.render([{k: v for k, v in m.items() if k != "weight"} for m in conv.messages])
        assert example.ids == plain.ids
        assert masked_runs(example.loss_mask) == masked_runs(plain.loss_mask)[-1:]
        last = row["messages"][-1]["content"]
        trained = [i for i, m in zip(example.ids, example.loss_mask, strict=True) if m]
        assert fmt.tokenizer.decode(trained[:-1]).strip() == last and trained[-1] == fmt.tokenizer.eos_id


def test_building_is_deterministic_and_resumes(
    model: Transformer, fmt: Llama2Chat, tmp_path: Path, calls: list[list[list[int]]]
) -> None:
    progress = tmp_path / "progress.jsonl"
    rows = build(model, fmt, progress=progress)
    assert build(model, fmt) == rows
    assert build(model, fmt, seed=4) != rows
    lines = progress.read_bytes().splitlines(keepends=True)
    assert len(lines) == 3  # the settings, then one line per batch
    progress.write_bytes(lines[0] + lines[1] + lines[2][:10])  # killed while writing the second batch
    calls.clear()
    assert build(model, fmt, progress=progress) == rows
    assert [len(prompts) for prompts in calls] == [1, 1]  # only dialogue 2's batch ran again
    calls.clear()
    assert build(model, fmt, progress=progress) == rows and not calls
    with pytest.raises(ConfigError, match="other settings"):
        build(model, fmt, progress=progress, temperature=0.5)


def test_dialogues_that_end_early_or_never_start(
    model: Transformer, fmt: Llama2Chat, monkeypatch: pytest.MonkeyPatch
) -> None:
    long = Dialogue(("word " * 500, "Again?"))
    skipped = SkipCounts()
    rows = build_gatt_dialogues(model, fmt, [long, DIALOGUES[0]], max_new_tokens=6, skipped=skipped)
    assert [row["dialogue_index"] for row in rows] == [1] and skipped == {"too long": 1}
    # room for the first prompt and its answer only: the second prompt adds a user turn and the instruction
    first = fmt.render_prompt([{"role": "user", "content": f"{DIALOGUES[0].users[0]}\n\n{QUESTION.text}"}])
    short = build_model(model.config.replace(max_seq_len=len(first) + 6), seed=0).eval()
    options: dict[str, Any] = {"instructions": [QUESTION], "max_new_tokens": 6, "short_share": 0.0}
    rows = build_gatt_dialogues(short, fmt, DIALOGUES[:1], **options)
    assert rows[0]["messages"] == [
        {"role": "system", "content": QUESTION.text},
        {"role": "user", "content": DIALOGUES[0].users[0]},
        {"role": "assistant", "content": rows[0]["messages"][-1]["content"]},
    ]
    # a model that ends every answer at once: no answer, no row
    eos = fmt.tokenizer.eos_id
    monkeypatch.setattr(gatt, "generate_ids", lambda _, prompts, **__: [Generated([eos]) for _ in prompts])
    skipped = SkipCounts()
    assert build_gatt_dialogues(model, fmt, DIALOGUES, skipped=skipped) == []
    assert skipped == {"empty answer": 3}


def test_bad_settings_are_refused(model: Transformer, fmt: Llama2Chat, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="placement must be 'system' or 'user', got 'middle'"):
        build(model, fmt, placement="middle")
    with pytest.raises(ConfigError, match="batch_size must be at least 1, got 0"):
        build(model, fmt, batch_size=0)
    with pytest.raises(ConfigError, match=r"short_share must be in \[0, 1\], got 2"):
        build(model, fmt, short_share=2)
    with pytest.raises(ConfigError, match="has no checker"):
        following_shares([["x"]], [INSTRUCTIONS[0]])
    single = write_jsonl(
        tmp_path / "single.jsonl",
        [
            {"prompt": "x"},
            {"messages": [{"role": "user", "content": "Hi."}, {"role": "assistant", "content": "Hello."}]},
        ],
    )
    with pytest.raises(InputError, match=r"single\.jsonl: no conversation with 2 or more user turns"):
        read_dialogues(single)


def test_sample_file_has_multi_turn_dialogues() -> None:
    dialogues = read_dialogues(ROOT / "data/samples/posttrain/sft-train.jsonl")
    assert len(dialogues) >= 300 and all(len(d.users) >= 2 for d in dialogues)
    assert len(read_dialogues(ROOT / "data/samples/posttrain/sft-train.jsonl", min_turns=3, limit=5)) == 5


# --- evaluation ---------------------------------------------------------------------------------


def test_following_shares_by_hand() -> None:
    answers = [
        ["Je suis là et je vous écoute.", "Hello there."],  # French: yes, no
        ["OUI?", "NON.", "PEUT-ÊTRE?"],  # question: yes, no, yes
        ["ALL CAPS", "STILL CAPS", "lower now"],  # capitals: yes, yes, no
        ["one two three"],  # at most 20 words: yes
    ]
    result = following_shares(answers, [FRENCH, QUESTION, CAPITALS, SHORT])
    assert result.passed == [[True, False], [True, False, True], [True, True, False], [True]]
    assert result.counts == [4, 3, 2]
    assert result.shares == [4 / 4, 1 / 3, 1 / 2]
    assert result.instructions == [FRENCH.text, QUESTION.text, CAPITALS.text, SHORT.text]
    assert following_shares([[], []], [FRENCH, QUESTION]).shares == []


def test_instruction_following_gives_the_instruction_once(
    model: Transformer, fmt: Llama2Chat, calls: list[list[list[int]]]
) -> None:
    instructions = [FRENCH, QUESTION]
    result = instruction_following(
        model, fmt, DIALOGUES, instructions=instructions, max_new_tokens=5, batch_size=3
    )
    assert result == instruction_following(
        model, fmt, DIALOGUES, instructions=instructions, max_new_tokens=5, batch_size=3
    )
    assert result.instructions == [FRENCH.text, QUESTION.text, FRENCH.text]
    assert result == following_shares(result.answers, [FRENCH, QUESTION, FRENCH])
    assert [len(a) for a in result.answers] == [3, 2, 2] and result.counts == [3, 3, 1]
    assert [len(p) for p in calls[:3]] == [3, 3, 1]
    for t in range(3):
        rows = [i for i, d in enumerate(DIALOGUES) if len(d.users) > t]
        for row, i in enumerate(rows):
            dialogue = DIALOGUES[i]
            system = (
                f"{dialogue.system}\n\n{result.instructions[i]}"
                if dialogue.system
                else result.instructions[i]
            )
            expected = [{"role": "system", "content": system}]
            for n in range(t + 1):
                expected.append({"role": "user", "content": dialogue.users[n]})
                if n < t:
                    expected.append({"role": "assistant", "content": result.answers[i][n]})
            assert calls[t][row] == fmt.render_prompt(expected)
    user = instruction_following(
        model, fmt, DIALOGUES[:1], instructions=[QUESTION], max_new_tokens=5, placement="user"
    )
    assert len(user.answers[0]) == 3


def test_plot_is_a_png(tmp_path: Path) -> None:
    without = following_shares([["No.", "No."], ["Yes?", "No."]], [QUESTION, QUESTION])
    with_gatt = following_shares([["Why?", "How?"], ["Yes?", "No."]], [QUESTION, QUESTION])
    path = plot_instruction_following(
        {"without GAtt": without, "with GAtt": with_gatt}, tmp_path / "f" / "plot.png"
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (without.shares, with_gatt.shares) == ([0.5, 0.0], [1.0, 0.5])
