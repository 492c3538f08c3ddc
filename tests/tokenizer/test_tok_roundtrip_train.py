"""Round trips on arbitrary Unicode, trained tokenizers in plain tiktoken, the CLI, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tiktoken
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tiktoken.load import load_tiktoken_bpe

from herd.cli import main
from herd.errors import HerdError
from herd.tokenizer import TiktokenTokenizer, Tokenizer, TokenizerError, check_vocab_fits, load_tokenizer
from herd.tokenizer.corpus import iter_documents, total_bytes
from herd.tokenizer.tiktoken_engine import LLAMA3_PATTERN

# SentencePiece turns "▁" (U+2581, its whitespace marker) into a space when decoding: not round-trippable.
# Lone surrogates have no UTF-8 form; they are an error (tested below), not text.
TEXT = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=200)
SP_TEXT = st.text(
    alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\u2581"), max_size=200
)
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FAST
@given(text=TEXT)
def test_llama3_round_trip(llama3: TiktokenTokenizer, text: str) -> None:
    assert llama3.decode(llama3.encode(text)) == text


@FAST
@given(text=SP_TEXT)
def test_llama2_round_trip_with_byte_fallback(llama2: Tokenizer, text: str) -> None:
    ids = llama2.encode(text)
    assert llama2.decode(ids) == text
    assert 0 not in ids  # byte fallback: never <unk>


@FAST
@given(text=TEXT)
def test_trained_llama3_round_trip(llama3_trained_dir: Path, text: str) -> None:
    tokenizer = load_tokenizer(llama3_trained_dir)
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_trained_llama3_loads_in_plain_tiktoken(llama3_trained_dir: Path, corpus: list[str]) -> None:
    ours = load_tokenizer(llama3_trained_dir)
    assert isinstance(ours, TiktokenTokenizer)
    table = json.loads((llama3_trained_dir / "special_tokens.json").read_text())["special_tokens"]
    ranks = load_tiktoken_bpe(str(llama3_trained_dir / "tokenizer.model"))
    plain = tiktoken.Encoding("trained", pat_str=LLAMA3_PATTERN, mergeable_ranks=ranks, special_tokens=table)
    assert len(ranks) == 1000 and ours.vocab_size == 1256
    assert ours.special_tokens == table and table["<|begin_of_text|>"] == 1000 and table["<|eot_id|>"] == 1009
    assert ours.encode_batch(corpus) == plain.encode_ordinary_batch(corpus)
    text = "hi <|eot_id|> there"
    assert ours.encode(text, allow_special=True) == plain.encode(text, allowed_special="all")
    assert ours.encode(text) == plain.encode_ordinary(text)


def test_cli_train_jsonl_reports_against_reference(
    tmp_path: Path, corpus: list[str], llama3_model: Path, capsys
) -> None:
    data = tmp_path / "corpus.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in corpus), encoding="utf-8")
    out = tmp_path / "tok"
    argv = ["tokenizer", "train", str(data), "-o", str(out), "--style", "llama3", "--vocab-size", "600"]
    assert (
        main([*argv, "--heldout", "0.05", "--reference", str(llama3_model), "--quiet", "--special", "<tool>"])
        == 0
    )
    report = capsys.readouterr().out
    assert "bytes/token" in report and "tokens/word" in report and str(llama3_model)[-30:] in report
    tokenizer = load_tokenizer(out)
    assert tokenizer.special_tokens["<tool>"] == 600 + 2  # the first reserved slot
    assert main(["tokenizer", "encode", str(out), "hello"]) == 0
    ids = capsys.readouterr().out.split()
    assert [int(i) for i in ids] == tokenizer.encode("hello")
    assert main(["tokenizer", "decode", str(out), *ids]) == 0
    assert capsys.readouterr().out == "hello\n"


def test_parquet_input_errors_are_clear(tmp_path: Path) -> None:
    path = tmp_path / "data.parquet"
    path.write_bytes(b"PAR1 not really")
    try:
        import pyarrow  # noqa: F401

        match = "not a readable Parquet file"
    except ImportError:
        match = "needs pyarrow"
    with pytest.raises(HerdError, match=match):
        list(iter_documents([path]))
    argv = [
        "tokenizer",
        "train",
        str(path),
        "-o",
        str(tmp_path / "o"),
        "--style",
        "llama2",
        "--vocab-size",
        "300",
    ]
    assert main([*argv, "--quiet"]) == 2


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "empty"),
        (b"\x00\x01garbage that is not a model", "not a tokenizer herd can read"),
        (b"IQ== 0\nnot-base64!! 1\n", "line 2"),
        (b"{ not json", "not a valid tokenizer.json"),
        (b"GGUF\x03\x00\x00\x00truncated", "GGUF"),
    ],
)
def test_corrupt_files(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "tokenizer.model"
    path.write_bytes(content)
    with pytest.raises(TokenizerError, match=match) as info:
        load_tokenizer(path)
    assert str(path) in str(info.value)


def test_missing_files(tmp_path: Path) -> None:
    with pytest.raises(TokenizerError, match="no such tokenizer"):
        load_tokenizer(tmp_path / "nope.model")
    with pytest.raises(TokenizerError, match="cannot find the tokenizer"):
        load_tokenizer(tmp_path)
    assert main(["tokenizer", "info", str(tmp_path / "nope")]) == 2


def test_vocab_must_fit_the_model(llama3: TiktokenTokenizer) -> None:
    check_vocab_fits(llama3, 128_256)
    check_vocab_fits(llama3, 130_000)
    with pytest.raises(TokenizerError, match="128256 ids but the model's vocabulary has only 32000 rows"):
        check_vocab_fits(llama3, 32_000)


def test_invalid_utf8_and_surrogates(llama3: TiktokenTokenizer, llama2: Tokenizer, tmp_path: Path) -> None:
    for tokenizer in (llama3, llama2):
        assert tokenizer.encode("é".encode()) == tokenizer.encode("é")
        with pytest.raises(TokenizerError, match="invalid UTF-8 at byte 1"):
            tokenizer.encode(b"a\xff")
        with pytest.raises(TokenizerError, match="lone surrogate"):
            tokenizer.encode("a\udcff")
        with pytest.raises(TokenizerError, match="text 1: invalid UTF-8"):
            tokenizer.encode_batch(["ok", b"\xc3"])
        with pytest.raises(TokenizerError, match="outside"):
            tokenizer.decode([tokenizer.vocab_size])
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"abc\xfe")
    assert main(["tokenizer", "encode", str(tmp_path / "x"), "--file", str(bad)]) == 2


def test_compressed_inputs_as_the_data_pipeline_writes_them(tmp_path: Path) -> None:
    """``herd data build`` writes .jsonl.gz/.zst; the trainer streams them like plain files."""
    import gzip
    import json

    import zstandard

    records = [{"text": "first document"}, {"text": "second one, ünïcödé"}]
    body = "".join(json.dumps(r) + "\n" for r in records).encode()
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(body))
    (tmp_path / "b.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(body))
    (tmp_path / "c.txt.gz").write_bytes(gzip.compress(b"plain\ntext\n\nsecond block\n"))
    paths = [tmp_path / "a.jsonl.gz", tmp_path / "b.jsonl.zst", tmp_path / "c.txt.gz"]
    expected = [r["text"] for r in records] * 2 + ["plain\ntext", "second block"]
    assert list(iter_documents(paths)) == expected
    (tmp_path / "bad.jsonl.gz").write_bytes(gzip.compress(body)[:20])
    with pytest.raises(HerdError, match=r"bad\.jsonl\.gz"):
        list(iter_documents([tmp_path / "bad.jsonl.gz"]))


def test_every_compression_herd_reads_is_streamed_as_its_inner_format(tmp_path: Path) -> None:
    """The corpus reader strips each suffix :mod:`herd.io.compression` opens (.xz too), so a compressed
    JSONL file is read as JSONL, not as plain text."""
    import bz2
    import lzma

    body = b'{"text": "one"}\n{"text": "two"}\n'
    (tmp_path / "a.jsonl.xz").write_bytes(lzma.compress(body))
    (tmp_path / "b.jsonl.bz2").write_bytes(bz2.compress(body))
    assert list(iter_documents([tmp_path / "a.jsonl.xz", tmp_path / "b.jsonl.bz2"])) == ["one", "two"] * 2


def test_the_progress_total_is_never_passed(tmp_path: Path) -> None:
    """The trainer's progress counts the UTF-8 bytes of the documents: plain inputs total their size on
    disk, which bounds that; a compressed or Parquet input, whose text outgrows the file, has no total."""
    import gzip

    text = "ünïcödé text, repeated.\n" * 200 + "\n" + '{"text": "a JSON line"}\n' * 5
    (tmp_path / "a.txt").write_text(text, encoding="utf-8")
    (tmp_path / "b.jsonl").write_text('{"text": "caf\\u00e9"}\n', encoding="utf-8")
    (tmp_path / "a.txt.gz").write_bytes(gzip.compress(text.encode()))
    plain = [tmp_path / "a.txt", tmp_path / "b.jsonl"]
    read = sum(len(d.encode("utf-8")) for d in iter_documents(plain))
    assert read <= total_bytes(plain) == sum(p.stat().st_size for p in plain)
    compressed = [tmp_path / "a.txt.gz"]
    assert sum(len(d.encode("utf-8")) for d in iter_documents(compressed)) > compressed[0].stat().st_size
    assert total_bytes(compressed) is None and total_bytes([*plain, *compressed]) is None
    (tmp_path / "c.parquet").write_bytes(b"PAR1")  # never opened: the suffix decides
    assert total_bytes([tmp_path / "c.parquet"]) is None
