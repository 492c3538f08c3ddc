"""Start-up: ``herd --help`` and ``--version`` import no command module and no PyTorch; a command imports its own.

herd.cli lists the top-level commands in a table (``herd.cli.COMMANDS``), so
the list in ``herd --help`` is built without importing the modules that
register them, and ``herd COMMAND ...`` imports only that command's module.
The subprocess tests run a fresh interpreter and report what it imported.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from herd.cli import COMMANDS, build_parser, main, requested_command

# Runs herd.cli.main on argv in a fresh interpreter, then prints the herd and torch modules it imported.
IMPORTED = """
import json, sys
import herd.cli
try:
    herd.cli.main(sys.argv[1:])
except SystemExit:
    pass
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("herd", "torch"))
print(json.dumps(loaded), file=sys.stderr)
"""


def imported(*argv: str) -> tuple[str, list[str]]:
    """stdout of ``herd ARGV`` and the herd/torch modules the process had imported when it ended."""
    result = subprocess.run(
        [sys.executable, "-c", IMPORTED, *argv], capture_output=True, text=True, timeout=120
    )
    return result.stdout, json.loads(result.stderr.strip().splitlines()[-1])


def command_modules(loaded: list[str]) -> set[str]:
    """The command modules of herd.cli among ``loaded``."""
    modules = {f"herd.cli.{c.module}" for c in COMMANDS}
    return {m for m in loaded if m in modules}


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_help_and_version_import_no_command_and_no_torch(flag: str) -> None:
    out, loaded = imported(flag)
    assert "torch" not in loaded and not command_modules(loaded), loaded
    if flag == "--version":
        assert out.startswith("herd ")
    else:
        rows = [out.index(f"\n    {c.name}") for c in COMMANDS]  # each command's row, in the table's order
        assert rows == sorted(rows)
        for command in COMMANDS:  # each with its help line (argparse wraps long ones)
            assert " ".join(command.help.split()) in " ".join(out.split())


@pytest.mark.parametrize("command", [c.name for c in COMMANDS])
def test_command_help_imports_only_its_module_and_no_torch(command: str) -> None:
    """``herd COMMAND --help`` imports that command's module, whose top-level imports are light."""
    out, loaded = imported(command, "--help")
    assert out.startswith(f"usage: herd {command}")
    module = next(f"herd.cli.{c.module}" for c in COMMANDS if c.name == command)
    assert "torch" not in loaded and command_modules(loaded) == {module}, loaded


def test_a_command_imports_only_its_own_module() -> None:
    _, loaded = imported("model", "presets")
    assert command_modules(loaded) == {"herd.cli.model"}


def test_the_table_is_what_the_modules_register() -> None:
    """Names, order and help of herd.cli.COMMANDS are those of the whole tree, and each module adds its own."""
    full = _subcommands(build_parser())
    assert [(a.dest, a.help) for a in full._choices_actions] == [(c.name, c.help) for c in COMMANDS]
    for command in COMMANDS:
        alone = _subcommands(build_parser([command.name]))
        assert list(alone.choices) == [c.name for c in COMMANDS]  # the others listed, in order
        complete = {name for name, parser in alone.choices.items() if parser.add_help}
        assert complete == {c.name for c in COMMANDS if c.module == command.module}


@pytest.mark.parametrize("command", [c.name for c in COMMANDS])
def test_every_command_help_works_alone(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: herd {command}")


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        ([], None),
        (["--help"], None),
        (["--version"], None),
        (["generate", "m"], "generate"),
        (["-h", "chat"], "chat"),
    ],
)
def test_requested_command(argv: list[str], command: str | None) -> None:
    assert requested_command(argv) == command


def test_unknown_command_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["frobnicate"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'frobnicate'" in err and all(f"'{c.name}'" in err for c in COMMANDS)


def _subcommands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
