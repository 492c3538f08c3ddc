"""Chat in each family's format: sessions (rendering, stop tokens, history trimming, prefix reuse) and
``herd.chat``, one reply to a list of messages (alone or in a batch)."""

from __future__ import annotations

from pathlib import Path

import pytest
from infer_helpers import tiny_model

import herd
from herd.errors import HerdError
from herd.infer import ChatSession, Engine, chat
from herd.infer.byte_tokenizer import ByteTokenizer
from herd.model.presets import get_preset
from herd.tokenizer import load_tokenizer


def test_llama3_session_renders_headers_and_stops_at_eot(llama3_tokenizer_dir: Path) -> None:
    tokenizer = load_tokenizer(llama3_tokenizer_dir / "tokenizer.model")
    config = get_preset("llama3-tiny").replace(vocab_size=tokenizer.vocab_size, dim=64, n_layers=2)
    session = ChatSession(Engine(tiny_model(config)), tokenizer, system="Be brief.", max_new_tokens=8)
    _, ids = session.fit([*session.messages, {"role": "user", "content": "Hi"}])
    assert ids[0] == tokenizer.special_id("<|begin_of_text|>")
    assert tokenizer.decode(ids[-4:]) == "<|start_header_id|>assistant<|end_header_id|>\n\n"
    assert tokenizer.special_id("<|eot_id|>") in tokenizer.stop_ids
    reply = session.send("Hi")
    assert reply.finish_reason in ("stop", "length") and len(reply.token_ids) <= 8
    assert [m["role"] for m in session.messages] == ["system", "user", "assistant"]


def test_history_is_trimmed_oldest_first_and_system_kept() -> None:
    engine = Engine(tiny_model("llama2-tiny"))  # context 256, byte-level: one token per byte
    session = ChatSession(engine, ByteTokenizer(), system="sys", max_new_tokens=16, style="llama2")
    for i in range(8):
        session.send(f"turn {i} " + "q" * 40)
    contents = [m["content"] for m in session.messages]
    assert contents[0] == "sys" and contents[-2].startswith("turn 7")
    assert not any(c.startswith("turn 0") for c in contents)
    _, ids = session.fit(session.messages[:-1])
    assert len(ids) + session.reply_room <= engine.context
    with pytest.raises(HerdError, match="does not fit the context"):
        session.send("w" * 300)
    session.reset()
    assert session.messages == [{"role": "system", "content": "sys"}]


def test_second_turn_with_reused_cache_equals_a_fresh_engine() -> None:
    model = tiny_model("llama2-tiny", std=0.1)
    session = ChatSession(Engine(model), ByteTokenizer(), max_new_tokens=6, style="llama2")
    session.send("first question")
    history = list(session.messages)
    second = session.send("second question")
    fresh = ChatSession(Engine(model), ByteTokenizer(), max_new_tokens=6, style="llama2")
    fresh.messages = history
    assert fresh.send("second question").token_ids == second.token_ids


QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
CONVERSATIONS = [
    [{"role": "user", "content": "first question"}],
    [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "a second, longer question"},
    ],
]


@pytest.mark.slow
def test_chat_smollm2_answers_in_its_chat_format(smollm2: tuple) -> None:
    model, tokenizer = smollm2
    reply = herd.chat(model, tokenizer, QUESTION, max_new_tokens=32, temperature=0)
    assert reply == "The capital of France is Paris."  # ended by <|im_end|>, which is not part of it
    assert herd.chat is chat


def test_chat_is_a_session_turn_and_a_batch_is_one_by_one() -> None:
    model, tokenizer = tiny_model("llama2-tiny", std=0.1), ByteTokenizer()
    args = {"max_new_tokens": 6, "chat_format": "llama2"}
    session = ChatSession(Engine(model), tokenizer, max_new_tokens=6, style="llama2")
    session.messages = CONVERSATIONS[1][:-1]
    alone = [chat(model, tokenizer, c, **args) for c in CONVERSATIONS]
    assert alone[1] == session.send(CONVERSATIONS[1][-1]["content"]).text
    assert chat(model, tokenizer, CONVERSATIONS, **args) == alone
    sampled = chat(model, tokenizer, CONVERSATIONS, temperature=1.0, seed=3, **args)
    assert sampled[1] == chat(model, tokenizer, CONVERSATIONS[1], temperature=1.0, seed=4, **args)


def test_chat_refuses_bad_conversations() -> None:
    model, tokenizer = tiny_model("llama2-tiny"), ByteTokenizer()  # context 256, one token per byte
    assistant_first = [{"role": "assistant", "content": "hi"}]
    with pytest.raises(HerdError, match=r"^message 0: expected a user turn"):
        chat(model, tokenizer, assistant_first, chat_format="llama2")
    with pytest.raises(HerdError, match=r"^conversation 1: message 0: expected a user turn"):
        chat(model, tokenizer, [QUESTION, assistant_first], chat_format="llama2")
    with pytest.raises(HerdError, match=r"^empty conversation"):
        chat(model, tokenizer, [], chat_format="llama2")
    long = [{"role": "user", "content": "x" * 300}]
    with pytest.raises(
        HerdError, match=r"^the conversation renders to 316 tokens but the model's context is 256"
    ):
        chat(model, tokenizer, long, chat_format="llama2")  # BOS, "[INST] " (7), 300 x's, " [/INST]" (8)
    with pytest.raises(HerdError, match="max_new_tokens must be a positive integer"):
        chat(model, tokenizer, QUESTION, max_new_tokens=0)
