"""GPT-2's byte-level alphabet and the merge list implied by a rank table.

Byte-level BPE vocabularies (GPT-2, Llama 3 §3.1 via tiktoken, SmolLM) are
stored as text in ``tokenizer.json`` and GGUF by mapping each of the 256 bytes
to a printable character (space becomes ``Ġ``). tiktoken files store raw bytes
with ranks instead and carry no merge list; Hugging Face and llama.cpp need one,
so :func:`merges_from_ranks` derives one from tiktoken's merge rule.
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


def merges_from_ranks(ranks: Mapping[bytes, int]) -> list[tuple[bytes, bytes]]:
    """The merge list that makes classic BPE behave as tiktoken on a rank table.

    tiktoken merges any two adjacent parts whose concatenation has a rank, lowest
    rank first. So every split of a token into two ranked halves is a merge, at
    the token's rank; splits of one token are ordered by the halves' ranks.
    """
    merges: list[tuple[bytes, bytes]] = []
    for token, _ in sorted(ranks.items(), key=lambda item: item[1]):
        splits = [
            (token[:i], token[i:]) for i in range(1, len(token)) if token[:i] in ranks and token[i:] in ranks
        ]
        merges += sorted(splits, key=lambda pair: (ranks[pair[0]], ranks[pair[1]]))
    return merges
