"""Typed reading of the key/value files that describe a checkpoint (config.json, params.json, GGUF metadata).

These files are written by whoever made the checkpoint, so every value is
checked before use: a string ``dim``, a negative ``n_layers``, a float
``vocab_size`` or a list where a number belongs is a one-line
:class:`CheckpointError` naming the file and the key, never a ``TypeError``
deep inside model construction, and never silently coerced (``int("64")``,
``int(4.5)``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from herd.errors import CheckpointError

# Marks a key without a default: absent (or null) is an error.
REQUIRED: Any = object()


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; a missing file, invalid UTF-8/JSON or a non-object is a named error."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    try:
        value = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise CheckpointError(
            f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at {exc.start})"
        ) from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    """How a JSON/GGUF value reads in a message: its type and a short rendering."""
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _integer(minimum: int) -> str:
    return "a positive integer" if minimum == 1 else f"an integer of at least {minimum}"


class Fields:
    """Typed access to one mapping read from a file; every error names the file and the key.

    A key that is absent or null takes its default; without a default
    (:data:`REQUIRED`) it is an error. ``what`` names the kind of entry in
    that message (``key`` for JSON files, ``metadata key`` for GGUF);
    ``prefix`` is the dotted path of a nested section (``rope_scaling.``).
    """

    def __init__(
        self, values: Mapping[str, Any], source: Path | str, what: str = "key", prefix: str = ""
    ) -> None:
        self.values = values
        self.source = source
        self.what = what
        self.prefix = prefix

    def _get(self, key: str, default: Any) -> Any:
        value = self.values.get(key)
        if value is None and default is REQUIRED:
            raise CheckpointError(f"{self.source}: missing {self.what} {self.prefix + key!r}")
        return value

    def error(self, key: str, problem: str) -> CheckpointError:
        """A :class:`CheckpointError` about ``key`` of this file."""
        return CheckpointError(f"{self.source}: {self.prefix}{key} {problem}")

    def integer(self, key: str, default: Any = REQUIRED, *, minimum: int = 1) -> Any:
        """An integer ≥ ``minimum`` (booleans and floats are refused, not truncated)."""
        value = self._get(key, default)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be {_integer(minimum)}, got {_kind(value)}")
        if value < minimum:
            raise self.error(key, f"must be {_integer(minimum)}, got {value}")
        return value

    def number(self, key: str, default: Any = REQUIRED, *, positive: bool = True) -> Any:
        """A finite number, > 0 (or ≥ 0 when not ``positive``); integers are accepted."""
        value = self._get(key, default)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
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

    def array(self, key: str, default: Any = REQUIRED) -> Any:
        """A list (a JSON or GGUF array)."""
        value = self._get(key, default)
        if value is None:
            return default
        if not isinstance(value, list):
            raise self.error(key, f"must be an array, got {_kind(value)}")
        return value

    def section(self, key: str) -> Fields | None:
        """The nested object at ``key`` as :class:`Fields` (None when absent, null or empty)."""
        value = self.values.get(key)
        if not value:
            return None
        if not isinstance(value, dict):
            raise self.error(key, f"must be an object, got {_kind(value)}")
        return Fields(value, self.source, self.what, f"{self.prefix}{key}.")

    def unknown(self, known: set[str]) -> None:
        """Refuse keys outside ``known`` (for herd's own sections, where a typo would be silently ignored)."""
        extra = sorted(set(self.values) - known)
        if extra:
            raise self.error(extra[0], f"is not one of {', '.join(sorted(known))}")
