"""Llama 2-style SentencePiece: herd against sentencepiece, transformers, GGUF and llama.cpp; Code Llama infill."""

from __future__ import annotations

import re
from pathlib import Path

import gguf
import pytest
import sentencepiece as spm

from herd.tokenizer import (
    SentencePieceTokenizer,
    Tokenizer,
    load_tokenizer,
    read_gguf_tokenizer,
    write_gguf_tokenizer,
)
from herd.tokenizer.sentencepiece_engine import INFILL_PIECES as INFILL


def _known_transformers_gap(text: str) -> bool:
    """Texts where transformers' Llama tokenizer is known to differ from SentencePiece: whitespace runs
    (counting the dummy-prefix space), which its converted BPE merges differently, and control-token
    strings, which transformers parses out of text."""
    return re.search(r"\s\s", " " + text) is not None or "<s>" in text or "</s>" in text


@pytest.fixture(scope="module")
def sp(llama2_dir: Path) -> spm.SentencePieceProcessor:
    return spm.SentencePieceProcessor(model_file=str(llama2_dir / "tokenizer.model"))


@pytest.fixture(scope="module")
def gguf_path(tmp_path_factory: pytest.TempPathFactory, llama2: Tokenizer) -> Path:
    """The trained tokenizer written into a metadata-only GGUF."""
    path = tmp_path_factory.mktemp("gguf") / "llama2-vocab.gguf"
    writer = gguf.GGUFWriter(path, "llama")
    write_gguf_tokenizer(writer, llama2)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_llama_settings(llama2: Tokenizer, sp: spm.SentencePieceProcessor) -> None:
    assert isinstance(llama2, SentencePieceTokenizer)
    assert (llama2.vocab_size, llama2.bos_id, llama2.eos_id) == (500, 1, 2)
    assert sp.id_to_piece(0) == "<unk>" and sp.piece_to_id("<0x41>") > 0  # byte fallback pieces
    spec = llama2.proto.trainer_spec
    assert spec.split_digits and spec.byte_fallback and llama2.proto.normalizer_spec.name == "identity"
    assert [sp.id_to_piece(i) for i in llama2.encode("2024")][-4:] == ["2", "0", "2", "4"]


def test_same_ids_as_sentencepiece(
    llama2: Tokenizer, sp: spm.SentencePieceProcessor, corpus: list[str]
) -> None:
    expected = [sp.encode(t) for t in corpus]
    assert [llama2.encode(t) for t in corpus] == expected
    assert llama2.encode_batch(corpus) == expected
    assert llama2.encode("hi", bos=True, eos=True) == [1, *sp.encode("hi"), 2]
    assert [llama2.decode(ids) for ids in expected] == [sp.decode(ids) for ids in expected]


@pytest.mark.slow
def test_same_ids_as_transformers(llama2: Tokenizer, llama2_dir: Path, corpus: list[str]) -> None:
    """Same ids as transformers' Llama tokenizers loaded from the same file, except known gaps."""
    from transformers import LlamaTokenizer, LlamaTokenizerFast

    for cls in (LlamaTokenizer, LlamaTokenizerFast):
        hf = cls.from_pretrained(str(llama2_dir))
        differ = [t for t in corpus if llama2.encode(t) != hf.encode(t, add_special_tokens=False)]
        assert [t for t in differ if not _known_transformers_gap(t)] == []
        assert sum(not _known_transformers_gap(t) for t in corpus) > 200  # enough texts were compared


def test_gguf_round_trip(llama2: Tokenizer, gguf_path: Path, corpus: list[str]) -> None:
    back = read_gguf_tokenizer(gguf_path)
    assert isinstance(back, SentencePieceTokenizer)
    assert back.vocab_size == llama2.vocab_size and back.special_tokens == llama2.special_tokens
    assert back.encode_batch(corpus) == llama2.encode_batch(corpus)
    assert load_tokenizer(gguf_path).encode("hello 123", bos=True) == llama2.encode("hello 123", bos=True)


def test_gguf_matches_llama_cpp(gguf_path: Path, llama2: Tokenizer, corpus: list[str]) -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    try:
        model = llama_cpp.Llama(str(gguf_path), vocab_only=True, verbose=False)
    except Exception as exc:  # a metadata-only GGUF may lack hyper-parameters this llama.cpp build wants
        pytest.skip(f"llama.cpp cannot open a vocabulary-only GGUF: {exc}")
    texts = [t for t in corpus if t.strip()]
    for text in texts:
        assert model.tokenize(text.encode(), add_bos=False, special=False) == llama2.encode(text), text


INFILL_CASES = [
    ("def add(a, b):\n    ", "\n    return c\n"),
    ("x = ", " + 1"),
    ("x = ", "y + 1"),
    ("中文", "🙂 end"),
]


def test_code_llama_infill_matches_meta_construction(
    llama2: SentencePieceTokenizer, sp: spm.SentencePieceProcessor
) -> None:
    """Prefix-suffix-middle prompt (Code Llama §2.3) built as Meta's reference does with sentencepiece:
    the suffix is encoded after a sentinel character whose pieces are then dropped (no leading space)."""
    pre, suf, mid, eot = (llama2.special_tokens[p] for p in INFILL)
    head = sp.encode("☺")
    for prefix, suffix in INFILL_CASES:
        with_sentinel = sp.encode("☺" + suffix)
        assert with_sentinel[: len(head)] == head
        expected = [1, pre, *sp.encode(prefix), suf, *with_sentinel[len(head) :], mid]
        assert llama2.encode_infill(prefix, suffix) == expected
    assert llama2.stop_ids == {2, eot}


@pytest.mark.slow
def test_code_llama_infill_prefix_matches_transformers(
    llama2: SentencePieceTokenizer, llama2_dir: Path
) -> None:
    """transformers' CodeLlamaTokenizer agrees up to <SUF>; transformers 5 then adds a '▁' before the
    suffix, which Meta's reference (and herd) do not."""
    from transformers import CodeLlamaTokenizer

    hf = CodeLlamaTokenizer.from_pretrained(str(llama2_dir))
    assert [hf.convert_tokens_to_ids(p) for p in INFILL] == [llama2.special_tokens[p] for p in INFILL]
    for prefix, suffix in INFILL_CASES:
        ours, theirs = llama2.encode_infill(prefix, suffix), hf(prefix, suffix=suffix)["input_ids"]
        cut = ours.index(llama2.special_tokens["▁<SUF>"]) + 1
        assert ours[:cut] == theirs[:cut]


def test_infill_needs_infill_tokens(llama2_dir: Path, tmp_path: Path, corpus: list[str]) -> None:
    from herd.tokenizer import TokenizerError
    from herd.tokenizer.train import train_tokenizer

    plain = train_tokenizer(iter(corpus), tmp_path, style="llama2", vocab_size=500, heldout=0).tokenizer
    assert isinstance(plain, SentencePieceTokenizer)
    with pytest.raises(TokenizerError, match="infilling"):
        plain.encode_infill("a", "b")


def test_control_strings_are_text_unless_allowed(llama2: Tokenizer, sp: spm.SentencePieceProcessor) -> None:
    text = "a </s> b <s> c ▁<EOT>"
    assert llama2.encode(text) == sp.encode(text)
    assert not any(llama2.is_special(i) for i in llama2.encode(text))
    allowed = llama2.encode(text, allow_special=True)
    assert {1, 2, llama2.special_tokens["▁<EOT>"]} <= set(allowed)
    assert allowed[: len(sp.encode("a "))] == sp.encode("a ")
