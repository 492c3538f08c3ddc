"""The single ``herd`` command line: one tree, one module of commands per stage.

Every stage's commands live in ``herd.cli.<stage>`` (the stage packages hold no
command-line code). Each such module exposes ``register(sub)``, which adds its
parser(s) to the top-level subparsers and sets ``func`` to a callable taking the
parsed ``argparse.Namespace`` and returning an exit code; :data:`COMMAND_MODULES`
lists them in the order they appear in ``herd --help``. Errors caused by input
are :class:`herd.errors.HerdError` (or ``OSError``) and are printed as one line
(``herd: error: ...``) with exit code 2; see :func:`main` for the others.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

from herd import __version__
from herd.cli import checkpoint, data, infer, model, tokenizer, train
from herd.errors import HerdError

# The modules that register commands, in the order they appear in --help. They are imported with
# herd.cli, not when the parser is built: the console script (herd.console) imports herd.cli under its
# start-up Ctrl-C handler, and an interrupt must not land in PyTorch's import, which swallows it.
COMMAND_MODULES = (model, checkpoint, tokenizer, infer, data, train)


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``herd generate: error: argument --top-p: ... (see --help)``.

    Subcommand parsers are made with the parent's class, so every command in
    the tree reports a bad flag the same way, without the multi-line usage.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every available subcommand."""
    parser = Parser(
        prog="herd",
        description="The Llama family recipe: data, tokenizers, models, checkpoints, training, inference.",
        epilog="Every command explains itself: herd COMMAND --help. Flags mean the same everywhere: "
        "-o/--output where a command writes, --set KEY=VALUE overrides a config key, --json prints "
        "the result as one JSON object, --quiet hides progress, --dtype is fp32, bf16 or fp16.",
    )
    parser.add_argument("--version", action="version", version=f"herd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``herd`` console script: every failure is one line on stderr.

    Exit codes: 0 success, 2 bad input (a :class:`HerdError`, an ``OSError``
    such as a read-only or full destination, invalid UTF-8, a bad flag), 130
    interrupted (Ctrl-C at any moment, start-up included), 1 an internal error
    (a bug: one line, the traceback only with ``HERD_TRACEBACK=1``).
    """
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except SystemExit:  # argparse's --help and one-line flag errors carry their own exit code
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


def _quiet_stdout() -> None:
    """After a closed pipe (``herd ... | head``), send the rest of stdout nowhere so exit is quiet."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
