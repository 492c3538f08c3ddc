"""``herd tokenizer decode`` reads standard input: whatever ``herd tokenizer encode`` prints round-trips."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from herd.cli import main
from herd.cli.tokenizer import parse_ids
from herd.tokenizer import TiktokenTokenizer
from herd.tokenizer.base import TokenizerError

ENCODE_FORMATS = {
    "plain": [],
    "json": ["--json"],
    "pieces": ["--pieces"],
    "json-pieces": ["--json", "--pieces"],
}


def run(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, argv: list[str], stdin: bytes
) -> str:
    """``herd ARGV`` with ``stdin`` on standard input (as bytes, as a pipe gives them); its stdout."""
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="ascii"))
    assert main(argv) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("fmt", list(ENCODE_FORMATS))
def test_encode_output_decodes_back_to_the_text(
    fmt: str,
    llama3_trained_dir: Path,
    corpus: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A small tiktoken model (it loads in milliseconds), so every probe runs through both commands."""
    tok = str(llama3_trained_dir)
    for text in corpus[-17:]:  # the hand-written probes: scripts, emoji, tabs, whitespace runs, specials
        assert main(["tokenizer", "encode", tok, text, *ENCODE_FORMATS[fmt]]) == 0
        printed = capsys.readouterr().out
        assert run(capsys, monkeypatch, ["tokenizer", "decode", tok], printed.encode()) == text + "\n"


def test_special_ids_separated_by_commas(
    llama3_model: Path,
    llama3: TiktokenTokenizer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ids = llama3.encode("<|eot_id|> is special", allow_special=True, bos=True)
    assert ids[:2] == [128000, 128009]
    stdin = ",".join(map(str, ids)).encode()
    assert run(capsys, monkeypatch, ["tokenizer", "decode", str(llama3_model), "--json"], stdin) == (
        '{"text": "<|begin_of_text|><|eot_id|> is special"}\n'
    )


def test_a_real_pipe_between_the_console_scripts(llama3_model: Path) -> None:
    herd = str(Path(sys.executable).parent / "herd")
    text = "Pipes carry ids: 12345 — ünïcödé 🙂\ttab"
    encoded = subprocess.run(
        [herd, "tokenizer", "encode", str(llama3_model), text], capture_output=True, check=True
    )
    decoded = subprocess.run(
        [herd, "tokenizer", "decode", str(llama3_model)],
        input=encoded.stdout,
        capture_output=True,
        check=True,
    )
    assert decoded.stdout.decode() == text + "\n"


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        ("9906 1917\n", [9906, 1917]),
        ("9906,1917", [9906, 1917]),
        (" 9906 ,\n 1917 , ", [9906, 1917]),
        ("[9906, 1917]", [9906, 1917]),
        ('{"ids": [9906, 1917], "pieces": ["Hello", "Ġworld"]}', [9906, 1917]),
        ("9906\tHello\n1917\tĠworld\n", [9906, 1917]),
        ("", []),
        ("\n", []),
    ],
)
def test_parse_ids(text: str, ids: list[int]) -> None:
    assert parse_ids(text) == ids


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("12 abc", "standard input: 'abc' is not a token id"),
        ("12 -5", "standard input: '-5' is not a token id"),
        ("١٢", "standard input: '١٢' is not a token id"),  # Arabic-Indic digits are not ids
        ("[1, 2.5]", 'standard input: expected a JSON list of token ids or {"ids": [...]}'),
        ('{"text": "hi"}', 'standard input: expected a JSON list of token ids or {"ids": [...]}'),
        ("[1, true]", 'standard input: expected a JSON list of token ids or {"ids": [...]}'),
        ("[1, 2", "standard input: not valid JSON"),
    ],
)
def test_bad_input_is_one_line(text: str, message: str) -> None:
    with pytest.raises(TokenizerError) as error:
        parse_ids(text)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_out_of_range_id_on_stdin_is_one_line(
    llama3_model: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"1 999999")))
    assert main(["tokenizer", "decode", str(llama3_model)]) == 2
    assert "token id 999999 is outside [0, 128256)" in capsys.readouterr().err
