"""Type checks for values read from JSON and TOML files, with errors that name the key.

A recipe, a manifest or a completion marker is written by someone: before
herd uses a value from one, :func:`expect` checks it has the type the code
needs, so a wrong value is one :class:`DataInputError` naming the file and
key instead of a ``TypeError`` deep inside a step.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from herd.config import has_type
from herd.data.errors import DataInputError

_NAMES = {
    dict: "a table",
    list: "a list",
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
}


def expect(value: Any, kind: type, where: str) -> Any:
    """``value`` when it has type ``kind`` (see :func:`has_type`), else a :class:`DataInputError` naming ``where``."""
    if not has_type(value, kind):
        raise DataInputError(f"{where}: expected {_NAMES[kind]}, got {value!r}")
    return value


def expect_key(table: dict[str, Any], key: str, kind: type, where: str) -> Any:
    """``table[key]``, required and of type ``kind``."""
    if key not in table:
        raise DataInputError(f"{where}: missing key {key!r}")
    return expect(table[key], kind, f"{where}.{key}")


def unknown_name(name: Any, known: Iterable[str]) -> str:
    """``(did you mean 'x'? known: a, b, ...)`` for a mistyped ``name``: the known name closest to it
    (difflib), if one is close, then all of them."""
    names = sorted(known)
    close = difflib.get_close_matches(name, names, n=1) if isinstance(name, str) else []
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"({hint}known: {', '.join(names) or 'none'})"
