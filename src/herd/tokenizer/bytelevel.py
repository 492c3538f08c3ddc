"""GPT-2's byte-level alphabet and the merge list implied by a rank table.

Byte-level BPE vocabularies (GPT-2, Llama 3 §3.1 via tiktoken, SmolLM) are
stored as text in ``tokenizer.json`` and GGUF by mapping each of the 256 bytes
to a printable character (space becomes ``Ġ``). tiktoken files store raw bytes
with ranks instead and carry no merge list; Hugging Face and llama.cpp need one,
so :func:`merges_from_ranks` recovers it: the merge that creates a token is the
pair BPE reaches when it is only allowed ranks below the token's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache


@cache
def byte_to_char() -> tuple[str, ...]:
    """The printable character standing for each byte value (GPT-2's alphabet)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table: dict[int, str] = {b: chr(b) for b in printable}
    shifted = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + shifted)
            shifted += 1
    return tuple(table[b] for b in range(256))


@cache
def char_to_byte() -> dict[str, int]:
    """Inverse of :func:`byte_to_char`."""
    return {c: b for b, c in enumerate(byte_to_char())}


def bytes_to_piece(data: bytes) -> str:
    """``data`` spelled in the byte-level alphabet (``b" the"`` → ``"Ġthe"``)."""
    table = byte_to_char()
    return "".join(table[b] for b in data)


def piece_to_bytes(piece: str) -> bytes:
    """Inverse of :func:`bytes_to_piece`; ``KeyError`` for a character outside the alphabet."""
    table = char_to_byte()
    return bytes(table[c] for c in piece)


def _split_by_ranks(token: bytes, ranks: Mapping[bytes, int], limit: int) -> list[bytes]:
    """Parts of ``token`` after BPE merges that only use ranks below ``limit``."""
    parts = [token[i : i + 1] for i in range(len(token))]
    while len(parts) > 1:
        best, best_rank = -1, limit
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1])
            if rank is not None and rank < best_rank:
                best, best_rank = i, rank
        if best < 0:
            break
        parts[best : best + 2] = [parts[best] + parts[best + 1]]
    return parts


def merges_from_ranks(ranks: Mapping[bytes, int]) -> list[tuple[bytes, bytes]]:
    """The merge list, in rank order, that reproduces a tiktoken rank table with classic BPE.

    Raises ``ValueError`` if some multi-byte token cannot be built from two
    lower-ranked tokens (the table is not a BPE vocabulary).
    """
    merges: list[tuple[bytes, bytes]] = []
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        if len(token) == 1:
            continue
        parts = _split_by_ranks(token, ranks, rank)
        if len(parts) != 2:
            raise ValueError(f"token {token!r} (rank {rank}) is not the merge of two lower-ranked tokens")
        merges.append((parts[0], parts[1]))
    return merges
