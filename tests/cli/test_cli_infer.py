"""``herd generate`` and ``herd chat`` through ``herd.cli.main``: output, streaming, and bad input (exit 2)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from infer_helpers import tiny_model

import herd
import herd.cli.model_flags as model_flags
import herd.infer.quantize as quantize
from herd.checkpoint.base import CheckpointInfo
from herd.checkpoint.hf import write_hf
from herd.checkpoint.load import model_tensors
from herd.cli import main
from herd.infer import generate
from herd.model.presets import get_preset
from herd.tokenizer import load_tokenizer

TINY = ["llama2-tiny", "--random"]  # context 256, byte-level fallback tokenizer (BOS + UTF-8 bytes)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def expect_error(capsys: pytest.CaptureFixture[str], message: str, *argv: str) -> None:
    code, _out, err = run(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("herd: error: ") and message in lines[0], err
    assert "Traceback" not in err


def test_generate_random_preset_json(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_json(capsys, "generate", *TINY, "--prompt", "hello", "--max-new-tokens", "7", "--ignore-eos")
    assert len(result["token_ids"]) == 7 and result["finish_reason"] == "length"
    assert result["prompt_tokens"] == 6 and isinstance(result["text"], str) and len(result["logprobs"]) == 7


@pytest.mark.slow
def test_generate_smollm2_streams_what_the_api_returns(
    capsys: pytest.CaptureFixture[str], smollm2_gguf: Path
) -> None:
    args = ["generate", str(smollm2_gguf), "--prompt", "The capital of France is", "--max-new-tokens", "12"]
    code, out, err = run(capsys, *args)
    assert code == 0 and "[length: 12 tokens" in err
    result = run_json(capsys, *args)
    model, tokenizer = herd.load_model(smollm2_gguf), load_tokenizer(smollm2_gguf)
    expected = generate(model, tokenizer, "The capital of France is", max_new_tokens=12)[0]
    assert out == result["text"] + "\n" and result["token_ids"] == expected.token_ids
    assert expected.text.startswith(" Paris")


def test_generate_sampling_flags_and_seed(capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "generate",
        *TINY,
        "--prompt",
        "hi",
        "--max-new-tokens",
        "8",
        "--temperature",
        "1.2",
        "--top-k",
        "40",
    ]
    first = run_json(capsys, *args, "--top-p", "0.9", "--min-p", "0.01", "--seed", "5")["token_ids"]
    assert first == run_json(capsys, *args, "--top-p", "0.9", "--min-p", "0.01", "--seed", "5")["token_ids"]
    assert first != run_json(capsys, *args, "--seed", "6")["token_ids"]


def test_prompt_longer_than_the_context(capsys: pytest.CaptureFixture[str]) -> None:
    long = "x" * 300
    expect_error(
        capsys, "prompt 0 has 301 tokens but the model's context is 256", "generate", *TINY, "--prompt", long
    )
    result = run_json(
        capsys, "generate", *TINY, "--prompt", long, "--truncate", "left", "--max-new-tokens", "6"
    )
    assert result["truncated_tokens"] == 301 - 250 and result["prompt_tokens"] == 250
    assert len(result["token_ids"]) <= 6


def test_max_new_tokens_past_the_context_stops_there(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_json(
        capsys, "generate", *TINY, "--prompt", "y" * 249, "--max-new-tokens", "50", "--ignore-eos"
    )
    assert result["finish_reason"] == "context" and len(result["token_ids"]) == 256 - 250


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--temperature", "-1"], "temperature must be a finite number >= 0"),
        (["--top-p", "2"], "top_p must be in (0, 1]"),
        (["--top-k", "0"], "top_k must be an integer >= 1"),
        (["--min-p", "1.5"], "min_p must be in [0, 1]"),
        (["--repetition-penalty", "0"], "repetition_penalty must be"),
        (["--greedy", "--top-k", "5"], "--greedy cannot be combined"),
        (["--max-new-tokens", "0"], "max_new_tokens must be a positive integer"),
    ],
)
def test_invalid_sampling_values(capsys: pytest.CaptureFixture[str], flags: list[str], message: str) -> None:
    expect_error(capsys, message, "generate", *TINY, "--prompt", "hi", *flags)


def test_bad_models_and_prompts(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    expect_error(capsys, "the prompt is empty", "generate", *TINY, "--prompt", "")
    expect_error(capsys, "add --random", "generate", "llama2-tiny", "--prompt", "hi")
    expect_error(capsys, "no such checkpoint", "generate", str(tmp_path / "missing"), "--prompt", "hi")
    expect_error(
        capsys, "--random needs a preset name", "generate", str(tmp_path), "--random", "--prompt", "hi"
    )
    model = tiny_model()
    write_hf(tmp_path / "hf", CheckpointInfo(model.config), model_tensors(model))
    expect_error(
        capsys, "no tokenizer found with the model", "generate", str(tmp_path / "hf"), "--prompt", "hi"
    )


def test_a_run_directory_generates_through_its_hf_export(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, llama3_tokenizer_dir: Path
) -> None:
    """herd generate, chat and serve take a pretraining run's directory for its export ``<run>/hf``."""
    vocab = load_tokenizer(llama3_tokenizer_dir).vocab_size
    model = tiny_model(get_preset("llama3-tiny").replace(vocab_size=vocab))
    write_hf(tmp_path / "run" / "hf", CheckpointInfo(model.config), model_tensors(model))
    (tmp_path / "run" / "metrics.jsonl").write_text("")
    outputs = [
        run_json(
            capsys,
            "generate",
            str(path),
            "--tokenizer",
            str(llama3_tokenizer_dir),
            "--prompt",
            "hi",
            "--json",
        )
        for path in (tmp_path / "run", tmp_path / "run" / "hf")
    ]
    assert outputs[0]["token_ids"] == outputs[1]["token_ids"] and len(outputs[0]["token_ids"]) > 0


def test_tokenizer_larger_than_the_model(capsys: pytest.CaptureFixture[str], smollm2_gguf: Path) -> None:
    expect_error(
        capsys, "would not fit", "generate", *TINY, "--tokenizer", str(smollm2_gguf), "--prompt", "hi"
    )


def chat(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, stdin: str, *argv: str):
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return run(capsys, "chat", *argv)


@pytest.mark.slow
def test_chat_smollm2_piped(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, smollm2_gguf: Path
) -> None:
    stdin = "What is the capital of France?\n\n/reset\nWhat is the capital of France?\n/exit\nnever read\n"
    code, out, err = chat(capsys, monkeypatch, stdin, str(smollm2_gguf), "--greedy", "--max-new-tokens", "24")
    assert code == 0 and "[conversation reset]" in err
    replies = out.strip("\n").split("\n")
    assert len(replies) == 2 and replies[0] == replies[1] and "Paris" in replies[0]


@pytest.mark.slow
def test_herd_chat_returns_what_the_command_prints(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, smollm2_gguf: Path
) -> None:
    question = "What is the capital of France?"
    code, out, err = chat(
        capsys, monkeypatch, question + "\n", str(smollm2_gguf), "--greedy", "--max-new-tokens", "16"
    )
    model, tokenizer = herd.load_model(smollm2_gguf), load_tokenizer(smollm2_gguf)
    reply = herd.chat(
        model, tokenizer, [{"role": "user", "content": question}], max_new_tokens=16, temperature=0
    )
    assert code == 0 and "Paris" in reply and out == reply + "\n", err


# Six messages that fill the byte-level model's context of 256 (old ones are dropped), then one that
# cannot fit, then one more. Seeded: the random model samples bytes, and an unseeded newline byte would
# change the count of replies.
TRIMMED_TURNS = "".join(f"message {i} " + "z" * 60 + "\n" for i in range(6)) + "w" * 400 + "\nlast\n"
TRIMMED_ARGS = (*TINY, "--max-new-tokens", "20", "--system", "be brief", "--seed", "0")


def test_piped_chat_stops_at_the_first_failed_turn(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = chat(capsys, monkeypatch, TRIMMED_TURNS, *TRIMMED_ARGS)
    assert code == 2
    # BOS, "[INST] <<SYS>>\nbe brief\n<</SYS>>\n\n" (34 bytes), 400 w's, " [/INST]" (8): 443 tokens
    assert (
        err
        == "herd: error: the message does not fit the context: 443 tokens plus 20 for the reply exceed 256\n"
    )
    assert out.count("\n") == 6  # the six messages before it were answered, "last" was never read


class Terminal(io.StringIO):
    """Standard input typed by a person."""

    def isatty(self) -> bool:
        return True


def test_interactive_chat_goes_on_after_a_failed_turn_and_exits_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", Terminal(TRIMMED_TURNS))
    code, out, err = run(capsys, "chat", *TRIMMED_ARGS)
    assert code == 2
    assert err.count("herd: error: the message does not fit the context") == 1
    assert out.count("\n") == 7  # every other message was answered
    monkeypatch.setattr("sys.stdin", Terminal("hello\n/exit\n"))
    assert run(capsys, "chat", *TRIMMED_ARGS)[0] == 0


def test_chat_ctrl_c_ends_cleanly(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    class Interrupted(io.StringIO):
        def readline(self, *args: object) -> str:
            raise KeyboardInterrupt

    monkeypatch.setattr("sys.stdin", Interrupted())
    code, _out, err = run(capsys, "chat", *TINY)
    assert code == 0 and "Traceback" not in err


def test_help_explains(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("generate", "chat"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        out = capsys.readouterr().out
        assert (
            "--max-new-tokens" in out and "--quantize" in out and "--random" in out and "--threads N" in out
        )
    with pytest.raises(SystemExit):
        main(["chat", "--help"])
    assert "piped input stops at the first failed turn" in capsys.readouterr().out


def test_quantization_choices_are_the_librarys() -> None:
    """The command line writes them out (its --help imports no PyTorch): herd.infer.quantize's."""
    assert (model_flags.QUANT_MODES, model_flags.INT4_GROUP_SIZES) == (
        quantize.QUANT_MODES,
        quantize.INT4_GROUP_SIZES,
    )


def test_threads_sets_pytorch_threads(capsys: pytest.CaptureFixture[str]) -> None:
    before = torch.get_num_threads()
    wanted = 1 if before > 1 else 2
    try:
        result = run_json(
            capsys, "generate", *TINY, "--prompt", "hi", "--max-new-tokens", "2", "--threads", str(wanted)
        )
        assert torch.get_num_threads() == wanted and len(result["token_ids"]) <= 2
    finally:
        torch.set_num_threads(before)
    with pytest.raises(SystemExit) as exit_:
        main(["generate", *TINY, "--prompt", "hi", "--threads", "0"])
    assert (
        exit_.value.code == 2 and "argument --threads: must be at least 1, got 0" in capsys.readouterr().err
    )
