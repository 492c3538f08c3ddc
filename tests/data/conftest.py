"""Fixtures for the data pipeline tests: document files and a tiny stand-in tokenizer."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from herd.data.document import Document

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


class StandInTokenizer:
    """The ``herd.tokenizer`` interface (encode, vocab_size, eos_id): a byte-level BPE trained here."""

    def __init__(self) -> None:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        self._tok = Tokenizer(models.BPE())
        self._tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        self._tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=400,
            special_tokens=["<eos>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        self._tok.train_from_iterator(["the quick brown fox jumps over the lazy dog"] * 20, trainer)

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    @property
    def eos_id(self) -> int:
        return self._tok.token_to_id("<eos>")

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids + ([self.eos_id] if eos else [])


@pytest.fixture(scope="session")
def stand_in_tokenizer() -> StandInTokenizer:
    """A tiny tokenizer with herd's interface."""
    return StandInTokenizer()
