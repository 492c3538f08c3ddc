"""Tokenizing and packing a source's documents into ``herd-tokens-v1`` shards (Llama 3 §3.2 document masking).

Each source's kept documents are tokenized with an end-of-text token after
every document and packed by the format's writer
(:class:`herd.io.token_shards.ShardWriter`: flat ``uint16``/``uint32`` ``.bin``
files with an ``.idx.npy`` of document start offsets), so the trainer can mask
attention across document boundaries. A source is passed over ``epochs`` times
(Llama 1 §2.1's table): every document once per whole epoch, plus a fixed
pseudo-random fraction of them (chosen by a hash of the document id and the
seed) for the fractional part.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

from herd.data.document import Document
from herd.deprecation import moved_names
from herd.io.token_shards import ShardWriter, token_dtype

__getattr__ = moved_names(__name__, {"SHARD_SUFFIXES": "herd.io.token_shards"})


class TextTokenizer(Protocol):
    """What herd needs of a tokenizer (``herd.tokenizer.load_tokenizer`` returns one)."""

    @property
    def vocab_size(self) -> int: ...

    @property
    def eos_id(self) -> int | None: ...

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]: ...


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
