"""``herd generate --infill-prefix/--infill-suffix``: Code Llama infilling from the command line, the same
middle as :func:`herd.infer.infilling.infill`, and the flag combinations it refuses (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from herd.cli import main
from herd.infer.engine import Engine
from herd.infer.infilling import infill
from herd.infer.loading import load_for_inference
from herd.tokenizer.sentencepiece_engine import INFILL_PIECES
from herd.tokenizer.train import train_tokenizer

PREFIX, SUFFIX = "def add(a, b):\n    ", "\n    return c\n"
DOCS = ["def add(a, b):\n    c = a + b\n    return c\n", "x = <PRE> y + 1  # déjà vu"] * 4


@pytest.fixture(scope="module")
def code_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SentencePiece tokenizer (vocab 400) with Code Llama's four infilling tokens."""
    out = tmp_path_factory.mktemp("tok") / "codellama"
    train_tokenizer(iter(DOCS), out, style="llama2", vocab_size=400, specials=list(INFILL_PIECES), heldout=0)
    return out


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_infill_json_is_the_api_middle(capsys: pytest.CaptureFixture[str], code_tokenizer: Path) -> None:
    args = ["generate", "codellama-tiny", "--random", "--tokenizer", str(code_tokenizer)]
    args += ["--infill-prefix", PREFIX, "--infill-suffix", SUFFIX, "--max-new-tokens", "6"]
    code, out, err = run(capsys, *args, "--json")
    assert code == 0, err
    result = json.loads(out)
    model, tokenizer = load_for_inference("codellama-tiny", tokenizer=str(code_tokenizer), random=True)
    expected = infill(Engine(model), tokenizer, PREFIX, SUFFIX, max_new_tokens=6)
    assert result["token_ids"] == expected.token_ids and result["text"] == expected.text
    assert result["prompt_tokens"] == expected.prompt_tokens > 4
    code, out, err = run(capsys, *args)  # streamed: the same text, then the summary on stderr
    assert code == 0 and out == expected.text + "\n" and f"prompt {expected.prompt_tokens} tokens" in err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--prompt", "x", "--infill-prefix", "a", "--infill-suffix", "b"], "not both"),
        (["--infill-prefix", "a"], "--infill-suffix together"),
        (["--infill-suffix", "b"], "--infill-suffix together"),
        ([], "give --prompt, or --infill-prefix"),
        (["--infill-prefix", "a", "--infill-suffix", "b", "--truncate", "left"], "do not apply"),
        (["--infill-prefix", "a", "--infill-suffix", "b", "--no-bos"], "do not apply"),
        (
            ["--infill-prefix", "a", "--infill-suffix", "b"],
            "no infilling token(s) ▁<PRE> ▁<SUF> ▁<MID> ▁<EOT>",
        ),
    ],
)
def test_bad_infill_flags_are_one_line_errors(
    capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    """The last case has no --tokenizer: a --random preset's byte-level tokenizer has no infilling tokens."""
    code, _out, err = run(capsys, "generate", "codellama-tiny", "--random", *flags)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("herd: error: "), err
    assert message in lines[0]
