"""Typed configuration files: TOML read into a tree of dataclasses, unknown keys refused by name.

Every stage's configuration is a tree of dataclasses whose defaults are the
paper's values. This module is the one loader for all of them:

- :func:`load_toml` reads a file into a dict;
- :func:`apply_overrides` applies command-line overrides ``--set
  section.key=value`` (``source[0].weight=2`` reaches into an array of
  tables), each value read as a TOML literal, or as a string when it is not one;
- :func:`from_dict` builds the dataclass tree, refusing unknown keys by name and
  checking every value against its field's type hint (:func:`coerce`).

A typo (``optim.learning_rate``) or a wrong type (``lr = 'fast'``) is one
:class:`~herd.errors.ConfigError` naming the file or the dotted key, raised
before anything runs, instead of a silently ignored setting or a ``TypeError``
hours into a run.
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
import types
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from herd.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

T = TypeVar("T")

# One dotted part of a --set key: a name, then any number of array indices ("source[0]").
_KEY_PART = re.compile(r"([^.\[\]]+)((?:\[\d+\])*)")


def load_toml(path: Path | str, what: str = "config") -> dict[str, Any]:
    """The top-level table of the TOML file at ``path``; ``what`` names the kind of file in errors."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such {what} file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML (not UTF-8 at byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid TOML (nested too deeply)") from None


def parse_value(text: str) -> Any:
    """A command-line value: a TOML literal (``3e-4``, ``true``, ``[1, 2]``) or else a plain string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except (tomllib.TOMLDecodeError, RecursionError):
        return text


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """``data`` with each ``KEY=VALUE`` of ``overrides`` set in place; returns ``data``.

    ``KEY`` is dotted (``optim.lr``); missing tables on the way are created, and
    ``name[i]`` picks entry ``i`` of an existing array of tables
    (``source[0].weight``). New keys are not checked here but by
    :func:`from_dict` (or the caller's own checks), like keys from the file.
    """
    for item in overrides:
        key, sep, text = item.partition("=")
        path = _key_path(key.strip()) if sep else None
        if not path:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. optim.lr=3e-4")
        node: Any = data
        at = ""  # the dotted key of ``node``, for errors
        for part in path[:-1]:
            _check_step(node, part, at, item)
            node = node[part] if isinstance(part, int) else node.setdefault(part, {})
            at = f"{at}[{part}]" if isinstance(part, int) else f"{at}.{part}" if at else part
        _check_step(node, path[-1], at, item)
        node[path[-1]] = parse_value(text.strip())
    return data


def _key_path(key: str) -> list[str | int]:
    """``source[0].weight`` → ``["source", 0, "weight"]``; empty when ``key`` is not a dotted key."""
    path: list[str | int] = []
    for part in key.split("."):
        match = _KEY_PART.fullmatch(part)
        if match is None:
            return []
        path.append(match[1])
        path += [int(index) for index in re.findall(r"\d+", match[2])]
    return path


def _check_step(node: Any, part: str | int, at: str, item: str) -> None:
    """Refuse an override that names a key inside a value that is not a table, or an array entry that is not there."""
    if isinstance(part, str) and not isinstance(node, dict):
        raise ConfigError(f"--set {item!r}: {at} is not a table")
    if isinstance(part, int) and not isinstance(node, list):
        raise ConfigError(f"--set {item!r}: {at} is not an array")
    if isinstance(part, int) and part >= len(node):
        raise ConfigError(f"--set {item!r}: {at} has {len(node)} entries, no [{part}]")


def from_dict(cls: type[T], data: Any, prefix: str = "") -> T:
    """A ``cls`` dataclass from a TOML table: unknown keys refused, every value checked with :func:`coerce`.

    Keys left out keep their field's default; a field without a default is
    required. ``prefix`` is the table's place in the file (``"optim."``), so an
    error names the whole dotted key. Nested dataclass fields are built from
    nested tables the same way.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a table, got {data!r}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown config key(s): {', '.join(prefix + key for key in unknown)}")
    missing = [
        name
        for name, f in fields.items()
        if name not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"missing config key(s): {', '.join(prefix + key for key in missing)}")
    return cls(**{name: coerce(value, hints[name], prefix + name) for name, value in data.items()})


def has_type(value: Any, kind: type) -> bool:
    """``isinstance`` as TOML means it: booleans are not numbers, integers are numbers."""
    if isinstance(value, bool):
        return kind is bool
    return isinstance(value, (int, float) if kind is float else kind)


def coerce(value: Any, hint: Any, key: str) -> Any:
    """``value`` checked against the type hint ``hint``, converted where TOML and Python differ.

    Integers are accepted for floats (``lr = 1`` is 1.0) and floats must be
    finite; booleans are not numbers; ``Literal`` values must be one of the
    choices; arrays become lists or tuples and tables dicts or dataclasses
    (:func:`from_dict`), their entries checked in turn. Other hints (``Any``, a
    class) accept the value as it is. ``key`` names the value in errors.
    """
    origin, args = get_origin(hint), get_args(hint)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(repr(a) for a in args)}")
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [arg for arg in args if arg is not type(None)]
        if len(options) == 1:
            return coerce(value, options[0], key)
        for option in options:
            try:
                return coerce(value, option, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: {value!r} has the wrong type (expected {hint})")
    if dict in (hint, origin):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table, got {value!r}")
        item = args[1] if args else Any
        return {k: coerce(v, item, f"{key}.{k}") for k, v in value.items()}
    if list in (hint, origin) or tuple in (hint, origin):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected an array, got {value!r}")
        fixed = tuple in (hint, origin) and bool(args) and args[-1] is not Ellipsis  # tuple[int, str]
        if fixed and len(value) != len(args):
            raise ConfigError(f"{key}: expected an array of {len(args)} values, got {value!r}")
        kinds = args if fixed else [args[0] if args else Any] * len(value)
        items = [coerce(v, kind, f"{key}[{i}]") for i, (v, kind) in enumerate(zip(value, kinds, strict=True))]
        return tuple(items) if tuple in (hint, origin) else items
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, f"{key}.")  # type: ignore[arg-type]
    if hint in (int, float, str, bool):
        if not has_type(value, hint):
            raise ConfigError(f"{key}: expected {hint.__name__}, got {value!r}")
        if hint is float:
            if not math.isfinite(value):
                raise ConfigError(f"{key}: expected a finite number, got {value!r}")
            return float(value)
    return value
