"""Every ``herd ...`` command line in README.md and docs/*.md names a real command and real flags.

Examples are read from shell code blocks (```sh, ```console, unlabelled ones;
``$ herd ...`` prompts, ``\\`` continuations), from ``$ herd ...`` lines and from
inline code spans. For each, ``herd PATH --help`` must exit 0 and name every flag
the example uses (so docs use the shared spellings, not hidden aliases). The
cheap ones run for real: ``model presets``, ``model info`` of a preset (checked
against the output the docs show), ``generate`` with ``--random``, and
``pretrain`` of a config in the repository with ``--print-config`` added, which
checks every ``--set`` key without training.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from herd.cli import build_parser, main
from herd.model.presets import is_preset

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_BLOCKS = {"", "sh", "shell", "bash", "console"}
COMMAND_ENDS = {"|", "||", "&&", ";", ">", ">>", "2>", "&"}
INLINE = re.compile(r"(?<!`)`(herd [^`]+)`(?!`)")
FLAG = re.compile(r"--?[A-Za-z][\w-]*")


@dataclass(frozen=True)
class Example:
    """One documented command line: where it is, its words after ``herd``, and the output shown below it."""

    where: str
    argv: tuple[str, ...]
    output: tuple[str, ...] = ()


def _words(line: str) -> tuple[str, ...]:
    """The words of ``herd ...`` after ``herd``, up to a pipe or another command; comments dropped.

    A ``|`` inside a synopsis's brackets (``[--greedy | --temperature T]``) separates alternatives.
    """
    words = shlex.split(line, comments=True)[1:]
    depth = 0
    for end, word in enumerate(words):
        if word in COMMAND_ENDS and depth == 0:
            return tuple(words[:end])
        depth += word.count("[") - word.count("]")
    return tuple(words)


def _block_examples(page: Path, lines: list[str]) -> list[Example]:
    """The examples of the shell blocks of ``page``; in a console block, the lines after a prompt are its output."""
    found: list[tuple[str, tuple[str, ...], list[str]]] = []
    language: str | None = None  # None outside a block
    pending, start = "", 0  # a command continued with "\\", and its first line
    reading = False  # whether the lines that follow are the output of the last console command
    synopsis = False  # whether the line before was a command, which a "[--flag ...]" line continues
    for number, line in enumerate(lines, 1):
        fence = re.match(r"\s*```(\S*)", line)
        if fence:
            language, reading = (fence.group(1) if language is None else None), False
            continue
        if language not in SHELL_BLOCKS:
            if re.match(r"\s*\$ herd ", line):
                found.append((f"{page.name}:{number}", _words(line.strip()[2:]), []))
            continue
        text = pending + line.strip()
        if text.endswith("\\"):
            pending, start = text[:-1] + " ", start or number
            continue
        first, pending, start = start or number, "", 0
        prompt = text.startswith("$ ")
        command = text[2:] if prompt else text
        if command.startswith("herd "):
            found.append((f"{page.name}:{first}", _words(command), []))
            reading = language == "console"
        elif synopsis and text.startswith("["):  # a synopsis wrapped onto an indented line
            where, argv, output = found[-1]
            found[-1] = (where, argv + _words("herd " + text), output)
            continue
        elif reading and not prompt:
            found[-1][2].append(line.rstrip())
        else:
            reading = False
        synopsis = command.startswith("herd ")
    return [Example(where, argv, tuple(output)) for where, argv, output in found]


def _inline_examples(page: Path, text: str) -> list[Example]:
    """``herd ...`` in inline code spans (outside code blocks), which may wrap across lines."""
    prose = re.sub(r"```.*?```", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    return [
        Example(f"{page.name}:{prose.count(chr(10), 0, m.start()) + 1}", _words(" ".join(m.group(1).split())))
        for m in INLINE.finditer(prose)
    ]


def _help_examples() -> list[Example]:
    """The ``herd ...`` lines of each command's ``--help`` (the examples in its epilog)."""
    found = []
    for path, parser in _commands(build_parser()):
        for line in (parser.epilog or "").splitlines():
            if line.strip().startswith("herd "):
                found.append(Example(f"herd {' '.join(path)} --help", _words(line.strip())))
    return found


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    found = [(path, parser)]
    for name, child in groups[0].choices.items() if groups else ():
        found += _commands(child, (*path, name))
    return found


def examples() -> list[Example]:
    """Every documented example: the pages' in order, then the commands' own."""
    found: list[Example] = []
    for page in PAGES:
        text = page.read_text()
        found += _block_examples(page, text.splitlines())
        found += _inline_examples(page, text)
    return found + _help_examples()


EXAMPLES = examples()


def command_path(argv: tuple[str, ...]) -> tuple[str, ...]:
    """The longest prefix of ``argv`` that names a command (or a group of them) in the tree."""
    parser: argparse.ArgumentParser = build_parser()
    path: list[str] = []
    for word in argv:
        groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not groups or word not in groups[0].choices:
            break
        parser = groups[0].choices[word]
        path.append(word)
    return tuple(path)


def flags(argv: tuple[str, ...]) -> list[str]:
    """The flags an example uses; synopsis brackets and ``a|b`` alternatives are read too, values are not."""
    found = []
    for word in argv:
        for part in word.strip("[]().").split("|"):
            part = part.strip("[]().").split("=")[0]
            if FLAG.fullmatch(part):
                found.append(part)
    return found


def runnable(argv: tuple[str, ...]) -> tuple[str, ...] | None:
    """The command line to run for a cheap example (no big files, seconds at most), else None."""
    path, rest = command_path(argv), argv[len(command_path(argv)) :]
    if path == ("model", "presets"):
        return argv
    if path == ("model", "info") and rest and is_preset(rest[0]):
        return argv
    if path == ("generate",) and "--random" in rest and rest and is_preset(rest[0]):
        return (*argv, "--max-new-tokens", "4")
    if path == ("pretrain",) and rest and (ROOT / rest[0]).is_file():
        return ("pretrain", str(ROOT / rest[0]), *rest[1:], "--print-config")
    return None


def test_the_docs_have_examples() -> None:
    """The parser finds the examples it should (a parser that finds none would pass everything)."""
    lines = {" ".join(e.argv) for e in EXAMPLES}
    assert "model presets" in lines and "model info llama2-70b --json" in lines
    assert any(e.argv[:1] == ("convert",) for e in EXAMPLES)
    assert len(EXAMPLES) > 30
    readme = next(e for e in EXAMPLES if e.argv == ("model", "info", "llama3.1-405b"))
    assert readme.output[0].startswith("model ") and len(readme.output) == 11


@pytest.mark.parametrize("example", EXAMPLES, ids=[f"{e.where} herd {' '.join(e.argv)}" for e in EXAMPLES])
def test_documented_command_exists_with_its_flags(
    example: Example, capsys: pytest.CaptureFixture[str]
) -> None:
    path = command_path(example.argv)
    with pytest.raises(SystemExit) as exit_:
        main([*path, "--help"])
    help_text = capsys.readouterr().out
    assert exit_.value.code == 0
    missing = [
        f for f in flags(example.argv[len(path) :]) if not re.search(rf"(?<![\w-]){f}(?![\w-])", help_text)
    ]
    assert not missing, f"{example.where}: herd {' '.join(path)} --help does not name {missing}"


CHEAP = [e for e in EXAMPLES if runnable(e.argv)]


@pytest.mark.parametrize("example", CHEAP, ids=[f"{e.where} herd {' '.join(e.argv)}" for e in CHEAP])
def test_cheap_examples_run_as_documented(example: Example, capsys: pytest.CaptureFixture[str]) -> None:
    argv = runnable(example.argv)
    assert argv is not None
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    if "--json" in argv or "--print-config" in argv:
        json.loads(out)
    if example.output:
        assert out.splitlines() == list(example.output), f"{example.where}: the docs show other output"
