"""The single ``herd`` command line; each stage registers its own subcommands.

A subcommand module exposes ``register(subparsers)`` which adds its parser(s)
and sets ``func`` to a callable taking the parsed ``argparse.Namespace`` and
returning an exit code. Errors caused by input are :class:`herd.errors.HerdError`
and are printed as one line (``herd: error: ...``) with exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from herd import __version__
from herd.errors import HerdError

# Modules that contribute subcommands, in the order they appear in --help.
SUBCOMMAND_MODULES = (
    "herd.model.cli",
    "herd.checkpoint.cli",
    "herd.tokenizer.cli",
    "herd.infer.cli",
    "herd.data.cli",
    "herd.train.cli",
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every available subcommand."""
    parser = argparse.ArgumentParser(
        prog="herd",
        description="The Llama family recipe: data, tokenizers, models, checkpoints, training, inference.",
    )
    parser.add_argument("--version", action="version", version=f"herd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``herd`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except HerdError as exc:
        print(f"herd: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("herd: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
