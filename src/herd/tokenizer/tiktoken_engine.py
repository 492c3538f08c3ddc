"""Llama 3's tokenizer: byte-level BPE run by tiktoken, as in Meta's reference code.

Llama 3 §3.1 / docs/spec.md §2: 128,000 BPE ranks (the first 100k close to OpenAI's
cl100k_base) plus 256 special tokens, 128,256 ids in all, with the
pre-tokenizer pattern :data:`LLAMA3_PATTERN`. The ``tokenizer.model`` file is
tiktoken's format: one ``<base64 token bytes> <rank>`` per line.

tiktoken's regex engine overflows its stack on very long whitespace runs
(tiktoken issue 195; a million spaces crash the process with a Rust panic), so
texts over :data:`CHUNK_CHARS` characters are encoded in pieces cut where the
Llama 3 pattern always ends a pre-token (see :func:`split_for_tiktoken`); the
ids are then exactly those of one call.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import tiktoken

from herd.tokenizer.base import TableTokenizer, TokenizerError, unencodable
from herd.tokenizer.bytelevel import bytes_to_piece

LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
NUM_LLAMA3_SPECIALS = 256
#: The special-token table herd writes next to a trained tiktoken ``tokenizer.model``.
SPECIALS_FILE = "special_tokens.json"
BEGIN_OF_TEXT = "<|begin_of_text|>"
END_OF_TEXT = "<|end_of_text|>"

# Named Llama 3 special tokens by offset from the first special id (docs/spec.md §2);
# every other slot is <|reserved_special_token_N|>, numbered in id order.
_LLAMA3_NAMED = {
    0: BEGIN_OF_TEXT,
    1: END_OF_TEXT,
    6: "<|start_header_id|>",
    7: "<|end_header_id|>",
    9: "<|eot_id|>",
}
_LLAMA31_NAMED = {4: "<|finetune_right_pad_id|>", 8: "<|eom_id|>", 10: "<|python_tag|>"}

CHUNK_CHARS = 100_000
# A position where the Llama 3 pattern always ends a pre-token: between a
# non-space and a space other than a line break (punctuation pre-tokens may end
# in line breaks), or after a line break followed by a non-space. No
# alternative of the pattern matches across either, and none looks behind.
_CUT = re.compile(r"(?<=\S)(?=[^\S\r\n])|(?<=[\r\n])(?=\S)")


def llama3_special_tokens(
    num_base: int, version: str = "3.1", count: int = NUM_LLAMA3_SPECIALS
) -> dict[str, int]:
    """The Llama 3.0 or 3.1 special-token table, ids starting at ``num_base`` (128,000 for Meta's model)."""
    if version not in ("3.0", "3.1"):
        raise TokenizerError(f"unknown Llama 3 special-token table {version!r} (expected '3.0' or '3.1')")
    named = _LLAMA3_NAMED | (_LLAMA31_NAMED if version == "3.1" else {})
    if count <= max(named):
        raise TokenizerError(f"a Llama 3 special-token table needs more than {max(named)} slots, got {count}")
    table: dict[str, int] = {}
    reserved = 0
    for offset in range(count):
        name = named.get(offset)
        if name is None:
            name = f"<|reserved_special_token_{reserved}|>"
            reserved += 1
        table[name] = num_base + offset
    return table


def is_tiktoken_file(path: Path) -> bool:
    """Whether ``path`` starts like a tiktoken BPE file (``<base64> <rank>`` lines)."""
    with open(path, "rb") as f:
        head = f.readline(4096)
    return re.fullmatch(rb"[A-Za-z0-9+/]+={0,2} \d+\r?\n?", head) is not None


def read_tiktoken_ranks(path: str | Path) -> dict[bytes, int]:
    """The BPE ranks of a tiktoken file; a clear error naming the line if it is corrupt.

    Parsed here rather than with ``tiktoken.load.load_tiktoken_bpe``, which
    caches files by path in a temp directory and would return stale ranks when
    a file is rewritten at the same path.
    """
    path = Path(path)
    ranks: dict[bytes, int] = {}
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise TokenizerError(f"{path}: cannot read tiktoken file ({exc.strerror})") from None
    for number, line in enumerate(lines, 1):
        if not line:
            continue
        fields = line.split()
        try:
            token, rank = base64.b64decode(fields[0], validate=True), int(fields[1])
            if len(fields) != 2:
                raise ValueError
        except (IndexError, ValueError, binascii.Error):
            raise TokenizerError(
                f"{path}: line {number} is not '<base64 token> <rank>': {line[:60]!r}"
            ) from None
        if token in ranks:
            raise TokenizerError(f"{path}: line {number} repeats token {token!r}")
        ranks[token] = rank
    if len(ranks) < 256:
        raise TokenizerError(f"{path}: {len(ranks)} ranks; a byte-level BPE needs at least the 256 bytes")
    if sorted(ranks.values()) != list(range(len(ranks))):
        raise TokenizerError(f"{path}: ranks are not 0..{len(ranks) - 1}, each used once")
    missing = [b for b in range(256) if bytes([b]) not in ranks]
    if missing:
        raise TokenizerError(f"{path}: byte {missing[0]:#04x} has no rank; tiktoken could not encode it")
    return ranks


def write_tiktoken_ranks(ranks: Mapping[bytes, int], path: str | Path) -> None:
    """Write ranks in tiktoken's format (what ``tiktoken.load.load_tiktoken_bpe`` reads)."""
    lines = (
        f"{base64.b64encode(token).decode('ascii')} {rank}\n"
        for token, rank in sorted(ranks.items(), key=lambda kv: kv[1])
    )
    Path(path).write_text("".join(lines), encoding="ascii")


def write_specials_table(
    path: str | Path, special_tokens: Mapping[str, int], bos_token: str | None, eos_token: str | None
) -> None:
    """Write the special-token table that accompanies a tiktoken ``tokenizer.model`` (:data:`SPECIALS_FILE`)."""
    table = {"special_tokens": dict(special_tokens), "bos_token": bos_token, "eos_token": eos_token}
    Path(path).write_text(json.dumps(table, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def read_specials_table(path: str | Path) -> tuple[dict[str, int], str | None, str | None]:
    """The special tokens, BOS name and EOS name written by :func:`write_specials_table`."""
    try:
        table = json.loads(Path(path).read_text(encoding="utf-8"))
        specials = {str(k): int(v) for k, v in table["special_tokens"].items()}
        return specials, table.get("bos_token"), table.get("eos_token")
    except OSError as exc:
        raise TokenizerError(f"{path}: cannot read special-token table ({exc.strerror})") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise TokenizerError(
            f"{path}: not a special-token table (expected {{'special_tokens': {{name: id}}, ...}}): {exc}"
        ) from None


def split_for_tiktoken(text: str, chunk: int = CHUNK_CHARS) -> list[str]:
    """``text`` cut into pieces of about ``chunk`` characters at Llama 3 pre-token boundaries.

    Each cut is the first boundary at least ``chunk`` characters past the
    previous one, so encoding the pieces gives the ids of the whole text. Only
    a run of over ``chunk`` characters with no boundary (a huge block of spaces
    or of non-spaces) is cut inside the run, which is what keeps tiktoken alive.
    """
    if len(text) <= chunk:
        return [text]
    pieces: list[str] = []
    start = 0
    while len(text) - start > chunk:
        found = _CUT.search(text, start + chunk, start + 2 * chunk)
        end = found.start() if found else start + chunk
        pieces.append(text[start:end])
        start = end
    pieces.append(text[start:])
    return pieces


class TiktokenTokenizer(TableTokenizer):
    """A byte-level BPE tokenizer run by ``tiktoken`` (Llama 3, and herd's ``llama3``-style training).

    ``decode`` renders special tokens by name, as Meta's reference does.
    """

    def __init__(
        self,
        ranks: dict[bytes, int],
        special_tokens: Mapping[str, int] | None = None,
        *,
        source: str = "<tiktoken>",
        bos_token: str | None = BEGIN_OF_TEXT,
        eos_token: str | None = END_OF_TEXT,
        chat_template: str | None = None,
    ) -> None:
        self.source = source
        self.chat_template = chat_template
        self.ranks = ranks
        specials = dict(llama3_special_tokens(len(ranks)) if special_tokens is None else special_tokens)
        clash = [name for name, i in specials.items() if i < len(ranks)]
        if clash:
            raise TokenizerError(
                f"{source}: special token {clash[0]!r} reuses a BPE rank ({specials[clash[0]]})"
            )
        self._specials = specials
        self._bos = self._named(bos_token)
        self._eos = self._named(eos_token)
        self.encoding = tiktoken.Encoding(
            name=Path(source).name, pat_str=LLAMA3_PATTERN, mergeable_ranks=ranks, special_tokens=specials
        )
        self._n_vocab = max([len(ranks) - 1, *specials.values()]) + 1
        self._piece_of_special = {i: name for name, i in specials.items()}

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        special_tokens: Mapping[str, int] | None = None,
        *,
        bos_token: str | None = BEGIN_OF_TEXT,
        eos_token: str | None = END_OF_TEXT,
        chat_template: str | None = None,
    ) -> TiktokenTokenizer:
        """Load a tiktoken ``tokenizer.model``; specials default to the Llama 3.1 table after the ranks."""
        return cls(
            read_tiktoken_ranks(path),
            special_tokens,
            source=str(path),
            bos_token=bos_token,
            eos_token=eos_token,
            chat_template=chat_template,
        )

    def _named(self, name: str | None) -> int | None:
        if name is None:
            return None
        if name not in self._specials:
            raise TokenizerError(f"{self.source}: special token {name!r} is not in the special-token table")
        return self._specials[name]

    def id_to_piece(self, token_id: int) -> str:
        """Byte-level spelling (``Ġthe``), as in Llama 3's ``tokenizer.json``; specials by name."""
        self._check_id(token_id)
        if token_id in self._piece_of_special:
            return self._piece_of_special[token_id]
        return bytes_to_piece(self.encoding.decode_single_token_bytes(token_id))

    def _checked(self, text: str) -> str:
        # tiktoken silently replaces lone surrogates; herd reports them like the other engines.
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise unencodable([text]) from None
        return text

    def _encode_piece(self, text: str, allow_special: bool) -> list[int]:
        if allow_special:
            return self.encoding.encode(text, allowed_special="all", disallowed_special=())
        return self.encoding.encode_ordinary(text)

    def _encode(self, text: str, allow_special: bool) -> list[int]:
        pieces = split_for_tiktoken(self._checked(text))
        if len(pieces) == 1:
            return self._encode_piece(text, allow_special)
        ids: list[int] = []
        for piece in pieces:
            ids += self._encode_piece(piece, allow_special)
        return ids

    def _encode_batch(self, texts: list[str], allow_special: bool, num_threads: int) -> list[list[int]]:
        pieces: list[str] = []
        owner: list[int] = []
        for n, text in enumerate(texts):
            split = split_for_tiktoken(self._checked(text))
            pieces += split
            owner += [n] * len(split)
        if allow_special:
            encoded = self.encoding.encode_batch(
                pieces, num_threads=num_threads, allowed_special="all", disallowed_special=()
            )
        else:
            encoded = self.encoding.encode_ordinary_batch(pieces, num_threads=num_threads)
        if len(pieces) == len(texts):
            return encoded
        out: list[list[int]] = [[] for _ in texts]
        for n, ids in zip(owner, encoded, strict=True):
            out[n] += ids
        return out

    def decode(self, ids: Sequence[int]) -> str:
        self._check_ids(ids)
        return self.encoding.decode(list(ids))
