"""Llama 3: herd's tiktoken engine against Meta's expected ids, raw tiktoken and ``tokenizers``."""

from __future__ import annotations

from pathlib import Path

import pytest
import tiktoken
import tokenizers
from tiktoken.load import load_tiktoken_bpe

from herd.tokenizer import HFTokenizer, TiktokenTokenizer, load_tokenizer
from herd.tokenizer.chat import Llama3Chat
from herd.tokenizer.tiktoken_engine import CHUNK_CHARS, LLAMA3_PATTERN, llama3_special_tokens

# Expected ids from Meta's own tokenizer test (llama-models, llama3/tests/api/test_tokenizer.py).
META_SENTENCE = "This is a test sentence."
META_SENTENCE_IDS = [128000, 2028, 374, 264, 1296, 11914, 13, 128001]
META_USER_MESSAGE = [128006, 882, 128007, 271, 2028, 374, 264, 1296, 11914, 13, 128009]
META_DIALOG_PROMPT = [
    *[128000, 128006, 9125, 128007, 271, 2028, 374, 264, 1296, 11914, 13, 128009],
    *[128006, 882, 128007, 271, 2028, 374, 264, 2077, 13, 128009],
    *[128006, 78191, 128007, 271],
]

# Texts on which Meta's tokenizer.json (run by `tokenizers`) and tiktoken disagree; tiktoken is the
# reference. Empty: none found on this corpus. A new disagreement fails the test until recorded here.
KNOWN_DISAGREEMENTS: dict[str, str] = {}


@pytest.fixture(scope="module")
def raw_tiktoken(llama3_model: Path) -> tiktoken.Encoding:
    ranks = load_tiktoken_bpe(str(llama3_model))
    return tiktoken.Encoding("llama3", pat_str=LLAMA3_PATTERN, mergeable_ranks=ranks, special_tokens={})


@pytest.fixture(scope="module")
def hf_json(llama3_tokenizer_dir: Path) -> tokenizers.Tokenizer:
    return tokenizers.Tokenizer.from_file(str(llama3_tokenizer_dir / "tokenizer.json"))


def test_meta_reference_ids(llama3: TiktokenTokenizer) -> None:
    assert llama3.vocab_size == 128_256
    assert llama3.special_tokens["<|begin_of_text|>"] == 128000
    assert llama3.encode(META_SENTENCE, bos=True, eos=True) == META_SENTENCE_IDS
    assert llama3.decode(META_SENTENCE_IDS) == "<|begin_of_text|>This is a test sentence.<|end_of_text|>"


def test_meta_reference_chat(llama3: TiktokenTokenizer) -> None:
    chat = Llama3Chat(llama3)
    user = chat.render([{"role": "user", "content": META_SENTENCE}])
    assert user.ids == [128000, *META_USER_MESSAGE]
    dialog = [
        {"role": "system", "content": META_SENTENCE},
        {"role": "user", "content": "This is a response."},
    ]
    assert chat.render_prompt(dialog) == META_DIALOG_PROMPT


def test_spec_special_tokens() -> None:
    """docs/spec.md §2 ids of the named specials, and the 3.0 table where 3.1's new names are reserved slots."""
    t31, t30 = llama3_special_tokens(128_000, "3.1"), llama3_special_tokens(128_000, "3.0")
    for name, token_id in {
        "<|begin_of_text|>": 128000,
        "<|end_of_text|>": 128001,
        "<|start_header_id|>": 128006,
        "<|end_header_id|>": 128007,
        "<|eot_id|>": 128009,
    }.items():
        assert t31[name] == t30[name] == token_id
    assert (t31["<|finetune_right_pad_id|>"], t31["<|eom_id|>"], t31["<|python_tag|>"]) == (
        128004,
        128008,
        128010,
    )
    assert "<|eom_id|>" not in t30 and t30["<|reserved_special_token_4|>"] == 128008
    assert len(t31) == len(t30) == 256 and max(t31.values()) == 128255


def test_same_ids_as_tokenizers_json(
    llama3: TiktokenTokenizer, hf_json: tokenizers.Tokenizer, corpus: list[str]
) -> None:
    hf_json.encode_special_tokens = True
    disagreements = {}
    for text in corpus:
        ours, theirs = llama3.encode(text), hf_json.encode(text, add_special_tokens=False).ids
        if ours != theirs:
            disagreements[text] = f"tiktoken {ours[:8]}… tokenizers {theirs[:8]}…"
    assert set(disagreements) == set(KNOWN_DISAGREEMENTS), disagreements


def test_same_ids_as_raw_tiktoken_and_hf_engine(
    llama3: TiktokenTokenizer, raw_tiktoken: tiktoken.Encoding, llama3_tokenizer_dir: Path, corpus: list[str]
) -> None:
    hf = load_tokenizer(llama3_tokenizer_dir / "tokenizer.json")
    assert isinstance(hf, HFTokenizer)
    batch = llama3.encode_batch(corpus)
    assert batch == [raw_tiktoken.encode_ordinary(t) for t in corpus]
    assert hf.encode_batch(corpus) == batch
    for token_id in (0, 220, 2028, 78191, 127999, 128000, 128006, 128009):
        assert llama3.id_to_piece(token_id) == hf.id_to_piece(token_id)


def test_long_text_is_split_without_changing_ids(
    llama3: TiktokenTokenizer, raw_tiktoken: tiktoken.Encoding, corpus: list[str]
) -> None:
    text = "\n\n".join(corpus) * 2
    assert len(text) > 3 * CHUNK_CHARS
    assert llama3.encode(text) == raw_tiktoken.encode_ordinary(text)
    assert llama3.encode_batch([text, "x"])[0] == raw_tiktoken.encode_ordinary(text)


def test_huge_whitespace_run_does_not_crash(llama3: TiktokenTokenizer) -> None:
    """tiktoken's regex overflows its stack on ~1M spaces (a Rust panic); herd splits the run."""
    text = "a" + " " * 1_000_000 + "b"
    ids = llama3.encode(text)
    assert llama3.decode(ids) == text


def test_special_strings_are_text_unless_allowed(
    llama3: TiktokenTokenizer, raw_tiktoken: tiktoken.Encoding
) -> None:
    text = "hi <|eot_id|> <|begin_of_text|>"
    plain = llama3.encode(text)
    assert plain == raw_tiktoken.encode_ordinary(text)
    assert not any(llama3.is_special(i) for i in plain)
    allowed = llama3.encode(text, allow_special=True)
    assert 128009 in allowed and 128000 in allowed
    assert llama3.decode(plain) == llama3.decode(allowed) == text


def test_stop_ids(llama3: TiktokenTokenizer) -> None:
    assert llama3.stop_ids == {128001, 128008, 128009}
    assert (llama3.bos_id, llama3.eos_id) == (128000, 128001)


def test_config_dir_takes_its_special_table(llama3_tokenizer_dir: Path) -> None:
    """The directory's tokenizer_config.json names 128005 <|step_id|> (Llama 3.2); the config wins."""
    tokenizer = load_tokenizer(llama3_tokenizer_dir)
    assert isinstance(tokenizer, TiktokenTokenizer)
    assert tokenizer.special_tokens["<|step_id|>"] == 128005
    assert tokenizer.encode(META_SENTENCE, bos=True, eos=True) == META_SENTENCE_IDS
