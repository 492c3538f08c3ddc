"""The one tokenizer interface every engine (SentencePiece, tiktoken, Hugging Face) implements.

A tokenizer maps text to integer ids and back. Engines differ in how they
split text (SentencePiece BPE for Llama 1/2 and Code Llama, byte-level BPE for
Llama 3, docs/spec.md §2) but callers only see this interface, so a training loop or a
chat formatter works with any of them.

Security rule (docs/spec.md §2): text given to :meth:`Tokenizer.encode` is never turned
into special tokens unless the caller passes ``allow_special=True``; a user who
types ``<|eot_id|>`` gets the ids of those characters, not the control token.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from functools import cached_property

from herd.errors import InputError

# Names of special tokens that end a turn or a document in the families herd
# knows (Llama 3 §4.1 chat format, Llama 3.1 tool calls, ChatML, GPT-2 style).
END_OF_TURN_NAMES = ("<|eot_id|>", "<|eom_id|>", "<|end_of_text|>", "<|im_end|>", "<|endoftext|>")


class TokenizerError(InputError):
    """A tokenizer file is missing or corrupt, or an input cannot be tokenized."""


def cpu_count() -> int:
    """Cores this process may run on (what batch encoding uses)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def as_text(text: str | bytes, what: str = "input") -> str:
    """``text`` as ``str``; bytes must be valid UTF-8 and the error names the first bad byte."""
    if isinstance(text, str):
        return text
    if isinstance(text, (bytes, bytearray, memoryview)):
        try:
            return bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TokenizerError(
                f"{what}: invalid UTF-8 at byte {exc.start} ({bytes(text)[exc.start : exc.start + 4]!r}); "
                "decode it first (e.g. errors='replace') to choose how bad bytes are handled"
            ) from None
    raise TokenizerError(f"{what}: expected str or UTF-8 bytes, got {type(text).__name__}")


def unencodable(texts: Sequence[str], what: str = "input") -> TokenizerError:
    """The error for the first text with no UTF-8 form (lone surrogates, e.g. from ``surrogateescape``)."""
    for n, text in enumerate(texts):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            name = what if len(texts) == 1 else f"{what} {n}"
            return TokenizerError(
                f"{name}: character {exc.start} is a lone surrogate ({text[exc.start]!r}), which has no UTF-8 form"
            )
    return TokenizerError(f"{what}: the tokenizer engine rejected this text")


class Tokenizer(ABC):
    """Text ↔ ids, with the model's special tokens.

    Subclasses wrap a reference library and implement :meth:`_encode`,
    :meth:`_encode_batch` and :meth:`decode`; BOS/EOS handling, input checks and
    the special-token policy live here so every engine behaves the same.
    """

    #: Where the tokenizer was loaded from; named in every error message.
    source: str
    #: A jinja chat template shipped with the tokenizer (HF config or GGUF metadata), if any.
    chat_template: str | None = None

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of ids, special tokens included (the rows the embedding needs)."""

    @property
    @abstractmethod
    def special_tokens(self) -> dict[str, int]:
        """Special (control) tokens by name; these are never produced from user text by default."""

    @property
    @abstractmethod
    def bos_id(self) -> int | None:
        """Beginning-of-sequence id, or ``None`` if the tokenizer has none."""

    @property
    @abstractmethod
    def eos_id(self) -> int | None:
        """End-of-sequence id, or ``None`` if the tokenizer has none."""

    @abstractmethod
    def id_to_piece(self, token_id: int) -> str:
        """The vocabulary entry of ``token_id`` as the engine spells it (``▁the``, ``Ġthe``, ``<|eot_id|>``)."""

    @abstractmethod
    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``; special tokens are rendered as the engine does (see each engine)."""

    @abstractmethod
    def _encode(self, text: str, allow_special: bool) -> list[int]:
        """Ids of ``text`` without BOS/EOS."""

    def _encode_continuation(self, text: str, allow_special: bool) -> list[int]:
        """Ids of ``text`` that continues earlier text (a chat template's pieces after the first).

        The same as :meth:`_encode` except for engines that add a leading space
        to every input (SentencePiece's dummy prefix), which must not add one here.
        """
        return self._encode(text, allow_special)

    @abstractmethod
    def _encode_batch(self, texts: list[str], allow_special: bool, num_threads: int) -> list[list[int]]:
        """Ids of each text without BOS/EOS, encoded in parallel on ``num_threads`` threads."""

    @property
    def stop_ids(self) -> frozenset[int]:
        """Ids at which generation stops: EOS plus any end-of-turn token (Llama 3 ``<|eot_id|>``)."""
        specials = self.special_tokens
        ids = {specials[name] for name in END_OF_TURN_NAMES if name in specials}
        if self.eos_id is not None:
            ids.add(self.eos_id)
        return frozenset(ids)

    def is_special(self, token_id: int) -> bool:
        """Whether ``token_id`` is a special (control) token."""
        self._check_id(token_id)
        return token_id in self._special_ids

    def special_id(self, name: str) -> int:
        """The id of the special token ``name``; a clear error if this tokenizer lacks it."""
        try:
            return self.special_tokens[name]
        except KeyError:
            raise TokenizerError(f"{self.source}: no special token {name!r}") from None

    def encode(
        self, text: str | bytes, bos: bool = False, eos: bool = False, allow_special: bool = False
    ) -> list[int]:
        """Ids of ``text``, optionally framed by BOS/EOS.

        ``allow_special=True`` lets special-token strings in ``text`` become
        their control ids; leave it off for anything a user typed. Bytes must be
        UTF-8; invalid input raises :class:`TokenizerError`.
        """
        ids = self._encode(as_text(text), allow_special)
        return self._frame(ids, bos, eos)

    def encode_batch(
        self,
        texts: Iterable[str | bytes],
        bos: bool = False,
        eos: bool = False,
        allow_special: bool = False,
        num_threads: int | None = None,
    ) -> list[list[int]]:
        """:meth:`encode` of every text, in parallel on every core (or ``num_threads``)."""
        batch = [as_text(t, f"text {i}") for i, t in enumerate(texts)]
        out = self._encode_batch(batch, allow_special, num_threads or cpu_count())
        if bos or eos:
            out = [self._frame(ids, bos, eos) for ids in out]
        return out

    def _frame(self, ids: list[int], bos: bool, eos: bool) -> list[int]:
        if bos:
            if self.bos_id is None:
                raise TokenizerError(f"{self.source}: bos=True but this tokenizer has no BOS token")
            ids.insert(0, self.bos_id)
        if eos:
            if self.eos_id is None:
                raise TokenizerError(f"{self.source}: eos=True but this tokenizer has no EOS token")
            ids.append(self.eos_id)
        return ids

    @cached_property
    def _special_ids(self) -> frozenset[int]:
        return frozenset(self.special_tokens.values())

    def _check_id(self, token_id: int) -> None:
        if not 0 <= token_id < self.vocab_size:
            raise TokenizerError(f"{self.source}: token id {token_id} is outside [0, {self.vocab_size})")

    def _check_ids(self, ids: Sequence[int]) -> None:
        if ids and (min(ids) < 0 or max(ids) >= self.vocab_size):
            bad = next(i for i in ids if not 0 <= i < self.vocab_size)
            raise TokenizerError(f"{self.source}: token id {bad} is outside [0, {self.vocab_size})")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source!r}, vocab_size={self.vocab_size})"


class TableTokenizer(Tokenizer):
    """A tokenizer whose vocabulary size, special-token table and BOS/EOS ids are fixed at load.

    Engines fill ``_n_vocab``, ``_specials``, ``_bos`` and ``_eos`` in their constructor.
    """

    _n_vocab: int
    _specials: dict[str, int]
    _bos: int | None
    _eos: int | None

    @property
    def vocab_size(self) -> int:
        return self._n_vocab

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self._specials)

    @property
    def bos_id(self) -> int | None:
        return self._bos

    @property
    def eos_id(self) -> int | None:
        return self._eos


def check_vocab_fits(tokenizer: Tokenizer, vocab_size: int) -> None:
    """Raise if ``tokenizer`` can produce ids the model's embedding (``vocab_size`` rows) cannot hold.

    A model may have more rows than the tokenizer has ids (padded vocabularies),
    never fewer: an id past the last row would index out of the embedding.
    """
    if tokenizer.vocab_size > vocab_size:
        raise TokenizerError(
            f"tokenizer {tokenizer.source} has {tokenizer.vocab_size} ids but the model's vocabulary has "
            f"only {vocab_size} rows; ids {vocab_size}..{tokenizer.vocab_size - 1} would not fit"
        )
