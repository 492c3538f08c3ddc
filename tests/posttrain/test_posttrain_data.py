"""herd.posttrain.data: readers and their skip counts, loss masks token by token, pairs, packing."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from herd.errors import ConfigError, InputError
from herd.model.build import build_model
from herd.model.cross_entropy import IGNORE_INDEX
from herd.model.presets import get_preset
from herd.posttrain.data import (
    Conversation,
    Example,
    Preference,
    PreferenceGroup,
    Prompt,
    SkipCounts,
    SkippedRow,
    mask_special_tokens,
    next_token_targets,
    normalise_rating,
    pack,
    read_conversations,
    read_preferences,
    read_prompts,
    render_conversation,
    render_conversations,
    render_pair,
    render_pairs,
)
from herd.tokenizer.chat import ChatFormat

FORMATS = ["llama2", "llama3", "chatml"]

CONVERSATION = (
    {"role": "system", "content": "You answer in one line."},
    {"role": "user", "content": "What is 2 + 2?"},
    {"role": "assistant", "content": "It is 4."},
    {"role": "user", "content": "And the next one?"},
    {"role": "assistant", "content": "Five, as the parser said."},
)
# A prompt whose earlier assistant turn is context, not part of either compared response.
PROMPT = (
    {"role": "user", "content": "Name a colour."},
    {"role": "assistant", "content": "Blue."},
    {"role": "user", "content": "Another one?"},
)
PAIR = Preference(PROMPT, "Green, like the grass.", "Blue again.", "better", True)


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    """One line per row: strings and bytes are written as they are, anything else as JSON."""
    with path.open("wb") as f:
        for row in rows:
            line = (
                row if isinstance(row, bytes) else (row if isinstance(row, str) else json.dumps(row)).encode()
            )
            f.write(line + b"\n")
    return path


def runs(mask: list[int]) -> list[tuple[int, int]]:
    """``(start, end)`` of each run of ones in ``mask``."""
    out: list[tuple[int, int]] = []
    for i, m in enumerate(mask):
        if m and (not out or out[-1][1] != i):
            out.append((i, i + 1))
        elif m:
            out[-1] = (out[-1][0], i + 1)
    return out


# --- loss masks ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FORMATS)
def test_the_mask_covers_exactly_each_answer_and_its_end_of_turn(
    name: str, chat_formats: dict[str, ChatFormat]
) -> None:
    """Each trained run decodes to one answer and ends with a stop token; all the rest (system, user, headers) is 0."""
    fmt = chat_formats[name]
    tok = fmt.tokenizer
    example = render_conversation(fmt, Conversation(CONVERSATION), max_len=10_000)
    assert len(example.ids) == len(example.loss_mask)
    answers = [m["content"] for m in CONVERSATION if m["role"] == "assistant"]
    trained = runs(example.loss_mask)
    assert len(trained) == len(answers)
    for (start, end), answer in zip(trained, answers, strict=True):
        span = example.ids[start:end]
        assert span[-1] in tok.stop_ids
        assert not any(tok.is_special(t) for t in span[:-1])
        assert tok.decode(span[:-1]).strip() == answer
    untrained = [example.ids[a:b] for a, b in runs([1 - m for m in example.loss_mask])]
    for message in CONVERSATION:
        if message["role"] != "assistant":
            assert any(message["content"] in tok.decode(span) for span in untrained), message


def test_llama3_mask_token_by_token(chat_formats: dict[str, ChatFormat]) -> None:
    """The ids and mask built by hand from Llama 3's format (docs/spec.md §2)."""
    fmt = chat_formats["llama3"]
    tok = fmt.tokenizer
    ids, mask = [tok.special_id("<|begin_of_text|>")], [0]
    for message in CONVERSATION:
        head = [tok.special_id("<|start_header_id|>"), *tok.encode(message["role"])]
        head += [tok.special_id("<|end_header_id|>"), *tok.encode("\n\n")]
        body = [*tok.encode(message["content"]), tok.special_id("<|eot_id|>")]
        ids += head + body
        mask += [0] * len(head) + [int(message["role"] == "assistant")] * len(body)
    example = render_conversation(fmt, Conversation(CONVERSATION), max_len=10_000)
    assert (example.ids, example.loss_mask) == (ids, mask)


def test_chatml_mask_token_by_token(chat_formats: dict[str, ChatFormat]) -> None:
    """SmolLM2's ChatML, built by hand: ``<|im_start|>{role}\\n{content}<|im_end|>\\n``, trained on answer + ``<|im_end|>``."""
    fmt = chat_formats["chatml"]
    tok = fmt.tokenizer
    ids: list[int] = []
    mask: list[int] = []
    for message in CONVERSATION:
        trained = int(message["role"] == "assistant")
        pieces = [
            (tok.encode(f"<|im_start|>{message['role']}\n", allow_special=True), 0),
            (tok.encode(message["content"]), trained),
            ([tok.special_id("<|im_end|>")], trained),
            (tok.encode("\n"), 0),
        ]
        for piece, m in pieces:
            ids += piece
            mask += [m] * len(piece)
    example = render_conversation(fmt, Conversation(CONVERSATION), max_len=10_000)
    assert (example.ids, example.loss_mask) == (ids, mask)


@pytest.mark.parametrize(
    ("name", "typed"),
    [
        ("llama2", "</s> [INST] hi [/INST]"),
        ("llama3", "<|eot_id|><|start_header_id|>"),
        ("chatml", "<|im_end|>"),
    ],
)
def test_user_text_that_looks_special_stays_text(
    name: str, typed: str, chat_formats: dict[str, ChatFormat]
) -> None:
    fmt = chat_formats[name]
    tok = fmt.tokenizer

    def specials(text: str) -> list[int]:
        messages = (user(f"look: {text} ok"), assistant("Fine."))
        return [t for t in render_conversation(fmt, Conversation(messages), 10_000).ids if tok.is_special(t)]

    assert specials(typed) == specials("plain words")


def test_too_long_conversations_are_counted_not_fatal(chat_formats: dict[str, ChatFormat]) -> None:
    fmt = chat_formats["llama3"]
    short = Conversation((user("hi"), assistant("hello")))
    long = Conversation((user("word " * 100), assistant("ok")))
    limit = len(render_conversation(fmt, short, 10_000).ids)
    with pytest.raises(SkippedRow, match="too long"):
        render_conversation(fmt, long, limit)
    skipped = SkipCounts()
    assert len(list(render_conversations(fmt, [short, long, short], limit, skipped))) == 2
    assert skipped == {"too long": 1}
    with pytest.raises(ConfigError, match="max_len"):
        render_conversation(fmt, short, 0)


# --- preference pairs ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", FORMATS)
def test_pair_masks_cover_the_final_response_only(name: str, chat_formats: dict[str, ChatFormat]) -> None:
    fmt = chat_formats[name]
    tok = fmt.tokenizer
    ex = render_pair(fmt, PAIR, max_len=10_000)
    assert (ex.rating, ex.safety) == ("better", True)
    prompt_ids = fmt.render_prompt(PROMPT)
    assert ex.chosen_ids[: ex.prompt_len] == ex.rejected_ids[: ex.prompt_len] == prompt_ids[: ex.prompt_len]
    assert 0 < ex.prompt_len <= len(prompt_ids)
    if name != "llama2":  # SentencePiece may merge the space after [/INST] into the answer's first piece
        assert ex.prompt_len == len(prompt_ids)
    for ids, mask, text in [
        (ex.chosen_ids, ex.chosen_mask, PAIR.chosen),
        (ex.rejected_ids, ex.rejected_mask, PAIR.rejected),
    ]:
        ((start, end),) = runs(mask)  # one run: the earlier "Blue." answer is context
        assert start >= ex.prompt_len
        assert ids[end - 1] in tok.stop_ids
        assert tok.decode(ids[start : end - 1]).strip() == text


@pytest.mark.parametrize("name", FORMATS)
def test_mask_special_drops_only_the_end_of_turn_token(
    name: str, chat_formats: dict[str, ChatFormat]
) -> None:
    """Llama 3 §4.1.4: termination tokens out of the DPO loss; every content token stays."""
    fmt = chat_formats[name]
    plain = render_pair(fmt, PAIR, max_len=10_000)
    lean = render_pair(fmt, PAIR, max_len=10_000, mask_special=True)
    assert lean.chosen_ids == plain.chosen_ids and lean.prompt_len == plain.prompt_len
    for ids, full, masked in [
        (plain.chosen_ids, plain.chosen_mask, lean.chosen_mask),
        (plain.rejected_ids, plain.rejected_mask, lean.rejected_mask),
    ]:
        ((_start, end),) = runs(full)
        assert masked == [*full[: end - 1], 0, *full[end:]]
        assert ids[end - 1] in fmt.tokenizer.stop_ids


def test_llama3_dpo_mask_is_the_response_content(chat_formats: dict[str, ChatFormat]) -> None:
    """Token by token: the trained ids are the encoded answer, then ``<|eot_id|>`` unless special tokens are masked."""
    fmt = chat_formats["llama3"]
    tok = fmt.tokenizer
    for mask_special, end in [(False, [tok.special_id("<|eot_id|>")]), (True, [])]:
        ex = render_pair(fmt, PAIR, max_len=10_000, mask_special=mask_special)
        assert [t for t, m in zip(ex.chosen_ids, ex.chosen_mask, strict=True) if m] == tok.encode(
            PAIR.chosen
        ) + end
        assert [t for t, m in zip(ex.rejected_ids, ex.rejected_mask, strict=True) if m] == (
            tok.encode(PAIR.rejected) + end
        )


def test_mask_special_tokens_by_hand(chat_formats: dict[str, ChatFormat]) -> None:
    tok = chat_formats["llama3"].tokenizer
    eot, bos = tok.special_id("<|eot_id|>"), tok.special_id("<|begin_of_text|>")
    hello = tok.encode("hello")
    assert mask_special_tokens(tok, [bos, *hello, eot], [1] * (len(hello) + 2)) == [0] + [1] * len(hello) + [
        0
    ]


def test_render_pairs_counts_too_long(chat_formats: dict[str, ChatFormat]) -> None:
    fmt = chat_formats["chatml"]
    short = Preference((user("q"),), "yes", "no")
    long = Preference((user("q"),), "yes " * 50, "no")
    limit = len(render_pair(fmt, short, 10_000).chosen_ids)
    skipped = SkipCounts()
    assert [p.chosen_ids for p in render_pairs(fmt, [long, short], limit, skipped)] == [
        render_pair(fmt, short, limit).chosen_ids
    ]
    assert skipped == {"too long": 1}


# --- readers -------------------------------------------------------------------------------------

CONVERSATION_ROWS: list[Any] = [
    {"messages": [user("hi"), assistant("hello")]},
    {"system": "Be brief.", "messages": [user("2+2?"), assistant("4")]},
    "",  # blank lines are not rows
    "{not json",
    "[1, 2]",
    b"\xff\xfe{}",
    {"text": "a pretraining document"},
    {"messages": []},
    {"messages": [{"role": "robot", "content": "beep"}, assistant("hi")]},
    {"messages": [user("   "), assistant("hi")]},
    {"messages": [{"role": "user"}, assistant("hi")]},
    {"messages": [user("hi"), assistant("hello"), user("bye")]},
    {"messages": [user("hi"), user("again"), assistant("hello")]},
    {
        "system": "Be brief.",
        "messages": [{"role": "system", "content": "Be long."}, user("q"), assistant("a")],
    },
]
CONVERSATION_SKIPS = {
    "invalid JSON": 1,
    "not an object": 1,
    "invalid UTF-8": 1,
    "'messages' missing": 1,
    "'messages' not a non-empty list": 1,
    "unknown role": 1,
    "'content' empty": 1,
    "'content' missing": 1,
    "last message not from the assistant": 1,
    "turns out of order": 1,
    "system prompt given twice": 1,
}

PREFERENCE_ROWS: list[Any] = [
    {"prompt": "q1", "chosen": "a", "rejected": "b", "rating": "significantly better", "safety": True},
    {
        "messages": [user("q2"), assistant("x"), user("more")],
        "chosen": "a",
        "rejected": "b",
        "rating": "Slightly-Better",
    },
    {"prompt": "q3", "system": "Be kind.", "responses": ["edited", "chosen", "rejected"]},
    {"prompt": "q4", "chosen": "a", "rejected": "b", "rating": "unsure", "safety": False},
    {"prompt": "q", "rejected": "b"},
    {"prompt": "q", "chosen": "", "rejected": "b"},
    {"prompt": "q", "chosen": "a"},
    {"prompt": "q", "chosen": "a", "rejected": " a "},
    {"prompt": "q", "chosen": "a", "rejected": "b", "rating": "much better"},
    {"chosen": "a", "rejected": "b"},
    {"prompt": "q", "messages": [user("q")], "chosen": "a", "rejected": "b"},
    {"prompt": "q", "chosen": "a", "rejected": "b", "safety": "yes"},
    {"messages": [user("q"), assistant("a")], "chosen": "a", "rejected": "b"},
    {"prompt": "q", "responses": ["only one"]},
    {"prompt": "q", "responses": ["a", "b", "a"]},
    {"prompt": "q", "responses": ["a", "b"], "rating": "better"},
    {"prompt": "q", "responses": ["a", "b"], "chosen": "a"},
]
PREFERENCE_SKIPS = {
    "'chosen' missing": 1,
    "'chosen' empty": 1,
    "'rejected' missing": 1,
    "chosen equals rejected": 1,
    "unknown rating": 1,
    "'prompt' missing": 1,
    "both 'prompt' and 'messages'": 1,
    "'safety' not a boolean": 1,
    "last message not from the user": 1,
    "'responses' not a list of two or more": 1,
    "repeated response": 1,
    "'rating' on a ranked row": 1,
    "both 'responses' and 'chosen'/'rejected'": 1,
}


def test_conversations_and_bad_rows_by_reason(tmp_path: Path) -> None:
    skipped = SkipCounts()
    got = list(read_conversations(write_jsonl(tmp_path / "sft.jsonl", CONVERSATION_ROWS), skipped))
    assert got == [
        Conversation((user("hi"), assistant("hello"))),
        Conversation(({"role": "system", "content": "Be brief."}, user("2+2?"), assistant("4"))),
    ]
    assert skipped == CONVERSATION_SKIPS


def test_preferences_and_bad_rows_by_reason(tmp_path: Path) -> None:
    skipped = SkipCounts()
    got = list(read_preferences(write_jsonl(tmp_path / "prefs.jsonl", PREFERENCE_ROWS), skipped))
    assert got == [
        PreferenceGroup((user("q1"),), ("a", "b"), "significantly_better", True),
        PreferenceGroup((user("q2"), assistant("x"), user("more")), ("a", "b"), "slightly_better"),
        PreferenceGroup(
            ({"role": "system", "content": "Be kind."}, user("q3")), ("edited", "chosen", "rejected")
        ),
        PreferenceGroup((user("q4"),), ("a", "b"), "negligibly_better", False),
    ]
    assert skipped == PREFERENCE_SKIPS


def test_prompts_for_sampling_come_from_any_prompt_row(tmp_path: Path) -> None:
    """Rejection sampling and PPO read prompts alone: a preference file serves, its other keys unused."""
    rows = [
        {"prompt": "q1", "source": "chitchat"},
        {"messages": [user("q2"), assistant("x"), user("more")], "chosen": "a", "rejected": "b"},
        {"system": "Be kind.", "prompt": "q3", "safety": True},
        {"messages": [user("q"), assistant("a")]},
        {"source": "nothing"},
        {"prompt": "q4", "safety": "yes"},
    ]
    skipped = SkipCounts()
    assert list(read_prompts(write_jsonl(tmp_path / "prompts.jsonl", rows), skipped)) == [
        Prompt((user("q1"),)),
        Prompt((user("q2"), assistant("x"), user("more"))),
        Prompt(({"role": "system", "content": "Be kind."}, user("q3")), safety=True),
    ]
    assert skipped == {
        "last message not from the user": 1,
        "'prompt' missing": 1,
        "'safety' not a boolean": 1,
    }


def test_skipped_rows_are_logged_once_per_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_jsonl(tmp_path / "sft.jsonl", CONVERSATION_ROWS)
    with caplog.at_level("WARNING", logger="herd.posttrain"):
        list(read_conversations(path))
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: 2 rows read, {SkipCounts(CONVERSATION_SKIPS)}"
    ]


def test_a_ranked_row_is_every_ordered_pair_of_one_prompt() -> None:
    """Llama 3 §4.2.1: edited > chosen > rejected gives three pairs, kept together for one scoring pass."""
    group = PreferenceGroup((user("q"),), ("edited", "chosen", "rejected"), safety=True)
    assert group.pairs == [(0, 1), (0, 2), (1, 2)]
    assert group.preferences() == [
        Preference((user("q"),), "edited", "chosen", None, True),
        Preference((user("q"),), "edited", "rejected", None, True),
        Preference((user("q"),), "chosen", "rejected", None, True),
    ]


@pytest.mark.parametrize(
    ("given", "rating"),
    [
        ("significantly_better", "significantly_better"),
        ("Significantly better", "significantly_better"),
        (" slightly-better ", "slightly_better"),
        ("better", "better"),
        ("Negligibly Better", "negligibly_better"),
        ("unsure", "negligibly_better"),
        (None, None),
    ],
)
def test_ratings_are_normalised(given: str | None, rating: str | None) -> None:
    assert normalise_rating(given) == rating


@pytest.mark.parametrize("given", ["much better", "", "betterer", 3, True])
def test_unknown_ratings_are_skipped(given: object) -> None:
    with pytest.raises(SkippedRow, match="unknown rating"):
        normalise_rating(given)


def test_a_file_without_usable_rows_names_itself_and_the_reasons(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "prefs.jsonl", [{"prompt": "q", "rejected": "b"}, "{", {"prompt": "q"}])
    with pytest.raises(InputError) as caught:
        list(read_preferences(path))
    assert str(caught.value) == f"{path}: no usable rows: 3 skipped (2 'chosen' missing, 1 invalid JSON)"


def test_conversations_read_as_preferences_fail_on_chosen(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "sft.jsonl", CONVERSATION_ROWS[:2])
    with pytest.raises(InputError, match=r"sft\.jsonl: no usable rows: 2 skipped \(2 'chosen' missing\)$"):
        list(read_preferences(path))


def test_files_that_are_not_data(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.jsonl: no rows"):
        list(read_conversations(tmp_path / "empty.jsonl"))
    (tmp_path / "image.jsonl").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    with pytest.raises(InputError, match=r"image\.jsonl: no usable rows"):
        list(read_conversations(tmp_path / "image.jsonl"))
    (tmp_path / "broken.parquet").write_bytes(b"PAR1" + b"\0" * 64)
    with pytest.raises(InputError, match=r"broken\.parquet: unreadable Parquet file"):
        list(read_conversations(tmp_path / "broken.parquet"))


def test_compressed_jsonl(tmp_path: Path) -> None:
    plain = write_jsonl(tmp_path / "sft.jsonl", CONVERSATION_ROWS)
    packed = tmp_path / "sft.jsonl.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert list(read_conversations(packed)) == list(read_conversations(plain))


def _parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    schema = pa.schema(
        [
            ("prompt", pa.string()),
            ("system", pa.string()),
            ("messages", pa.list_(message)),
            ("chosen", pa.string()),
            ("rejected", pa.string()),
            ("responses", pa.list_(pa.string())),
            ("rating", pa.string()),
            ("safety", pa.bool_()),
        ]
    )
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path, row_group_size=3)
    return path


@pytest.mark.parametrize("kind", ["conversations", "preferences"])
def test_parquet_reads_like_jsonl(kind: str, tmp_path: Path) -> None:
    """The same rows (those a typed table can hold) give the same records and skip counts."""
    read = read_conversations if kind == "conversations" else read_preferences
    rows = CONVERSATION_ROWS if kind == "conversations" else PREFERENCE_ROWS
    typed = [
        r
        for r in rows
        if isinstance(r, dict)
        and "text" not in r
        and not (isinstance(r.get("safety"), str))
        and all(set(m) == {"role", "content"} for m in r.get("messages", []))
    ]
    from_jsonl, from_parquet = SkipCounts(), SkipCounts()
    expected = list(read(write_jsonl(tmp_path / "rows.jsonl", typed), from_jsonl))
    assert list(read(_parquet(tmp_path / "rows.parquet", typed), from_parquet)) == expected
    assert from_parquet == from_jsonl
    assert len(expected) >= 2 and from_jsonl.total() >= 5


def test_skip_counts_read_as_a_sentence() -> None:
    counts = SkipCounts({"invalid JSON": 4, "'chosen' missing": 8, "unknown role": 4})
    assert str(counts) == "16 skipped (8 'chosen' missing, 4 invalid JSON, 4 unknown role)"


# --- packing -------------------------------------------------------------------------------------


def test_next_token_targets_by_hand() -> None:
    assert next_token_targets([5, 6, 7, 8, 9], [0, 0, 1, 1, 0]) == [
        IGNORE_INDEX,
        7,
        8,
        IGNORE_INDEX,
        IGNORE_INDEX,
    ]


def _examples(n: int, vocab: int, seed: int, longest: int = 30) -> list[Example]:
    """Random examples: a prompt (mask 0) then an answer (mask 1), as a chat format would give."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        prompt, answer = rng.randint(2, longest // 2), rng.randint(1, longest // 2)
        ids = [rng.randrange(vocab) for _ in range(prompt + answer)]
        out.append(Example(ids, [0] * prompt + [1] * answer))
    return out


def _documents(sequence: Any) -> list[list[int]]:
    """The ids of each document of a packed sequence, in order; padding (a document without targets) left out."""
    ids, docs, targets = sequence.inputs.tolist(), sequence.document_ids.tolist(), sequence.targets.tolist()
    assert docs == sorted(docs)
    out = []
    for doc in range(max(docs) + 1):
        positions = [i for i, d in enumerate(docs) if d == doc]
        if any(targets[i] != IGNORE_INDEX for i in positions):
            out.append([ids[i] for i in positions])
    return out


def test_pack_keeps_every_example_whole_once() -> None:
    examples = [*_examples(40, 1000, seed=1), Example(list(range(70)), [1] * 70)]
    skipped = SkipCounts()
    packed = pack(examples, seq_len=64, seed=3, pad_id=0, skipped=skipped)
    assert skipped == {"too long": 1}
    assert all(s.inputs.shape == s.targets.shape == s.document_ids.shape == (64,) for s in packed)
    found = sorted(tuple(doc) for s in packed for doc in _documents(s))
    assert found == sorted(tuple(e.ids) for e in examples[:-1])
    by_ids = {tuple(e.ids): e for e in examples}
    for s in packed:
        targets = s.targets.tolist()
        docs = s.document_ids.tolist()
        start = 0
        for doc in _documents(s):
            example = by_ids[tuple(doc)]
            assert targets[start : start + len(doc)] == next_token_targets(example.ids, example.loss_mask)
            start += len(doc)
        assert set(targets[start:]) <= {IGNORE_INDEX} and len(set(docs[start:])) <= 1
    assert sum(len(e.ids) for e in examples[:-1]) <= 64 * len(packed)


def test_pack_is_deterministic_given_the_seed() -> None:
    examples = _examples(30, 1000, seed=2)

    def order(seed: int) -> list[list[int]]:
        return [doc for s in pack(examples, seq_len=48, seed=seed) for doc in _documents(s)]

    assert order(0) == order(0)
    assert order(0) != order(1)
    with pytest.raises(ConfigError, match="seq_len"):
        pack(examples, seq_len=1)


def test_a_packed_example_computes_what_it_computes_alone() -> None:
    """Logits and per-token losses inside a packed batch equal the example run alone (fp32, atol 1e-5)."""
    config = get_preset("llama3-tiny").replace(n_layers=2)
    model = build_model(config, seed=7).eval()
    examples = _examples(9, config.vocab_size, seed=5)
    packed = pack(examples, seq_len=64, seed=11)
    assert len(packed) >= 2 and any(len(_documents(s)) >= 3 for s in packed)
    inputs = torch.stack([s.inputs for s in packed])
    targets = torch.stack([s.targets for s in packed])
    documents = torch.stack([s.document_ids for s in packed])
    by_ids = {tuple(e.ids): e for e in examples}
    with torch.no_grad():
        logits = model(inputs, document_ids=documents)
        losses = F.cross_entropy(
            logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="none"
        ).view(targets.shape)
        alone_total = torch.zeros(())
        for row, sequence in enumerate(packed):
            start = 0
            for doc in _documents(sequence):
                example = by_ids[tuple(doc)]
                ids = torch.tensor([example.ids])
                own_targets = torch.tensor([next_token_targets(example.ids, example.loss_mask)])
                own_logits = model(ids)
                own_losses = F.cross_entropy(
                    own_logits[0], own_targets[0], ignore_index=IGNORE_INDEX, reduction="none"
                )
                end = start + len(doc)
                torch.testing.assert_close(logits[row, start:end], own_logits[0], atol=1e-5, rtol=0)
                torch.testing.assert_close(losses[row, start:end], own_losses, atol=1e-5, rtol=0)
                alone_total += model(ids, targets=own_targets)
                start = end
        packed_total = model(inputs, document_ids=documents, targets=targets)
    torch.testing.assert_close(packed_total, alone_total, atol=1e-4, rtol=1e-6)
