"""Both trainers treat a vocabulary the corpus cannot reach alike: the reachable size, said in the output."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
import sentencepiece as spm

from herd.cli import main
from herd.tokenizer import TiktokenTokenizer
from herd.tokenizer.train import LLAMA2_TRAINER, train_tokenizer

TINY_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "A tokenizer needs more text than this to learn many merges.",
    "Digits 0123456789 and a few symbols: {}, [], (), <>.",
] * 3


def sentencepiece_limit(texts: list[str], vocab_size: int) -> int:
    """The largest vocabulary SentencePiece itself accepts for ``texts``, from its hard-limit error."""
    lines = [line for text in texts for line in text.split("\n") if line.strip()]
    with pytest.raises(RuntimeError, match="Vocabulary size too high") as error:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines),
            model_writer=io.BytesIO(),
            vocab_size=vocab_size,
            minloglevel=2,
            **LLAMA2_TRAINER,
        )
    found = re.search(r"<= (\d+)", str(error.value))
    assert found is not None, error.value
    return int(found.group(1))


@pytest.mark.parametrize(("style", "unit"), [("llama2", "pieces"), ("llama3", "BPE ranks")])
def test_a_corpus_too_small_gives_the_size_it_supports_and_says_so(
    style: str, unit: str, tmp_path: Path
) -> None:
    result = train_tokenizer(iter(TINY_CORPUS), tmp_path / "a", style=style, vocab_size=5000, heldout=0)
    tokenizer = result.tokenizer
    reached = len(tokenizer.ranks) if isinstance(tokenizer, TiktokenTokenizer) else tokenizer.vocab_size
    assert result.requested_vocab_size == 5000 and result.trained_vocab_size == reached < 5000
    if style == "llama2":
        assert reached == sentencepiece_limit(TINY_CORPUS, 5000)
    else:
        assert tokenizer.vocab_size == reached + 256  # the specials still come on top
    line = f"asked for 5,000 {unit}, the corpus supports {reached:,}; trained {reached:,}"
    assert result.shortfall == line and result.report().splitlines()[0] == line
    # the reachable size is exactly the limit: asking for it trains the same model and says nothing
    again = train_tokenizer(iter(TINY_CORPUS), tmp_path / "b", style=style, vocab_size=reached, heldout=0)
    assert again.shortfall is None and again.trained_vocab_size == reached
    assert (tmp_path / "a" / "tokenizer.model").read_bytes() == (
        tmp_path / "b" / "tokenizer.model"
    ).read_bytes()


@pytest.mark.parametrize("style", ["llama2", "llama3"])
def test_cli_prints_the_line_and_json_carries_both_sizes(
    style: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(TINY_CORPUS))
    argv = ["tokenizer", "train", str(corpus), "--style", style, "--vocab-size", "5000", "--heldout", "0"]
    assert main([*argv, "-o", str(tmp_path / "text"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert re.search(
        r"^asked for 5,000 .+, the corpus supports [\d,]+; trained [\d,]+$", out, re.MULTILINE
    ), out
    assert main([*argv, "-o", str(tmp_path / "json"), "--quiet", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["requested_vocab_size"] == 5000 and summary["trained_vocab_size"] < 5000
