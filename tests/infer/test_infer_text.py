"""Streaming text: multi-token characters, leading spaces, stop strings; the byte-level fallback tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest

from herd.infer.byte_tokenizer import ByteTokenizer
from herd.infer.detokenize import TextStream
from herd.tokenizer import Tokenizer, load_tokenizer

TEXT = " Llamas 🦙 live in the Andes — 日本語, naïve café.\n\nEnd."


@pytest.fixture(scope="module")
def tokenizers(smollm2_gguf: Path, llama3_tokenizer_dir: Path) -> list[Tokenizer]:
    return [
        load_tokenizer(smollm2_gguf),
        load_tokenizer(llama3_tokenizer_dir / "tokenizer.model"),
        ByteTokenizer(),
    ]


def stream_all(
    tokenizer: Tokenizer, prompt: list[int], ids: list[int], stop: list[str]
) -> tuple[list[str], TextStream]:
    stream = TextStream(tokenizer, prompt, stop)
    deltas = []
    for token in ids:
        deltas.append(stream.push(token))
        if stream.stopped:
            break
    deltas.append(stream.finish())
    return deltas, stream


def test_streamed_pieces_join_to_the_decoded_text(tokenizers: list[Tokenizer]) -> None:
    for tokenizer in tokenizers:
        prompt = tokenizer.encode("Where do llamas live?")
        ids = tokenizer.encode(TEXT)
        deltas, stream = stream_all(tokenizer, prompt, ids, [])
        assert "".join(deltas) == stream.text == TEXT, tokenizer
        assert all("\ufffd" not in d for d in deltas), "no half characters are emitted"


def test_stop_strings_are_cut_even_across_tokens(tokenizers: list[Tokenizer]) -> None:
    for tokenizer in tokenizers:
        ids = tokenizer.encode(TEXT)
        for stop, expected in (("Andes", " Llamas 🦙 live in the "), ("\n\n", TEXT.split("\n\n")[0])):
            deltas, stream = stream_all(tokenizer, [], ids, ["never", stop])
            assert stream.stopped and stream.text == "".join(deltas) == expected


def test_text_that_only_resembles_a_stop_string_is_released(byte_tokenizer: ByteTokenizer) -> None:
    stream = TextStream(byte_tokenizer, [], ["stop!"])
    assert [stream.push(t) for t in b"a st"] == ["a", " ", "", ""]  # "st" could start "stop!"
    assert stream.push(ord("x")) == "stx"
    assert [stream.push(t) for t in b" sto"] == [" ", "", "", ""]
    assert stream.finish() == "sto" and stream.text == "a stx sto" and not stream.stopped


def test_byte_tokenizer_round_trip_and_specials(byte_tokenizer: ByteTokenizer) -> None:
    text = "héllo 🦙 <s>"
    ids = byte_tokenizer.encode(text, bos=True, eos=True)
    assert ids[0] == 256 and ids[-1] == 257 and len(ids) == len(text.encode()) + 2
    assert byte_tokenizer.decode(ids) == "<s>" + text + "</s>"
    assert byte_tokenizer.encode("<s>", allow_special=True) == [256]
    assert byte_tokenizer.stop_ids == frozenset({257})
    assert byte_tokenizer.id_to_piece(65) == "<0x41>"
