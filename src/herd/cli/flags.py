"""The flags every herd command shares, each with one spelling and one meaning.

- ``-o/--output PATH``: where a command writes (a file or a directory). Spellings
  older commands used (``--out``) keep working as hidden aliases.
- ``--set KEY=VALUE``: override one key of a TOML-driven command's config
  (repeatable; the value is a TOML literal, else a plain string).
- ``--json``: print the result as one JSON object instead of text for people.
- ``--quiet``: no progress output on stderr; the result is still printed.
- ``--dtype``: ``fp32``, ``bf16`` or ``fp16``, plus the quantized storage types a
  command can write (``q8_0``). GGUF's ``f32``/``f16`` and PyTorch's
  ``float32``/``float16``/``bfloat16`` are accepted as synonyms, in any case.

A command adds them with the helpers below rather than with its own
``add_argument``, so ``herd --help`` reads the same everywhere.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from herd.argtypes import positive_int

# The library's dtype names (herd.model.build.DTYPES), and every other spelling a user may type for
# them: PyTorch's (herd.model.build.SYNONYMS) and GGUF's (f32, f16). Written out rather than imported,
# so that building a parser does not import PyTorch; tests/cli/test_cli_flags.py checks they agree.
FLOAT_DTYPES = ("fp32", "bf16", "fp16")
DTYPE_SYNONYMS = {"f32": "fp32", "f16": "fp16", "float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


def add_output(
    parser: argparse.ArgumentParser,
    help: str,
    *,
    required: bool = True,
    default: Path | None = None,
    aliases: Sequence[str] = (),
) -> argparse.Action:
    """``-o/--output PATH`` (a :class:`~pathlib.Path`); ``aliases`` are old spellings, accepted but not shown.

    argparse finds an option by its own table of option strings, so an alias
    removed from the action's ``option_strings`` still parses while ``--help``,
    the usage line and error messages name only ``-o/--output``.
    """
    action = parser.add_argument(
        "-o", "--output", *aliases, type=Path, required=required, default=default, metavar="PATH", help=help
    )
    action.option_strings = ["-o", "--output"]
    return action


def add_set(parser: argparse.ArgumentParser, example: str) -> argparse.Action:
    """``--set KEY=VALUE`` (repeatable) into ``args.overrides``; ``example`` is one or two typical uses."""
    return parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a config key, e.g. {example} (repeatable)",
    )


def add_json(parser: argparse.ArgumentParser, what: str = "the result") -> argparse.Action:
    """``--json``: print ``what`` as one JSON object on stdout instead of text."""
    return parser.add_argument("--json", action="store_true", help=f"print {what} as one JSON object")


def add_quiet(parser: argparse.ArgumentParser, what: str = "no progress bar") -> argparse.Action:
    """``--quiet``: ``what`` is left out of stderr; the result is still printed."""
    return parser.add_argument("--quiet", action="store_true", help=what)


def dtype_name(text: str) -> str:
    """The canonical name of a dtype as typed (``F16`` → ``fp16``); unknown names pass through to ``choices``."""
    name = text.lower()
    return DTYPE_SYNONYMS.get(name, name)


def add_dtype(
    parser: argparse.ArgumentParser,
    help: str,
    *,
    quantized: Sequence[str] = (),
    default: str | None = None,
    check: bool = True,
) -> argparse.Action:
    """``--dtype {fp32,bf16,fp16,...}`` with the synonyms of :data:`DTYPE_SYNONYMS`; ``quantized`` adds names.

    ``check=False`` leaves refusing a name to the command, for one whose
    allowed names depend on another flag (``herd convert --to``).
    """
    names = (*FLOAT_DTYPES, *quantized)
    return parser.add_argument(
        "--dtype",
        type=dtype_name,
        choices=names if check else None,
        metavar="{" + ",".join(names) + "}",
        default=default,
        help=help,
    )


def add_threads(parser: argparse.ArgumentParser) -> argparse.Action:
    """``--threads N``: CPU threads for PyTorch's kernels and herd's (:func:`apply_threads` sets them).

    The default leaves PyTorch's own choice (one thread per physical core). On a
    busy or small machine fewer threads can decode several times faster than
    more, because the threads wait for each other, so the choice is the user's.
    """
    return parser.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        metavar="N",
        help="CPU threads for the computation (default: PyTorch's, one per physical core)",
    )


def apply_threads(args: argparse.Namespace) -> None:
    """Apply ``--threads`` (if given) before any computation starts; imports PyTorch only then."""
    if getattr(args, "threads", None) is None:
        return
    import torch

    torch.set_num_threads(args.threads)
