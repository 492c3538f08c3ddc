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

**BOS.** ``tokenizer.ggml.add_bos_token`` says whether llama.cpp puts BOS in
front of text it tokenizes (absent: llama.cpp's default, true for ``llama``
and for ``pre`` = ``llama-bpe``, false for other ``gpt2`` vocabularies). A
``gpt2`` vocabulary read with the flag set gets a post-processor that prepends
BOS, as Llama 3's ``tokenizer.json`` has; writing a byte-level BPE sets the flag
from its post-processor, so the flag of a GGUF (SmolLM2's false) survives a
read and a write. SentencePiece and tiktoken tokenizers carry no such flag:
Llama 1/2 and Llama 3 always start with BOS, so they are written with the flag
set whenever they have a BOS.

**Padded vocabularies.** llama.cpp loads a model only if its vocabulary has
one entry per embedding row, so a model with more rows than its tokenizer has
ids (a vocabulary rounded up to a multiple of 64, say) gets placeholders for
the extra ids, as llama.cpp's own converter writes them: ``[PAD{id}]``, type
unused, score -10000 in a ``llama`` vocabulary. Neither tokenizer ever
produces them, and reading drops them again, so the tokenizer read back is the
one written.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import gguf
import tokenizers
from sentencepiece import sentencepiece_model_pb2
from tokenizers import Regex, decoders, models, processors
from tokenizers import pre_tokenizers as pre

from herd.io.fields import Fields
from herd.io.gguf import GGUFError, GGUFFile
from herd.tokenizer.base import Tokenizer, TokenizerError
from herd.tokenizer.bytelevel import bytes_to_piece, merges_from_ranks
from herd.tokenizer.hf_engine import HFTokenizer
from herd.tokenizer.sentencepiece_engine import SentencePieceTokenizer
from herd.tokenizer.tiktoken_engine import LLAMA3_PATTERN, TiktokenTokenizer

_SP_BPE = 2  # sentencepiece TrainerSpec.ModelType.BPE
_UNUSED = int(gguf.TokenType.UNUSED)
# The score of a placeholder in a ``llama`` vocabulary (llama.cpp's convert_hf_to_gguf.py).
PLACEHOLDER_SCORE = -10000.0


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
# The ``pre`` names for which llama.cpp adds BOS when ``tokenizer.ggml.add_bos_token`` is absent.
_BOS_BY_DEFAULT = ("llama-bpe", "llama3")


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
    count = len(tokens)
    types: list[int] = fields.array("tokenizer.ggml.token_type", [int(gguf.TokenType.NORMAL)] * count, of=int)
    if len(types) != count:
        raise TokenizerError(f"{name}: {count} tokens but {len(types)} token types")
    vocab = _unpadded_size(tokens, types)
    tokens, types = tokens[:vocab], types[:vocab]
    bos = fields.integer("tokenizer.ggml.bos_token_id", None, minimum=0, below=vocab)
    eos = fields.integer("tokenizer.ggml.eos_token_id", None, minimum=0, below=vocab)
    template = fields.text("tokenizer.chat_template", None)
    if kind == "llama":
        scores: list[float] = fields.array("tokenizer.ggml.scores", of=float)
        if len(scores) != count:
            raise TokenizerError(f"{name}: {count} tokens but {len(scores)} scores")
        proto = _sentencepiece_proto(
            tokens,
            scores[:vocab],
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
        if bos is not None and fields.flag("tokenizer.ggml.add_bos_token", pre_name in _BOS_BY_DEFAULT):
            backend.post_processor = processors.TemplateProcessing(
                single=[tokens[bos], "$A"],
                pair=[tokens[bos], "$A", tokens[bos], "$B:1"],
                special_tokens=[(tokens[bos], bos)],
            )
        return HFTokenizer(
            backend, source=name, bos_id=bos, eos_id=eos, chat_template=template, gguf_pre=pre_name
        )
    raise TokenizerError(
        f"{name}: GGUF tokenizer model {kind!r} is not supported (expected 'llama' or 'gpt2')"
    )


def placeholder(token_id: int) -> str:
    """The token that stands for ``token_id`` past a tokenizer's last id (llama.cpp's spelling)."""
    return f"[PAD{token_id}]"


def _unpadded_size(tokens: list[str], types: list[int]) -> int:
    """The number of ids before the trailing run of placeholders (:func:`placeholder`, type unused)."""
    size = len(tokens)
    while size and types[size - 1] == _UNUSED and tokens[size - 1] == placeholder(size - 1):
        size -= 1
    return size


def _placeholders(tokenizer: Tokenizer, rows: int | None) -> list[str]:
    """The placeholders for ids ``tokenizer.vocab_size``..``rows - 1`` (none when ``rows`` is None)."""
    if rows is None:
        return []
    if rows < tokenizer.vocab_size:
        raise TokenizerError(
            f"{tokenizer.source}: {tokenizer.vocab_size} ids do not fit a model of {rows} vocabulary rows"
        )
    return [placeholder(i) for i in range(tokenizer.vocab_size, rows)]


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


def write_gguf_tokenizer(
    writer: gguf.GGUFWriter, tokenizer: Tokenizer, vocab_size: int | None = None
) -> None:
    """Add ``tokenizer``'s ``tokenizer.ggml.*`` metadata (and chat template) to a GGUF being written.

    SentencePiece models are written as ``llama`` vocabularies; Llama 3
    (tiktoken) and byte-level ``tokenizer.json`` BPEs as ``gpt2`` with merges.
    ``vocab_size``: the model's embedding rows; ids past the tokenizer's are
    written as placeholders (see the module), since llama.cpp needs one token
    per row. A tokenizer with more ids than rows is refused.
    """
    padding = _placeholders(tokenizer, vocab_size)
    if isinstance(tokenizer, SentencePieceTokenizer):
        _write_sentencepiece(writer, tokenizer, padding)
    elif isinstance(tokenizer, TiktokenTokenizer):
        _write_tiktoken(writer, tokenizer, padding)
    elif isinstance(tokenizer, HFTokenizer):
        _write_hf(writer, tokenizer, padding)
    else:
        raise TokenizerError(f"{tokenizer.source}: cannot write a {type(tokenizer).__name__} to GGUF")
    for add, token_id in (
        (writer.add_bos_token_id, tokenizer.bos_id),
        (writer.add_eos_token_id, tokenizer.eos_id),
    ):
        if token_id is not None:
            add(token_id)
    writer.add_add_bos_token(_adds_bos(tokenizer))
    writer.add_add_eos_token(False)
    specials = tokenizer.special_tokens
    for add, name in ((writer.add_eot_token_id, "<|eot_id|>"), (writer.add_eom_token_id, "<|eom_id|>")):
        if name in specials:
            add(specials[name])
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)


def _adds_bos(tokenizer: Tokenizer) -> bool:
    """Whether text is tokenized with BOS in front (``tokenizer.ggml.add_bos_token``; see the module)."""
    if tokenizer.bos_id is None:
        return False
    if isinstance(tokenizer, HFTokenizer):
        return tokenizer.backend.encode("", add_special_tokens=True).ids[:1] == [tokenizer.bos_id]
    return True


def _write_sentencepiece(
    writer: gguf.GGUFWriter, tokenizer: SentencePieceTokenizer, padding: list[str]
) -> None:
    proto = tokenizer.proto
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list([p.piece for p in proto.pieces] + padding)
    writer.add_token_scores([p.score for p in proto.pieces] + [PLACEHOLDER_SCORE] * len(padding))
    writer.add_token_types([int(p.type) for p in proto.pieces] + [_UNUSED] * len(padding))
    writer.add_add_space_prefix(proto.normalizer_spec.add_dummy_prefix)
    unk = tokenizer.processor.unk_id()
    if unk >= 0:
        writer.add_unk_token_id(unk)


def _write_byte_level(
    writer: gguf.GGUFWriter,
    tokens: list[str],
    types: list[int],
    merges: list[str],
    pre_name: str,
    padding: list[str],
) -> None:
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre_name)
    writer.add_token_list(tokens + padding)
    writer.add_token_types(types + [_UNUSED] * len(padding))
    writer.add_token_merges(merges)


def _write_tiktoken(writer: gguf.GGUFWriter, tokenizer: TiktokenTokenizer, padding: list[str]) -> None:
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
    _write_byte_level(writer, [t for t in tokens if t is not None], types, merges, "llama-bpe", padding)


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


def _write_hf(writer: gguf.GGUFWriter, tokenizer: HFTokenizer, padding: list[str]) -> None:
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
    _write_byte_level(writer, tokens, types, merges, pre_name, padding)
