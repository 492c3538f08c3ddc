"""Bad invocations across every command: exit 2 (130 for Ctrl-C), one or two stderr lines, no traceback.

Each case is a command line plus the files it needs; the test runs it through
``herd.cli.main`` and also checks that nothing in the working directory changed
(a refused command never writes or deletes). Interrupts and standard input run
the real console entry point in a subprocess.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
from infer_helpers import tiny_model

import herd.infer.loading
from herd.checkpoint.base import CheckpointInfo
from herd.checkpoint.hf import write_hf
from herd.checkpoint.load import model_tensors
from herd.cli import _interrupted, main
from herd.errors import HerdError

Setup = Callable[[Path], None]


def _bad_config(root: Path) -> None:
    model = root / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": "big"}))


def _not_json(root: Path) -> None:
    (root / "model").mkdir()
    (root / "model" / "config.json").write_text("{ not json")


def _gguf_in_dir(root: Path) -> None:
    (root / "m").mkdir()
    (root / "m" / "model.gguf").write_bytes(b"GGUF" + b"\0" * 60)


def _user_dir(root: Path) -> None:
    (root / "notes").mkdir()
    (root / "notes" / "thesis.txt").write_text("two years of work\n")


def _pretrain_toml(root: Path) -> None:
    (root / "run.toml").write_text('[optim]\nlr = "fast"\n')


def _recipe(root: Path) -> None:
    (root / "recipe.toml").write_text("workers = [1, 2]\n")


def _text(root: Path) -> None:
    (root / "a.txt").write_text("hello world\n\nsecond document\n")


def _nothing(root: Path) -> None:
    return None


def _ppo_toml(root: Path) -> None:
    (root / "ppo.toml").write_text('init = "smollm2-135m-instruct"\nbetta = 0.2\n')


def _rlhf_toml(root: Path) -> None:
    (root / "rlhf.toml").write_text('init = "smollm2-135m-instruct"\n[[rounds]]\nstages = ["rs", "sft"]\n')
    (root / "stage.toml").write_text(
        'init = "smollm2-135m-instruct"\n[[round]]\nstages = ["rs", "sft", "dpo"]\n'
    )


TINY = ["llama2-tiny", "--random", "--prompt", "hi"]


def _runs_csv(root: Path) -> None:
    """A sweep's runs.csv, and copies with a missing column, a NaN loss and a negative FLOP count."""
    header = (
        "run,budget,params,non_embedding_params,tokens,flops,flops_6nd,val_loss,eval_task,eval_nll,eval_acc\n"
    )
    rows = [
        "r0,1e15,1000000,900000,166666667,1e15,1e15,3.2,arc_challenge,1.1,0.27\n",
        "r1,1e15,4000000,3600000,41666667,1e15,1e15,3.1,arc_challenge,1.05,0.3\n",
        "r2,1e16,4000000,3600000,416666667,1e16,1e16,2.9,arc_challenge,0.95,0.33\n",
    ]
    (root / "runs.csv").write_text(header + "".join(rows))
    (root / "bad.csv").write_text(header.replace(",eval_nll", "") + rows[0].replace(",1.1,", ","))
    (root / "nan.csv").write_text(header + rows[0] + rows[1].replace(",3.1,", ",nan,") + rows[2])
    (root / "negative.csv").write_text(
        header + rows[0].replace(",1e15,1e15,3.2", ",-1e15,1e15,3.2") + rows[2]
    )


def _eval_task(root: Path) -> None:
    """A tasks folder ``t``: a good spec on four questions, and specs with a missing key, one answer, a typo."""
    (root / "t").mkdir()
    rows = [{"q": f"Question {i}?", "options": ["yes", "no"], "label": i % 2} for i in range(4)]
    (root / "t" / "q.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = 'name = "{name}"\npath = "t/q.jsonl"\ntext = "{{q}}"\nchoices = "{choices}"\n'
    (root / "t" / "arc_easy.toml").write_text(
        spec.format(name="arc_easy", choices="options") + 'gold = "label"\n'
    )
    (root / "t" / "nogold.toml").write_text(spec.format(name="nogold", choices="options"))
    (root / "t" / "typo.toml").write_text(
        spec.format(name="typo", choices="options") + 'gold = "label"\nshotz = 1\n'
    )
    (root / "t" / "one.toml").write_text(
        'name = "one"\npath = "t/q.jsonl"\ntext = "{q}"\nchoice_values = ["yes"]\ngold = "label"\n'
    )


def _model_no_tokenizer(root: Path) -> None:
    """An HF model directory with weights but no tokenizer files, beside the eval tasks."""
    _eval_task(root)
    model = tiny_model("llama2-tiny")
    write_hf(root / "m", CheckpointInfo(model.config), model_tensors(model))


CASES: list[tuple[str, Setup, list[str]]] = [
    ("unknown command", _nothing, ["frobnicate"]),
    ("unknown flag", _nothing, ["model", "info", "llama3-tiny", "--frob"]),
    ("model info: no such preset or path", _nothing, ["model", "info", "llama9-huge"]),
    ("model info: negative --seq-len", _nothing, ["model", "info", "llama3-tiny", "--seq-len", "-5"]),
    ("model info: config of the wrong type", _bad_config, ["model", "info", "model"]),
    ("model info: config not JSON", _not_json, ["model", "info", "model"]),
    ("generate: device that does not exist", _nothing, ["generate", *TINY, "--device", "banana"]),
    ("generate: CUDA on a CPU machine", _nothing, ["generate", *TINY, "--device", "cuda:7"]),
    ("generate: negative length", _nothing, ["generate", *TINY, "--max-new-tokens", "-1"]),
    ("generate: top-p above 1", _nothing, ["generate", *TINY, "--top-p", "2"]),
    ("generate: negative temperature", _nothing, ["generate", *TINY, "--temperature", "-1"]),
    ("generate: top-k 0", _nothing, ["generate", *TINY, "--top-k", "0"]),
    ("generate: not a number", _nothing, ["generate", *TINY, "--temperature", "warm"]),
    ("generate: missing model", _nothing, ["generate", "nowhere/model.gguf", "--prompt", "hi"]),
    ("generate: empty prompt", _nothing, ["generate", "llama2-tiny", "--random", "--prompt", ""]),
    ("chat: unknown preset", _nothing, ["chat", "llama9-tiny", "--random"]),
    ("tokenizer encode: no such tokenizer", _nothing, ["tokenizer", "encode", "--bos", "TEXT"]),
    ("tokenizer decode: negative id", _nothing, ["tokenizer", "decode", "tok.model", "--", "-5"]),
    ("tokenizer train: vocab 0", _text, ["tokenizer", "train", "--style", "llama2", "--vocab-size", "0"]),
    (
        "tokenizer train: output is a file",
        _text,
        ["tokenizer", "train", "a.txt", "-o", "a.txt", "--style", "llama3", "--vocab-size", "300"],
    ),
    ("tokenizer info: a directory with nothing", _user_dir, ["tokenizer", "info", "notes"]),
    ("convert: no --to", _gguf_in_dir, ["convert", "m/model.gguf", "out"]),
    ("convert: into the source's directory", _gguf_in_dir, ["convert", "m/model.gguf", "m", "--to", "hf"]),
    ("convert: into a user's directory", _gguf_in_dir, ["convert", "m/model.gguf", "notes", "--to", "hf"]),
    ("convert: zero shards", _gguf_in_dir, ["convert", "m/model.gguf", "o", "--to", "meta", "--shards", "0"]),
    ("convert: missing source", _nothing, ["convert", "none", "out", "--to", "hf"]),
    ("convert: truncated GGUF", _gguf_in_dir, ["convert", "m/model.gguf", "out", "--to", "hf"]),
    ("pretrain: missing config", _nothing, ["pretrain", "nope.toml"]),
    ("pretrain: value of the wrong type", _pretrain_toml, ["pretrain", "run.toml"]),
    ("pretrain: negative restarts", _pretrain_toml, ["pretrain", "run.toml", "--max-restarts", "-1"]),
    ("pretrain: bad --set", _pretrain_toml, ["pretrain", "run.toml", "--set", "optim.lr"]),
    (
        "data build: zero workers",
        _recipe,
        ["data", "build", "recipe.toml", "--output", "o", "--workers", "0"],
    ),
    ("data build: recipe of the wrong type", _recipe, ["data", "build", "recipe.toml", "--output", "o"]),
    ("data build: missing recipe", _nothing, ["data", "build", "none.toml", "--output", "o"]),
    ("data stats: not a build", _user_dir, ["data", "stats", "notes"]),
    ("data train-lm: order 0", _text, ["data", "train-lm", "a.txt", "--order", "0", "--output", "lm.arpa"]),
    ("ppo: missing config", _nothing, ["ppo", "nope.toml"]),
    ("ppo: unknown config key", _ppo_toml, ["ppo", "ppo.toml", "-o", "run"]),
    (
        "ppo: unknown reward_program kind",
        lambda root: (root / "p.toml").write_text(
            'init = "smollm2-135m-instruct"\nreward_program = "lenght:20"\n[data]\ntrain = "t.jsonl"\n'
        ),
        ["ppo", "p.toml", "-o", "run"],
    ),
    ("rlhf: missing config", _nothing, ["rlhf", "nope.toml"]),
    ("rlhf: unknown config key", _rlhf_toml, ["rlhf", "rlhf.toml", "-o", "run"]),
    ("rlhf: unknown stage", _rlhf_toml, ["rlhf", "stage.toml", "-o", "run"]),
    (
        "gatt build: missing dialogues",
        _nothing,
        ["gatt", "build", "out", "--policy", "llama2-tiny", "--dialogues", "none.jsonl"],
    ),
    (
        "gatt eval: --model without LABEL=",
        _text,
        ["gatt", "eval", "out", "--model", "x", "--dialogues", "a.txt"],
    ),
    ("generate: neither --prompt nor infill", _nothing, ["generate", "llama2-tiny", "--random"]),
    (
        "generate: --prompt with infill",
        _nothing,
        [
            "generate",
            "llama2-tiny",
            "--random",
            "--prompt",
            "x",
            "--infill-prefix",
            "a",
            "--infill-suffix",
            "b",
        ],
    ),
    (
        "generate: --infill-prefix alone",
        _nothing,
        ["generate", "llama2-tiny", "--random", "--infill-prefix", "a"],
    ),
    (
        "generate: infill without Code Llama's tokens",
        _nothing,
        ["generate", "llama2-tiny", "--random", "--infill-prefix", "a", "--infill-suffix", "b"],
    ),
    (
        "plan: gpus not divisible",
        _nothing,
        ["plan", "llama2-7b", "--gpus", "12", "--tp", "8", "--batch-tokens", "4096"],
    ),
    ("plan: batch not divisible", _nothing, ["plan", "llama2-7b", "--gpus", "8", "--batch-tokens", "1000"]),
    (
        "plan: tp over the heads",
        _nothing,
        ["plan", "llama2-7b", "--gpus", "64", "--tp", "64", "--batch-tokens", "262144"],
    ),
    ("plan: no --gpus", _nothing, ["plan", "llama2-7b", "--batch-tokens", "4096"]),
    (
        "plan: mfu over 1",
        _nothing,
        ["plan", "llama2-7b", "--gpus", "8", "--batch-tokens", "32768", "--mfu", "2"],
    ),
    ("scaling predict: no target", _runs_csv, ["scaling", "predict", "runs.csv"]),
    ("scaling predict: missing runs", _nothing, ["scaling", "predict", "nope.csv", "--target-flops", "1e22"]),
    (
        "scaling predict: missing column",
        _runs_csv,
        ["scaling", "predict", "bad.csv", "--target-flops", "1e22"],
    ),
    (
        "scaling predict: chance over 1",
        _runs_csv,
        ["scaling", "predict", "runs.csv", "--target-flops", "1e22", "--chance", "2"],
    ),
    ("scaling fit: NaN loss", _runs_csv, ["scaling", "fit", "nan.csv"]),
    ("scaling fit: negative FLOPs", _runs_csv, ["scaling", "fit", "negative.csv"]),
    (
        "eval: unknown task",
        _eval_task,
        ["eval", "llama2-tiny", "--random", "--tasks", "arc_esay", "--tasks-dir", "t"],
    ),
    ("eval: no tasks", _nothing, ["eval", "llama2-tiny", "--random", "--tasks", ","]),
    (
        "eval: task missing a field",
        _eval_task,
        ["eval", "llama2-tiny", "--random", "--tasks", "t/nogold.toml"],
    ),
    ("eval: a choice list of one", _eval_task, ["eval", "llama2-tiny", "--random", "--tasks", "t/one.toml"]),
    ("eval: unknown task key", _eval_task, ["eval", "llama2-tiny", "--random", "--tasks", "t/typo.toml"]),
    ("eval: model without a tokenizer", _model_no_tokenizer, ["eval", "m", "--tasks", "t/arc_easy.toml"]),
    ("serve: missing model", _nothing, ["serve", "nope.gguf"]),
    ("serve: port out of range", _nothing, ["serve", "llama2-tiny", "--random", "--port", "70000"]),
    ("serve: negative queue", _nothing, ["serve", "llama2-tiny", "--random", "--max-queue", "-1"]),
    ("serve: unknown host", _nothing, ["serve", "llama2-tiny", "--random", "--host", "256.1.1.1"]),
    (
        "eval: negative --shots",
        _eval_task,
        ["eval", "llama2-tiny", "--random", "--tasks", "t/arc_easy.toml", "--shots", "-1"],
    ),
]


def _snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (hidden ones too) with a hash of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize(("setup", "argv"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_invocation_is_one_line_and_changes_nothing(
    setup: Setup,
    argv: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    setup(tmp_path)
    if not (tmp_path / "notes").exists():
        _user_dir(tmp_path)  # every case runs beside a user's files, which must stay as they are
    before = _snapshot(tmp_path)
    try:
        code = main(argv)
    except (
        SystemExit
    ) as exc:  # argparse's flag errors exit from inside main, as they do for the console script
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().split("\n")  # a progress bar redrawn with carriage returns is one line
    assert 1 <= len(lines) <= 2 and "error" in lines[-1], err
    assert "Traceback" not in err and "internal error" not in err
    assert _snapshot(tmp_path) == before


HERD = [str(Path(sys.executable).parent / "herd")]  # the console script a user runs


def _herd(*argv: str, stdin: bytes = b"", env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*HERD, *argv],
        input=stdin,
        capture_output=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["generate", "llama2-tiny", "--random", "--prompt", "-"],
        ["tokenizer", "encode", "{tokenizer}"],
    ],
    ids=["generate --prompt -", "tokenizer encode"],
)
def test_invalid_utf8_on_stdin_is_named(argv: list[str], llama3_tokenizer_dir: Path) -> None:
    argv = [a.format(tokenizer=llama3_tokenizer_dir / "tokenizer.model") for a in argv]
    result = _herd(*argv, stdin=b"caf\xc3 au lait", env={"LANG": "C", "LC_ALL": "C"})
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert err.strip() == "herd: error: standard input is not valid UTF-8 (byte 0xc3 at offset 3)"


@pytest.mark.parametrize("delay", [0.05, 0.3, 1.5], ids=["starting", "importing PyTorch", "later"])
def test_ctrl_c_exits_130_without_a_traceback(delay: float, default_sigint: Callable[[], None]) -> None:
    """SIGINT while herd starts, imports the command and PyTorch, or works, is exit 130 and one line."""
    process = subprocess.Popen(
        [*HERD, "generate", "llama2-tiny", "--random", "--prompt", "hi", "--max-new-tokens", "100000000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=default_sigint,
    )
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err.decode()
    assert b"Traceback" not in err and err.decode().strip().endswith("herd: error: interrupted")


# Calls herd.cli's SIGINT handler from the body of a module named torch, as when Ctrl-C lands in PyTorch's import.
IN_TORCH_IMPORT = """
from herd.cli import _interrupted
body = compile("import sys\\n_interrupted(2, sys._getframe())", "torch/__init__.py", "exec")
exec(body, {"__name__": "torch", "_interrupted": _interrupted})
print("the import went on")
"""


def test_ctrl_c_in_pytorchs_import_exits_at_once() -> None:
    """PyTorch's import swallows KeyboardInterrupt, so an interrupt there ends herd at once; elsewhere it raises."""
    result = subprocess.run(
        [sys.executable, "-c", IN_TORCH_IMPORT], capture_output=True, text=True, timeout=60
    )
    assert (result.returncode, result.stdout, result.stderr) == (130, "", "herd: error: interrupted\n")
    with pytest.raises(KeyboardInterrupt):
        _interrupted(signal.SIGINT, sys._getframe())


def test_internal_error_is_one_line_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bug (not bad input) is still one line, exit 1, with the way to see the traceback."""

    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(herd.infer.loading, "load_for_inference", broken)
    assert main(["generate", *TINY]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        "herd: error: internal error: ZeroDivisionError: division by zero "
        "(rerun with HERD_TRACEBACK=1 for the traceback)"
    )


def test_library_warnings_are_one_line_each_and_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A warning is ``herd: warning: MESSAGE (Category)``, without its source line, once however often it comes."""

    def noisy(*args: object, **kwargs: object) -> None:
        warnings.warn("TypedStorage is deprecated.\n  It will be removed", UserWarning, stacklevel=1)
        warnings.warn("TypedStorage is deprecated.\n  It will be removed", UserWarning, stacklevel=1)
        warnings.warn("a different one", FutureWarning, stacklevel=1)
        raise HerdError("no model today")

    monkeypatch.setattr(herd.infer.loading, "load_for_inference", noisy)
    shown_before = warnings.showwarning
    assert main(["generate", *TINY]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "herd: warning: TypedStorage is deprecated. It will be removed (UserWarning)",
        "herd: warning: a different one (FutureWarning)",
        "herd: error: no model today",
    ]
    assert warnings.showwarning is shown_before


WARN = (
    "import warnings, herd.cli\nwith herd.cli.warning_lines():\n    warnings.warn('old API', UserWarning)\n"
)


@pytest.mark.parametrize(
    ("options", "env"),
    [([], {}), (["-W", "default"], {}), ([], {"PYTHONWARNINGS": "default"})],
    ids=["plain", "-W default", "PYTHONWARNINGS=default"],
)
def test_python_warning_options_keep_pythons_format(options: list[str], env: dict[str, str]) -> None:
    base = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    result = subprocess.run(
        [sys.executable, *options, "-c", WARN], capture_output=True, text=True, env=base | env, timeout=60
    )
    if options or env:
        assert result.stderr == "<string>:3: UserWarning: old API\n"
    else:
        assert result.stderr == "herd: warning: old API (UserWarning)\n"


@pytest.mark.parametrize(
    ("argv", "read"),
    [
        (["--help"], 0),
        (["model", "presets"], 0),
        (["tokenizer", "encode", "{tokenizer}", "--file", "{text}", "--pieces"], 10),
    ],
    ids=["--help", "model presets", "tokenizer encode | head -c 10"],
)
def test_closed_pipe_is_quiet(argv: list[str], read: int, llama3_tokenizer_dir: Path, tmp_path: Path) -> None:
    """``herd ... | head``: the reader leaving, before the output or in its middle, is not an error."""
    (tmp_path / "big.txt").write_text("hello world " * 100_000)
    paths = {"tokenizer": llama3_tokenizer_dir / "tokenizer.model", "text": tmp_path / "big.txt"}
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # block-buffered, as in a shell
    process = subprocess.Popen(
        [*HERD, *(a.format(**paths) for a in argv)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert process.stdout is not None and process.stderr is not None
    assert len(process.stdout.read(read)) == read
    process.stdout.close()
    err = process.stderr.read()
    assert process.wait(timeout=120) == 0 and err == b"", err.decode()
