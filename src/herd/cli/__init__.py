"""The single ``herd`` command line: one tree, one module of commands per stage.

Every stage's commands live in ``herd.cli.<stage>`` (the stage packages hold no
command-line code). Each such module exposes ``register(sub)``, which adds its
parser(s) to the top-level subparsers and sets ``func`` to a callable taking the
parsed ``argparse.Namespace`` and returning an exit code. :data:`COMMANDS` lists
every top-level command with its module and one-line help, in ``herd --help``
order, so that ``herd --help`` and ``herd --version`` import no command module
(and no PyTorch) and ``herd COMMAND ...`` imports only that command's module.
Errors caused by input are :class:`herd.errors.HerdError` (or ``OSError``) and
are printed as one line (``herd: error: ...``) with exit code 2; see
:func:`main` for the others.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import os
import signal
import sys
import threading
import traceback
import warnings
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import NoReturn

from herd import __version__
from herd.errors import HerdError


@dataclass(frozen=True)
class Command:
    """A top-level command: its name, the module of ``herd.cli`` that registers it, its ``--help`` line."""

    name: str
    module: str
    help: str


# Every top-level command in --help order. A module that registers several commands (infer: generate
# and chat) lists them next to each other. tests/cli/test_cli_startup.py checks that each module
# registers exactly its commands, in this order and with this help.
COMMANDS = (
    Command("model", "model", "inspect model architectures and presets"),
    Command("convert", "checkpoint", "convert a checkpoint between hf, meta and gguf"),
    Command(
        "tokenizer",
        "tokenizer",
        "train, inspect and run tokenizers (SentencePiece, tiktoken, tokenizer.json, GGUF)",
    ),
    Command("generate", "infer", "continue a prompt (streaming, KV-cached)"),
    Command("chat", "infer", "interactive, streaming chat in the model's chat format"),
    Command("data", "data", "build pretraining data from raw sources"),
    Command("pretrain", "train", "pretrain a Llama-family model on packed token shards"),
    Command("average", "posttrain", "average checkpoints of one architecture (Llama 3 model averaging)"),
    Command("sft", "posttrain", "supervised fine-tuning on chat conversations (Llama 2 SFT)"),
    Command(
        "rs",
        "posttrain",
        "rejection sampling: the reward model's best of K answers per prompt as SFT data (Llama 2)",
    ),
    Command("rm", "posttrain", "train a reward model on preference pairs (Llama 2 reward models)"),
    Command("dpo", "posttrain", "direct preference optimisation on preference pairs (Llama 3 DPO)"),
    Command("ppo", "posttrain", "PPO of a chat model against reward models (Llama 2 RLHF)"),
    Command(
        "rlhf",
        "posttrain",
        "iterative RLHF: rounds of rejection sampling, SFT and PPO, each from the last (Llama 2 RLHF-V1..V5)",
    ),
    Command(
        "gatt",
        "posttrain",
        "Ghost Attention: multi-turn SFT data that keeps a first-turn instruction in force (Llama 2)",
    ),
    Command(
        "eval",
        "eval",
        "score a model on benchmarks: multiple choice, generation, code, perplexity (lm-eval's methods)",
    ),
    Command(
        "scaling",
        "scaling",
        "scaling laws: IsoFLOP sweeps, Chinchilla and Llama 3 fits, downstream prediction",
    ),
    Command("serve", "serve", "serve a model over an OpenAI-compatible HTTP API, with a browser chat page"),
    Command(
        "plan",
        "plan",
        "plan a pretraining cluster: batch, memory per GPU, FLOPs and time per step (Llama 3 Table 4)",
    ),
)


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``herd generate: error: argument --top-p: ... (see --help)``.

    Subcommand parsers are made with the parent's class, so every command in
    the tree reports a bad flag the same way, without the multi-line usage.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(commands: Collection[str] | None = None) -> argparse.ArgumentParser:
    """The top-level parser: every command complete, or only those named in ``commands``.

    A command left out is still listed (name and help, for ``herd --help`` and
    the "invalid choice" message) without importing its module.
    """
    parser = Parser(
        prog="herd",
        description="The Llama family recipe: data, tokenizers, models, checkpoints, training, inference.",
        epilog="Every command explains itself: herd COMMAND --help. Flags mean the same everywhere: "
        "-o/--output where a command writes, --set KEY=VALUE overrides a config key, --json prints "
        "the result as one JSON object, --quiet hides progress, --dtype is fp32, bf16 or fp16.",
    )
    parser.add_argument("--version", action="version", version=f"herd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = {c.module for c in COMMANDS if commands is None or c.name in commands}
    for command in COMMANDS:
        if command.name in sub.choices:  # registered with an earlier command of its module
            continue
        if command.module in wanted:
            importlib.import_module(f"{__name__}.{command.module}").register(sub)
        else:
            sub.add_parser(command.name, help=command.help, add_help=False)
    return parser


def requested_command(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names: its first word that is not an option (``herd`` has no option with a value)."""
    return next((word for word in argv if not word.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``herd`` console script: every failure is one line on stderr.

    Exit codes: 0 success, 2 bad input (a :class:`HerdError`, an ``OSError``
    such as a read-only or full destination, invalid UTF-8, a bad flag), 130
    interrupted (Ctrl-C at any moment, start-up included), 1 an internal error
    (a bug: one line, the traceback only with ``HERD_TRACEBACK=1``). A reader
    that leaves early (``herd ... | head``) ends the command quietly with 0.
    Python warnings from libraries are one line each (:func:`warning_lines`).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    with _interrupts_during_import(), warning_lines():
        try:
            command = requested_command(argv)
            parser = build_parser(() if command is None else (command,))
            args = parser.parse_args(argv)
            if not getattr(args, "func", None):
                parser.print_help()
                return 2
            code = int(args.func(args) or 0)
            sys.stdout.flush()  # here, not at exit, where a closed pipe would print "Exception ignored"
            return code
        except KeyboardInterrupt:
            _error("interrupted")
            return 130
        except SystemExit:  # argparse's --help and one-line flag errors carry their own exit code
            _flush_stdout()
            raise
        except BrokenPipeError:
            _quiet_stdout()
            return 0
        except BaseException as exc:  # library errors that are not Exception subclasses too (DCP's)
            code, message = describe(exc)
            if code == 1 and os.environ.get("HERD_TRACEBACK"):
                traceback.print_exc()
            _error(message)
            return code


@contextlib.contextmanager
def warning_lines() -> Iterator[None]:
    """Show each Python warning as ``herd: warning: MESSAGE (Category)`` on stderr, once per message.

    A library's warning is news to the user, its source line is not. Which
    warnings show stays Python's choice (its default filters); only how, and
    that a message repeated from other places shows once. Someone who sets
    ``-W`` or ``PYTHONWARNINGS`` (``-W default``) gets Python's own format.
    """
    if sys.warnoptions:
        yield
        return
    shown: set[tuple[type[Warning], str]] = set()

    def show(message: Warning | str, category: type[Warning], *args: object, **kwargs: object) -> None:
        text = _one_line(str(message))
        if (category, text) not in shown:
            shown.add((category, text))
            print(f"herd: warning: {text} ({category.__name__})", file=sys.stderr)

    previous = warnings.showwarning
    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = previous


def _interrupted(signum: int, frame: FrameType | None) -> None:
    """SIGINT during a command: ``KeyboardInterrupt``, or exit 130 at once while PyTorch is being imported.

    PyTorch's import swallows a ``KeyboardInterrupt`` (``torch._C`` imports
    NumPy and only warns when that fails), so Ctrl-C in that window would be
    lost and the command would run on. Nothing a command must clean up exists
    before its first ``import torch``.
    """
    while frame is not None:
        if frame.f_code.co_name == "<module>" and frame.f_globals.get("__name__") == "torch":
            os.write(2, b"herd: error: interrupted\n")
            os._exit(130)
        frame = frame.f_back
    raise KeyboardInterrupt


@contextlib.contextmanager
def _interrupts_during_import() -> Iterator[None]:
    """Install :func:`_interrupted` for SIGINT (in the main thread; Python allows no other) and restore after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, _interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def describe(exc: BaseException) -> tuple[int, str]:
    """The exit code and one-line message for an exception that ends a command."""
    if isinstance(exc, HerdError):
        return 2, _one_line(str(exc))
    if isinstance(exc, UnicodeDecodeError):
        return 2, f"input is not valid UTF-8 (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"
    if isinstance(exc, OSError):
        return 2, _one_line(describe_os_error(exc))
    if isinstance(exc, MemoryError):
        return 2, "out of memory (try a smaller model, batch or --dtype bf16)"
    hint = "rerun with HERD_TRACEBACK=1 for the traceback"
    return 1, f"internal error: {type(exc).__name__}: {_one_line(str(exc))} ({hint})"


def describe_os_error(exc: OSError) -> str:
    """``PATH: problem`` for a failed file operation (read-only, full disk, missing, wrong kind)."""
    reasons = {
        errno.ENOSPC: "no space left on the device",
        errno.EDQUOT: "disk quota exceeded",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
        errno.ENOENT: "no such file or directory",
        errno.ENOTDIR: "a file is in the way where a directory is expected",
        errno.EISDIR: "is a directory, expected a file",
        errno.EEXIST: "already exists",
        errno.ENOTEMPTY: "directory is not empty",
    }
    reason = reasons.get(exc.errno or -1, exc.strerror or str(exc) or type(exc).__name__)
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    return f"{' -> '.join(paths)}: {reason}" if paths else reason


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "(no message)"


def _error(message: str) -> None:
    print(f"herd: error: {message}", file=sys.stderr)


def _flush_stdout() -> None:
    """Flush stdout; a reader that left early (``herd --help | head -1``) is not an error."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_stdout()


def _quiet_stdout() -> None:
    """After a closed pipe (``herd ... | head``), send the rest of stdout nowhere so exit is quiet."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
