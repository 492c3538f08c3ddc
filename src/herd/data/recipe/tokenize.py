"""Packed token shards in the trainer's ``herd-tokens-v1`` format (Llama 3 §3.4.1 document masking).

Each source's kept documents are tokenized with an end-of-text token after
every document and packed into flat ``uint16``/``uint32`` ``.bin`` files with
an ``.idx.npy`` of document start offsets, so the trainer can mask attention
across document boundaries. A source is passed over ``epochs`` times (Llama 1
§2.1's table): every document once per whole epoch, plus a fixed
pseudo-random fraction of them (chosen by a hash of the document id and the
seed) for the fractional part.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from herd.data.document import Document
from herd.data.io.writer import write_atomically

SHARD_SUFFIXES = (".bin", ".idx.npy")


class TextTokenizer(Protocol):
    """What herd needs of a tokenizer (``herd.tokenizer.load_tokenizer`` returns one)."""

    @property
    def vocab_size(self) -> int: ...

    @property
    def eos_id(self) -> int | None: ...

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]: ...


def token_dtype(vocab_size: int) -> str:
    """``uint16`` when every id fits, else ``uint32``."""
    return "uint16" if vocab_size <= 2**16 else "uint32"


def _fraction(doc_id: str, seed: int) -> float:
    digest = hashlib.blake2b(f"{seed}:{doc_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64


def is_held_out(doc_id: str, seed: int, val_fraction: float) -> bool:
    """Whether a document belongs to the validation split (a fixed hash of its id, independent of epochs)."""
    return _fraction(f"val:{doc_id}", seed) < val_fraction


def epoch_stream(docs: Iterable[Document], epochs: float, seed: int) -> Iterator[Document]:
    """The documents of ``epochs`` passes: each whole pass in order, then the fractional sample."""
    docs = list(docs)
    for _ in range(math.floor(epochs)):
        yield from docs
    part = epochs - math.floor(epochs)
    if part > 0:
        yield from (d for d in docs if _fraction(d.id, seed) < part)


class ShardWriter:
    """Appends documents' token ids to numbered shards of at most ``tokens_per_shard`` tokens (atomically)."""

    def __init__(self, root: Path, prefix: str, dtype: str, tokens_per_shard: int) -> None:
        self.root, self.prefix, self.dtype = root, prefix, np.dtype(dtype)
        self.tokens_per_shard = tokens_per_shard
        self.entries: list[dict[str, Any]] = []
        self._chunks: list[np.ndarray] = []
        self._starts: list[int] = [0]
        self._bytes = 0

    def add(self, ids: list[int], num_bytes: int) -> None:
        self._chunks.append(np.asarray(ids, dtype=self.dtype))
        self._starts.append(self._starts[-1] + len(ids))
        self._bytes += num_bytes
        if self._starts[-1] >= self.tokens_per_shard:
            self.flush()

    def flush(self) -> None:
        if len(self._starts) == 1:
            return
        (self.root / self.prefix).parent.mkdir(parents=True, exist_ok=True)
        tokens, index = self._files(len(self.entries))
        for path, write in (
            (tokens, lambda f: np.concatenate(self._chunks).tofile(f)),
            (index, lambda f: np.save(f, np.asarray(self._starts, dtype=np.int64))),
        ):
            write_atomically(path, write)
        self.entries.append(
            {
                "tokens": tokens.relative_to(self.root).as_posix(),
                "index": index.relative_to(self.root).as_posix(),
                "num_tokens": self._starts[-1],
                "num_documents": len(self._starts) - 1,
                "num_bytes": self._bytes,
            }
        )
        self._chunks, self._starts, self._bytes = [], [0], 0

    def _files(self, number: int) -> tuple[Path, Path]:
        """The token and index files of shard ``number``."""
        stem = f"{self.prefix}-{number:05d}"
        tokens, index = (self.root / f"{stem}{suffix}" for suffix in SHARD_SUFFIXES)
        return tokens, index

    def remove_later_shards(self) -> None:
        """Delete shards numbered after the last one written: an interrupted build's, which no manifest lists."""
        number = len(self.entries)
        while True:
            files = self._files(number)
            if not any(p.exists() for p in files):
                return
            for path in files:
                path.unlink(missing_ok=True)
            number += 1


def tokenize_source(
    docs: Iterable[Document],
    tokenizer: TextTokenizer,
    root: Path,
    prefix: str,
    epochs: float,
    seed: int,
    tokens_per_shard: int,
) -> dict[str, Any]:
    """Tokenize one source into shards under ``root/prefix-NNNNN``; its shard entries and totals."""
    writer = ShardWriter(root, prefix, token_dtype(tokenizer.vocab_size), tokens_per_shard)
    eos = tokenizer.eos_id is not None
    documents = tokens = num_bytes = 0
    for doc in epoch_stream(docs, epochs, seed):
        ids = tokenizer.encode(doc.text, bos=False, eos=eos)
        size = len(doc.text.encode("utf-8", "surrogatepass"))
        writer.add(ids, size)
        documents += 1
        tokens += len(ids)
        num_bytes += size
    writer.flush()
    writer.remove_later_shards()
    return {"shards": writer.entries, "documents": documents, "tokens": tokens, "bytes": num_bytes}
