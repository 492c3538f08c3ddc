"""Fingerprints: what produced each finished part of a build, so a rerun reuses only what still holds.

Every completion marker (a shard's ``.done/NNNNN.json``, each global MinHash
job's) records the fingerprint of what produced it: herd's version, the reader
and each step with their arguments (as the recipe gave them, plus the size and
modification time of every file an argument names), the output settings and
every input file's absolute path, size and modification time. A rerun reuses a
part only when its marker holds the same fingerprint; any other marker (from
another recipe, from inputs that changed since, unreadable, or from a herd
without fingerprints) makes that part be built again, with one log line naming
what differs. So a resumed build skips exactly the finished parts, and a build
into an old output after a recipe change never keeps the old shards.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from herd import __version__

log = logging.getLogger("herd.data")

# Argument names that name files (model files, block lists): their contents are part of the recipe.
FILE_ARGUMENT_SUFFIXES = ("_path", "_file")


def file_identity(path: str | Path) -> dict[str, Any]:
    """A file's absolute path, size and modification time (a directory: those of every file under it)."""
    resolved = Path(path).resolve()
    if resolved.is_dir():
        files = sorted(p for p in resolved.rglob("*") if p.is_file())
        return {"path": str(resolved), "files": [file_identity(p) for p in files]}
    try:
        stat = resolved.stat()
    except FileNotFoundError:
        return {"path": str(resolved), "missing": True}
    return {"path": str(resolved), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def component_identity(kind: str, name: str, args: Mapping[str, Any]) -> dict[str, Any]:
    """The identity of a reader or step built from a recipe: its name, arguments and the files they name."""
    files = {
        key: file_identity(value)
        for key, value in sorted(args.items())
        if key.endswith(FILE_ARGUMENT_SUFFIXES) and isinstance(value, str) and value
    }
    return {kind: name, "args": dict(args), "files": files}


def class_identity(obj: object) -> dict[str, Any]:
    """The identity of a reader or step made in code: its class (its arguments are not known)."""
    cls = type(obj)
    return {"class": f"{cls.__module__}.{cls.__qualname__}"}


def json_default(value: Any) -> Any:
    """JSON for what a step argument made in code may hold: sets as sorted lists, anything else as text."""
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    return str(value)


def digest(description: Any) -> str:
    """The SHA-256 of a JSON description (keys sorted; see :func:`json_default` for other values)."""
    text = json.dumps(description, sort_keys=True, separators=(",", ":"), default=json_default)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def describe_difference(old: Any, new: Mapping[str, Any]) -> str:
    """Which parts of a recorded description differ from the current one, for a log line."""
    parts = []
    if not isinstance(old, Mapping):
        old = {}
    for key in sorted(set(old) | set(new)):
        if old.get(key) == new.get(key):
            continue
        if key == "inputs" and isinstance(old.get(key), list):
            before = {i.get("path"): i for i in old[key] if isinstance(i, Mapping)}
            changed = [i["path"] for i in new[key] if before.get(i["path"]) != i]
            gone = sorted(set(before) - {i["path"] for i in new[key]})
            parts.append(f"inputs ({', '.join(map(str, [*changed, *gone][:3]))})")
        else:
            parts.append(key)
    return ", ".join(parts or ["the recipe or inputs"]) + " changed"


def read_marker(marker: Path, fingerprint: str, description: Mapping[str, Any] | None = None) -> dict | None:
    """The record of ``marker`` when it was made with ``fingerprint``; ``None`` when the part must be redone.

    A missing marker is an unfinished part; a marker that cannot be read or
    holds another fingerprint is logged (naming what differs from
    ``description`` when given) before ``None`` is returned.
    """
    try:
        record = json.loads(marker.read_text("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        log.warning("%s: unreadable completion marker (%s); building this part again", marker, exc)
        return None
    if not isinstance(record, dict):
        log.warning("%s: not a completion marker; building this part again", marker)
        return None
    if record.get("fingerprint") != fingerprint:
        if "fingerprint" not in record:
            why = "it holds no fingerprint (an older herd made it)"
        elif description is not None:
            why = describe_difference(record.get("produced_by"), description) + " since it was made"
        else:
            why = "the recipe or inputs changed since it was made"
        log.warning("%s: %s; building this part again", marker, why)
        return None
    return record


def pipeline_description(
    reader: object, steps: Sequence[object], files: Sequence[str | Path]
) -> dict[str, Any]:
    """What a pipeline task's output depends on, besides the output settings: herd, components, inputs."""
    return {
        "herd": __version__,  # a new herd may read or filter differently
        "reader": _identity(reader),
        "steps": [_identity(step) for step in steps],
        "inputs": [file_identity(f) for f in files],
    }


def _identity(component: object) -> dict[str, Any]:
    recorded = getattr(component, "identity", None)
    return recorded if recorded is not None else class_identity(component)
