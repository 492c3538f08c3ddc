"""Tokenizers of the Llama family behind one interface (docs/spec.md §2).

``load_tokenizer(path)`` opens a SentencePiece or tiktoken ``tokenizer.model``,
a Hugging Face ``tokenizer.json``, the vocabulary inside a GGUF file or a model
directory; every engine implements :class:`Tokenizer`. Chat formats live in
:mod:`herd.tokenizer.chat`, training in :mod:`herd.tokenizer.train`.
"""

from __future__ import annotations

from herd.tokenizer.base import Tokenizer, TokenizerError, check_vocab_fits
from herd.tokenizer.gguf_vocab import read_gguf_tokenizer, write_gguf_tokenizer
from herd.tokenizer.hf_engine import HFTokenizer
from herd.tokenizer.load import load_tokenizer
from herd.tokenizer.sentencepiece_engine import SentencePieceTokenizer
from herd.tokenizer.tiktoken_engine import TiktokenTokenizer

__all__ = [
    "HFTokenizer",
    "SentencePieceTokenizer",
    "TiktokenTokenizer",
    "Tokenizer",
    "TokenizerError",
    "check_vocab_fits",
    "load_tokenizer",
    "read_gguf_tokenizer",
    "write_gguf_tokenizer",
]
