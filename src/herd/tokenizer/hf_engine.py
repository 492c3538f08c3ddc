"""Hugging Face ``tokenizer.json`` files, run by the ``tokenizers`` library.

Covers any model published in the Hugging Face layout and the byte-level BPE
vocabularies rebuilt from GGUF metadata (:mod:`herd.tokenizer.gguf_vocab`).
``tokenizers`` normally cuts every added token out of the input text; herd
keeps a second copy of the tokenizer with ``encode_special_tokens`` set, so
special-token strings in user text are encoded as ordinary characters unless
``allow_special=True`` (docs/spec.md §2).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import tokenizers

from herd.tokenizer.base import TableTokenizer, TokenizerError, unencodable


class HFTokenizer(TableTokenizer):
    """A ``tokenizers.Tokenizer``; ``decode`` renders special tokens by name."""

    def __init__(
        self,
        backend: tokenizers.Tokenizer,
        *,
        source: str = "<tokenizer.json>",
        bos_id: int | None = None,
        eos_id: int | None = None,
        chat_template: str | None = None,
        gguf_pre: str | None = None,
    ) -> None:
        self.source = source
        self.chat_template = chat_template
        #: llama.cpp's name for the pre-tokenizer when known (set for vocabularies read from GGUF).
        self.gguf_pre = gguf_pre
        backend.no_padding()
        backend.no_truncation()
        self.backend = backend
        self._plain = tokenizers.Tokenizer.from_str(backend.to_str())
        self._plain.encode_special_tokens = True
        self._n_vocab = backend.get_vocab_size(with_added_tokens=True)
        self._specials = {
            tok.content: i for i, tok in sorted(backend.get_added_tokens_decoder().items()) if tok.special
        }
        for what, token_id in (("BOS", bos_id), ("EOS", eos_id)):
            if token_id is not None and not 0 <= token_id < self._n_vocab:
                raise TokenizerError(f"{source}: {what} id {token_id} is outside [0, {self._n_vocab})")
        self._bos, self._eos = bos_id, eos_id

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        *,
        bos_token: str | None = None,
        eos_token: str | None = None,
        chat_template: str | None = None,
    ) -> HFTokenizer:
        """Load a ``tokenizer.json``; BOS/EOS are named as in ``tokenizer_config.json``."""
        try:
            backend = tokenizers.Tokenizer.from_file(str(path))
        except FileNotFoundError:
            raise TokenizerError(f"{path}: tokenizer.json not found") from None
        except Exception as exc:  # tokenizers raises a bare Exception for malformed JSON
            raise TokenizerError(f"{path}: not a valid tokenizer.json ({exc})") from None

        def resolve(name: str | None, what: str) -> int | None:
            if name is None:
                return None
            token_id = backend.token_to_id(name)
            if token_id is None:
                raise TokenizerError(f"{path}: {what} token {name!r} is not in the vocabulary")
            return token_id

        return cls(
            backend,
            source=str(path),
            bos_id=resolve(bos_token, "BOS"),
            eos_id=resolve(eos_token, "EOS"),
            chat_template=chat_template,
        )

    def model_json(self) -> dict[str, Any]:
        """The tokenizer's full JSON description (model, pre-tokenizer, added tokens)."""
        return json.loads(self.backend.to_str())

    def id_to_piece(self, token_id: int) -> str:
        self._check_id(token_id)
        piece = self.backend.id_to_token(token_id)
        if piece is None:
            raise TokenizerError(f"{self.source}: id {token_id} has no vocabulary entry")
        return piece

    def _encode(self, text: str, allow_special: bool) -> list[int]:
        engine = self.backend if allow_special else self._plain
        try:
            return engine.encode(text, add_special_tokens=False).ids
        except TypeError:
            raise unencodable([text]) from None

    def _encode_batch(self, texts: list[str], allow_special: bool, num_threads: int) -> list[list[int]]:
        # tokenizers parallelises batches itself on every core (its Rayon pool).
        engine = self.backend if allow_special else self._plain
        try:
            return [e.ids for e in engine.encode_batch(texts, add_special_tokens=False)]
        except TypeError:
            raise unencodable(texts) from None

    def decode(self, ids: Sequence[int]) -> str:
        self._check_ids(ids)
        return self.backend.decode(list(ids), skip_special_tokens=False)
