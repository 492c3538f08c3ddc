"""Typed reading of key/value files others wrote (config.json, params.json, GGUF metadata).

These files are written by whoever made the checkpoint or the vocabulary, so
every value is checked before use: a string ``dim``, a negative ``n_layers``,
a float ``vocab_size``, a list where a number belongs or a string among a
vocabulary's scores is a one-line error naming the file and the key, never a
``TypeError`` deep inside model or tokenizer construction, and never silently
coerced (``int("64")``, ``int(4.5)``). The error class is the caller's (a
checkpoint reader passes ``CheckpointError``, the tokenizer ``TokenizerError``),
so each stage's callers catch the error they expect.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from herd.errors import HerdError

# Marks a key without a default: absent (or null) is an error.
REQUIRED: Any = object()

# The item types :meth:`Fields.array` can require, as a message names them.
_ITEMS = {str: "strings", int: "integers", float: "numbers"}


def read_json_object(path: Path, error: type[HerdError] = HerdError) -> dict[str, Any]:
    """The JSON object in ``path``; a missing file, invalid UTF-8/JSON or a non-object is an ``error``."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    try:
        value = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise error(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise error(f"{path}: expected a JSON object, got {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    """How a JSON/GGUF value reads in a message: its type and a short rendering."""
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _integer(minimum: int, below: int | None) -> str:
    if below is not None:
        return f"an integer from {minimum} to {below - 1}"
    return "a positive integer" if minimum == 1 else f"an integer of at least {minimum}"


def _is_a(value: Any, kind: type) -> bool:
    """Whether ``value`` is a ``kind`` as the files mean it: a bool is no number, an int is a float."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int | float) if kind is float else isinstance(value, kind)


class Fields:
    """Typed access to one mapping read from a file; every error names the file and the key.

    A key that is absent or null takes its default; without a default
    (:data:`REQUIRED`) it is an error. ``what`` names the kind of entry in
    that message (``key`` for JSON files, ``metadata key`` for GGUF);
    ``prefix`` is the dotted path of a nested section (``rope_scaling.``);
    ``error`` is the class of every error raised.
    """

    def __init__(
        self,
        values: Mapping[str, Any],
        source: Path | str,
        what: str = "key",
        prefix: str = "",
        error: type[HerdError] = HerdError,
    ) -> None:
        self.values = values
        self.source = source
        self.what = what
        self.prefix = prefix
        self.error_class = error

    def _get(self, key: str, default: Any) -> Any:
        value = self.values.get(key)
        if value is None and default is REQUIRED:
            raise self.error_class(f"{self.source}: missing {self.what} {self.prefix + key!r}")
        return value

    def error(self, key: str, problem: str) -> HerdError:
        """An error (of the caller's class) about ``key`` of this file."""
        return self.error_class(f"{self.source}: {self.prefix}{key} {problem}")

    def integer(
        self, key: str, default: Any = REQUIRED, *, minimum: int = 1, below: int | None = None
    ) -> Any:
        """An integer ≥ ``minimum`` and < ``below`` if given (booleans and floats are refused, not truncated)."""
        value = self._get(key, default)
        if value is None:
            return default
        if not _is_a(value, int):
            raise self.error(key, f"must be {_integer(minimum, below)}, got {_kind(value)}")
        if value < minimum or (below is not None and value >= below):
            raise self.error(key, f"must be {_integer(minimum, below)}, got {value}")
        return value

    def number(self, key: str, default: Any = REQUIRED, *, positive: bool = True) -> Any:
        """A finite number, > 0 (or ≥ 0 when not ``positive``); integers are accepted."""
        value = self._get(key, default)
        if value is None:
            return default
        if not _is_a(value, float) or not math.isfinite(value):
            raise self.error(key, f"must be a finite number, got {_kind(value)}")
        if value < 0 or (positive and value == 0):
            raise self.error(key, f"must be {'positive' if positive else 'at least 0'}, got {value}")
        return float(value)

    def flag(self, key: str, default: Any = REQUIRED) -> Any:
        """``true`` or ``false``."""
        value = self._get(key, default)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, got {_kind(value)}")
        return value

    def text(self, key: str, default: Any = REQUIRED) -> Any:
        """A string."""
        value = self._get(key, default)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, got {_kind(value)}")
        return value

    def array(self, key: str, default: Any = REQUIRED, *, of: type | None = None) -> Any:
        """A list (a JSON or GGUF array); with ``of`` (``str``, ``int`` or ``float``), of such items only."""
        value = self._get(key, default)
        if value is None:
            return default
        if not isinstance(value, list):
            raise self.error(key, f"must be an array, got {_kind(value)}")
        if of is not None and not all(_is_a(item, of) for item in value):
            index, item = next((i, item) for i, item in enumerate(value) if not _is_a(item, of))
            raise self.error(key, f"must be an array of {_ITEMS[of]}, got {_kind(item)} at index {index}")
        return value

    def section(self, key: str) -> Fields | None:
        """The nested object at ``key`` as :class:`Fields` (None when absent, null or empty)."""
        value = self.values.get(key)
        if not value:
            return None
        if not isinstance(value, dict):
            raise self.error(key, f"must be an object, got {_kind(value)}")
        return Fields(value, self.source, self.what, f"{self.prefix}{key}.", self.error_class)

    def unknown(self, known: set[str]) -> None:
        """Refuse keys outside ``known`` (for herd's own sections, where a typo would be silently ignored)."""
        extra = sorted(set(self.values) - known)
        if extra:
            raise self.error(extra[0], f"is not one of {', '.join(sorted(known))}")
