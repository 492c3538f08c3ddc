"""Tokenizers stored in GGUF metadata, read and written the way llama.cpp expects.

A GGUF file carries its vocabulary under ``tokenizer.ggml.*``: the ``model``
(``llama`` for SentencePiece BPE with scores, ``gpt2`` for byte-level BPE with
a merge list), ``tokens``, ``scores``, ``token_type`` (1 normal, 2 unknown,
3 control, 4 user-defined, 5 unused, 6 byte: the same numbering as
SentencePiece's piece types), ``merges``, the BOS/EOS ids, the pre-tokenizer
name ``pre`` and an optional ``tokenizer.chat_template``.

Reading rebuilds the tokenizer with the reference library: a SentencePiece
model for ``llama`` (so a Llama 2 GGUF tokenizes exactly as its
``tokenizer.model``), a ``tokenizers`` BPE for ``gpt2`` whose pre-tokenizer is
the one llama.cpp uses for that ``pre`` name.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import gguf
import tokenizers
from sentencepiece import sentencepiece_model_pb2
from tokenizers import Regex, decoders, models
from tokenizers import pre_tokenizers as pre

from herd.io.fields import Fields
from herd.io.gguf import GGUFError, GGUFFile
from herd.tokenizer.base import Tokenizer, TokenizerError
from herd.tokenizer.bytelevel import bytes_to_piece, merges_from_ranks
from herd.tokenizer.hf_engine import HFTokenizer
from herd.tokenizer.sentencepiece_engine import SentencePieceTokenizer
from herd.tokenizer.tiktoken_engine import LLAMA3_PATTERN, TiktokenTokenizer

_SP_BPE = 2  # sentencepiece TrainerSpec.ModelType.BPE


def _gpt2_regex() -> pre.PreTokenizer:
    return pre.ByteLevel(add_prefix_space=False, use_regex=True)


def _pre_tokenizer(name: str) -> tuple[pre.PreTokenizer, bool]:
    """The pre-tokenizer llama.cpp applies for ``tokenizer.ggml.pre`` = ``name``, and whether it ignores merges.

    ``llama-bpe`` is Llama 3's pattern (docs/spec.md §2); ``smollm``/``starcoder``/``refact``
    split digits one by one before GPT-2's pattern; ``gpt-2``/``default`` is GPT-2's.
    """
    if name in ("llama-bpe", "llama3"):
        split = pre.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False)
        return pre.Sequence([split, pre.ByteLevel(add_prefix_space=False, use_regex=False)]), True
    if name in ("smollm", "starcoder", "refact"):
        return pre.Sequence([pre.Digits(individual_digits=True), _gpt2_regex()]), False
    if name in ("default", "gpt-2", "gpt2"):
        return _gpt2_regex(), False
    raise TokenizerError(
        f"GGUF pre-tokenizer {name!r} is not supported (supported: llama-bpe, smollm, starcoder, refact, gpt-2, default)"
    )


_PRE_NAMES = ("llama-bpe", "smollm", "gpt-2")


def _open(source: str | Path | GGUFFile | gguf.GGUFReader) -> tuple[dict[str, Any], str]:
    """The metadata (key → plain value) of a GGUF file and the name errors give it.

    Every file is parsed by herd's container reader (:mod:`herd.io.gguf`); an
    open ``gguf.GGUFReader`` (deprecated) is read again from its file.
    """
    if isinstance(source, GGUFFile):
        return source.metadata_values(), str(source.path)
    if isinstance(source, gguf.GGUFReader):
        warnings.warn(
            "read_gguf_tokenizer(gguf.GGUFReader) is deprecated; pass the path or a herd.io.gguf.GGUFFile",
            DeprecationWarning,
            stacklevel=3,
        )
        source = getattr(source.data, "filename", None) or ""
    path = Path(source)
    if not path.is_file():
        raise TokenizerError(f"{path}: GGUF file not found")
    try:
        with GGUFFile(path) as file:
            return file.metadata_values(), str(path)
    except GGUFError as exc:
        raise TokenizerError(str(exc)) from None


def read_gguf_tokenizer(source: str | Path | GGUFFile | gguf.GGUFReader) -> Tokenizer:
    """The tokenizer embedded in a GGUF file: a path or an open :class:`herd.io.gguf.GGUFFile`.

    Every ``tokenizer.*`` value is type-checked (:class:`herd.io.fields.Fields`):
    a wrong one is a :class:`TokenizerError` naming the file and the key.
    """
    values, name = _open(source)
    fields = Fields(values, name, "metadata key", error=TokenizerError)
    kind = fields.text("tokenizer.ggml.model")
    tokens: list[str] = fields.array("tokenizer.ggml.tokens", of=str)
    vocab = len(tokens)
    types: list[int] = fields.array("tokenizer.ggml.token_type", [int(gguf.TokenType.NORMAL)] * vocab, of=int)
    if len(types) != vocab:
        raise TokenizerError(f"{name}: {vocab} tokens but {len(types)} token types")
    bos = fields.integer("tokenizer.ggml.bos_token_id", None, minimum=0, below=vocab)
    eos = fields.integer("tokenizer.ggml.eos_token_id", None, minimum=0, below=vocab)
    template = fields.text("tokenizer.chat_template", None)
    if kind == "llama":
        scores: list[float] = fields.array("tokenizer.ggml.scores", of=float)
        if len(scores) != vocab:
            raise TokenizerError(f"{name}: {vocab} tokens but {len(scores)} scores")
        proto = _sentencepiece_proto(
            tokens,
            scores,
            types,
            unk=fields.integer("tokenizer.ggml.unknown_token_id", 0, minimum=0, below=vocab),
            bos=bos,
            eos=eos,
            add_space_prefix=fields.flag("tokenizer.ggml.add_space_prefix", True),
        )
        return SentencePieceTokenizer(proto, source=name, chat_template=template)
    if kind == "gpt2":
        merges: list[str] = fields.array("tokenizer.ggml.merges", of=str)
        pre_name = fields.text("tokenizer.ggml.pre", "default")
        backend = _byte_level_bpe(tokens, merges, types, pre_name, name)
        return HFTokenizer(
            backend, source=name, bos_id=bos, eos_id=eos, chat_template=template, gguf_pre=pre_name
        )
    raise TokenizerError(
        f"{name}: GGUF tokenizer model {kind!r} is not supported (expected 'llama' or 'gpt2')"
    )


def _sentencepiece_proto(
    tokens: list[str],
    scores: list[float],
    types: list[int],
    *,
    unk: int,
    bos: int | None,
    eos: int | None,
    add_space_prefix: bool,
) -> bytes:
    """A SentencePiece BPE model with the Llama settings (identity normalization, byte fallback)."""
    proto = sentencepiece_model_pb2.ModelProto()
    for token, score, kind in zip(tokens, scores, types, strict=True):
        piece = proto.pieces.add()
        piece.piece, piece.score, piece.type = token, score, kind
    spec = proto.trainer_spec
    spec.model_type = _SP_BPE
    spec.vocab_size = len(tokens)
    spec.byte_fallback = int(gguf.TokenType.BYTE) in types
    spec.split_digits = True
    spec.allow_whitespace_only_pieces = True
    spec.unk_id = unk
    spec.bos_id = -1 if bos is None else bos
    spec.eos_id = -1 if eos is None else eos
    spec.pad_id = -1
    norm = proto.normalizer_spec
    norm.name = "identity"
    norm.add_dummy_prefix = add_space_prefix
    norm.remove_extra_whitespaces = False
    norm.escape_whitespaces = True
    return proto.SerializeToString()


def _byte_level_bpe(
    tokens: list[str], merges: list[str], types: list[int], pre_name: str, source: str
) -> tokenizers.Tokenizer:
    """A ``tokenizers`` byte-level BPE equivalent to llama.cpp's ``gpt2`` vocabulary."""
    pre_tokenizer, ignore_merges = _pre_tokenizer(pre_name)
    vocab = {token: i for i, token in enumerate(tokens)}
    pairs = []
    for n, merge in enumerate(merges):
        left, sep, right = merge.partition(" ")
        if not sep:
            raise TokenizerError(f"{source}: merge {n} ({merge!r}) is not two tokens separated by a space")
        pairs.append((left, right))
    backend = tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=pairs, ignore_merges=ignore_merges))
    backend.pre_tokenizer = pre_tokenizer
    backend.decoder = decoders.ByteLevel()
    control, user = int(gguf.TokenType.CONTROL), int(gguf.TokenType.USER_DEFINED)
    backend.add_special_tokens(
        [
            tokenizers.AddedToken(t, special=True, normalized=False)
            for t, k in zip(tokens, types, strict=True)
            if k == control
        ]
    )
    backend.add_tokens(
        [
            tokenizers.AddedToken(t, special=False, normalized=False)
            for t, k in zip(tokens, types, strict=True)
            if k == user
        ]
    )
    return backend


def write_gguf_tokenizer(writer: gguf.GGUFWriter, tokenizer: Tokenizer) -> None:
    """Add ``tokenizer``'s ``tokenizer.ggml.*`` metadata (and chat template) to a GGUF being written.

    SentencePiece models are written as ``llama`` vocabularies; Llama 3
    (tiktoken) and byte-level ``tokenizer.json`` BPEs as ``gpt2`` with merges.
    """
    if isinstance(tokenizer, SentencePieceTokenizer):
        _write_sentencepiece(writer, tokenizer)
    elif isinstance(tokenizer, TiktokenTokenizer):
        _write_tiktoken(writer, tokenizer)
    elif isinstance(tokenizer, HFTokenizer):
        _write_hf(writer, tokenizer)
    else:
        raise TokenizerError(f"{tokenizer.source}: cannot write a {type(tokenizer).__name__} to GGUF")
    for add, token_id in (
        (writer.add_bos_token_id, tokenizer.bos_id),
        (writer.add_eos_token_id, tokenizer.eos_id),
    ):
        if token_id is not None:
            add(token_id)
    writer.add_add_bos_token(tokenizer.bos_id is not None)
    writer.add_add_eos_token(False)
    specials = tokenizer.special_tokens
    for add, name in ((writer.add_eot_token_id, "<|eot_id|>"), (writer.add_eom_token_id, "<|eom_id|>")):
        if name in specials:
            add(specials[name])
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)


def _write_sentencepiece(writer: gguf.GGUFWriter, tokenizer: SentencePieceTokenizer) -> None:
    proto = tokenizer.proto
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list([p.piece for p in proto.pieces])
    writer.add_token_scores([p.score for p in proto.pieces])
    writer.add_token_types([int(p.type) for p in proto.pieces])
    writer.add_add_space_prefix(proto.normalizer_spec.add_dummy_prefix)
    unk = tokenizer.processor.unk_id()
    if unk >= 0:
        writer.add_unk_token_id(unk)


def _write_byte_level(
    writer: gguf.GGUFWriter, tokens: list[str], types: list[int], merges: list[str], pre_name: str
) -> None:
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre_name)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)


def _write_tiktoken(writer: gguf.GGUFWriter, tokenizer: TiktokenTokenizer) -> None:
    tokens: list[str | None] = [None] * tokenizer.vocab_size
    types = [int(gguf.TokenType.NORMAL)] * tokenizer.vocab_size
    for token, rank in tokenizer.ranks.items():
        tokens[rank] = bytes_to_piece(token)
    for name, token_id in tokenizer.special_tokens.items():
        tokens[token_id], types[token_id] = name, int(gguf.TokenType.CONTROL)
    if None in tokens:
        raise TokenizerError(
            f"{tokenizer.source}: id {tokens.index(None)} is unused; GGUF needs contiguous ids"
        )
    merges = [f"{bytes_to_piece(a)} {bytes_to_piece(b)}" for a, b in merges_from_ranks(tokenizer.ranks)]
    _write_byte_level(writer, [t for t in tokens if t is not None], types, merges, "llama-bpe")


def _detect_pre(tokenizer: HFTokenizer, config: dict[str, Any]) -> str:
    """llama.cpp's name for a ``tokenizer.json`` pre-tokenizer herd knows."""
    if tokenizer.gguf_pre is not None:
        return tokenizer.gguf_pre
    actual = _comparable(config.get("pre_tokenizer"))
    for name in _PRE_NAMES:
        candidate = json.loads(_pre_tokenizer(name)[0].__getstate__())
        if _comparable(candidate) == actual:
            return name
    raise TokenizerError(
        f"{tokenizer.source}: its pre-tokenizer matches none llama.cpp knows by name ({', '.join(_PRE_NAMES)})"
    )


def _comparable(node: Any) -> Any:
    """A pre-tokenizer JSON without the offset flags that do not change ids."""
    if isinstance(node, dict):
        return {k: _comparable(v) for k, v in node.items() if k != "trim_offsets"}
    if isinstance(node, list):
        return [_comparable(v) for v in node]
    return node


def _write_hf(writer: gguf.GGUFWriter, tokenizer: HFTokenizer) -> None:
    config = tokenizer.model_json()
    model = config["model"]
    if model.get("type") != "BPE" or model.get("byte_fallback"):
        raise TokenizerError(
            f"{tokenizer.source}: only byte-level BPE tokenizer.json files can be written to GGUF; "
            "for SentencePiece models write from tokenizer.model"
        )
    pre_name = _detect_pre(tokenizer, config)
    added = tokenizer.backend.get_added_tokens_decoder()
    tokens = [tokenizer.id_to_piece(i) for i in range(tokenizer.vocab_size)]
    types = [
        int(gguf.TokenType.NORMAL)
        if i not in added
        else int(gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED)
        for i in range(tokenizer.vocab_size)
    ]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    _write_byte_level(writer, tokens, types, merges, pre_name)
