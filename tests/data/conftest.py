"""Fixtures for the data pipeline tests: document files and a tiny stand-in tokenizer."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from herd.data.document import Document
from herd.tokenizer.hf_engine import HFTokenizer

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "data" / "samples"


def doc(text: str, id: str = "d", **metadata: object) -> Document:
    """A document with ``text`` (tests build many)."""
    return Document(text=text, id=id, source="test", metadata=dict(metadata))


def warc_record(url: str, html: bytes, declared: int | None = None) -> bytes:
    """One WARC ``response`` record serving ``html`` at ``url`` (``declared``: a wrong Content-Length)."""
    http = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n" + html
    length = declared if declared is not None else len(http)
    head = (
        f"WARC/1.0\r\nWARC-Type: response\r\nWARC-Target-URI: {url}\r\nWARC-Date: 2024-01-01T00:00:00Z\r\n"
        f"WARC-Record-ID: <urn:uuid:{abs(hash(url)):032x}>\r\nContent-Length: {length}\r\n\r\n"
    )
    return head.encode() + http + b"\r\n\r\n"


@pytest.fixture
def write_jsonl(tmp_path: Path) -> Callable[[str, list[dict]], Path]:
    """Write records as a JSONL file under tmp_path and return its path."""

    def write(name: str, records: list[dict]) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
        return path

    return write


def _hf(backend: object, eos: str, source: str) -> HFTokenizer:
    """A herd tokenizer over a ``tokenizers`` model whose end of text is the special token ``eos``."""
    from tokenizers import AddedToken

    backend.add_special_tokens([AddedToken(eos, special=True)])  # type: ignore[attr-defined]
    return HFTokenizer(backend, source=source, eos_id=backend.token_to_id(eos))  # type: ignore[arg-type, attr-defined]


def stand_in_tokenizer() -> HFTokenizer:
    """A herd tokenizer (saved and loaded like a real one): a byte-level BPE of 400 ids trained here."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(["the quick brown fox jumps over the lazy dog"] * 20, trainer)
    return _hf(tok, "<eos>", "stand-in BPE")


def byte_tokenizer() -> HFTokenizer:
    """Token ids are the UTF-8 bytes, then 256 as end of text: expected shards are written by hand."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    tok = Tokenizer(models.BPE(vocab=_byte_vocab(), merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    return _hf(tok, "<eos>", "bytes")


def _byte_vocab() -> dict[str, int]:
    """GPT-2's byte-to-character table (what ByteLevel maps each byte to) as a vocabulary: byte b is id b."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[chr(b)] = b
        else:
            table[chr(256 + extra)] = b
            extra += 1
    return table


def word_tokenizer(words: list[str], vocab_size: int) -> HFTokenizer:
    """One token a word: ``words[i]`` is id i (unknown words id 0); ``vocab_size - 1`` is end of text."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {w: i for i, w in enumerate(words)} | {
        f"<unused{i}>": i for i in range(len(words), vocab_size - 1)
    }
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=words[0]))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return _hf(tok, "<eos>", "words")
