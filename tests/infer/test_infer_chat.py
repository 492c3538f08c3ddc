"""Chat sessions in each family's format: rendering, stop tokens, history trimming, prefix reuse."""

from __future__ import annotations

from pathlib import Path

import pytest
from infer_helpers import tiny_model

from herd.errors import HerdError
from herd.infer import ChatSession, Engine
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
