"""The runs CSV: one row per scaling-law training run, written by the sweep, read by the fit and predict.

Llama 3 §3.2.1 fits its scaling laws to the final losses of an IsoFLOP grid
of runs (compute budgets × model sizes); Chinchilla (Hoffmann et al. 2022)
fits L(N, D) to the same kind of table. This file is that table, with these
columns, in this order:

``run``
    the run's name (its directory under the sweep's ``runs/``);
``budget``
    the FLOP budget the run was planned for;
``params``, ``non_embedding_params``
    N, all parameters (embeddings and output included), and N less the
    token embedding and output matrices;
``tokens``
    D, the training tokens;
``flops``, ``flops_6nd``
    herd's exact training FLOPs (per-token FLOPs of :func:`herd.model.info.model_info`
    × D, attention and output layer included) and the usual approximation 6·N·D;
``val_loss``
    nats per token on held-out data;
``eval_task``, ``eval_nll``, ``eval_acc``
    when an eval task is configured: its name, the mean over questions of the
    correct answer's negative log-likelihood per character (Llama 3's
    "normalized NLL per char", used to map compute to benchmark accuracy) and
    the accuracy; empty cells otherwise.

Readers name the columns they use: a file without one of them, a row whose
value there is empty, or any non-empty number that is not finite or not
positive (accuracy may be 0), or a file without rows is a one-line :class:`herd.errors.InputError`
naming the file, the row and the column. A row is appended by rewriting the
whole file atomically (:func:`herd.io.atomic.write_atomically`), so a crash
leaves the file as it was before or after, never with half a row.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import astuple, dataclass, fields
from pathlib import Path

from herd.errors import HerdError, InputError
from herd.io.atomic import write_atomically


@dataclass(frozen=True)
class Run:
    """One training run of a scaling sweep; a field is None when its column is absent or its cell empty."""

    run: str
    budget: float | None = None
    params: int | None = None
    non_embedding_params: int | None = None
    tokens: int | None = None
    flops: float | None = None
    flops_6nd: float | None = None
    val_loss: float | None = None
    eval_task: str | None = None
    eval_nll: float | None = None
    eval_acc: float | None = None


COLUMNS: tuple[str, ...] = tuple(field.name for field in fields(Run))
_INTEGERS = frozenset({"params", "non_embedding_params", "tokens"})
_TEXTS = frozenset({"run", "eval_task"})
_MAY_BE_ZERO = frozenset({"eval_acc"})


def _header_line() -> str:
    return ",".join(COLUMNS) + "\n"


def _value(path: Path, row: int, column: str, cell: str) -> str | int | float:
    """The cell of ``column`` in data row ``row`` (1-based), checked as the column requires."""
    where = f"{path}: row {row}, column {column!r}"
    if cell == "":
        raise InputError(f"{where} is empty")
    if column in _TEXTS:
        return cell
    try:
        number: int | float = int(cell) if column in _INTEGERS else float(cell)
    except ValueError:
        kind = "an integer" if column in _INTEGERS else "a number"
        raise InputError(f"{where}: expected {kind}, got {cell!r}") from None
    if not math.isfinite(number):
        raise InputError(f"{where}: expected a finite number, got {cell!r}")
    if number < 0 or (number == 0 and column not in _MAY_BE_ZERO):
        least = "at least 0" if column in _MAY_BE_ZERO else "positive"
        raise InputError(f"{where}: must be {least}, got {cell!r}")
    if column == "eval_acc" and number > 1:
        raise InputError(f"{where}: an accuracy is at most 1, got {cell!r}")
    return number


def read_runs(path: Path | str, required: Sequence[str]) -> list[Run]:
    """The runs in the CSV at ``path``; every column in ``required`` must be present and valid in every row.

    Other known columns are read when present (an empty cell is None);
    unknown columns are ignored. Raises :class:`InputError` for a missing
    file, a missing required column, a bad value or a file without rows.
    """
    path = Path(path)
    unknown = sorted(set(required) - set(COLUMNS))
    if unknown:
        raise ValueError(f"unknown runs column {unknown[0]!r}; the columns are {', '.join(COLUMNS)}")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    for column in required:
        if column not in header:
            raise InputError(f"{path}: missing column {column!r} (the header is {','.join(header)!r})")
    runs = []
    for row, record in enumerate(reader, start=1):
        values: dict[str, str | int | float | None] = {}
        for column in COLUMNS:
            cell = (record.get(column) or "").strip()
            values[column] = _value(path, row, column, cell) if column in required or cell else None
        if values["run"] is None:
            values["run"] = f"row {row}"
        runs.append(Run(**values))  # type: ignore[arg-type]
    if not runs:
        raise InputError(f"{path}: no rows (a runs CSV needs at least one run)")
    return runs


def _line(run: Run) -> str:
    """``run`` as one CSV line, numbers written so that they read back exactly (``repr`` of a float)."""
    out = io.StringIO()
    cells = [
        "" if value is None else repr(value) if isinstance(value, float) else str(value)
        for value in astuple(run)
    ]
    csv.writer(out, lineterminator="\n").writerow(cells)
    return out.getvalue()


def write_runs(path: Path | str, runs: Sequence[Run]) -> None:
    """Write ``runs`` (with the header) as the whole of ``path``, atomically."""
    text = _header_line() + "".join(_line(run) for run in runs)
    write_atomically(path, lambda f: f.write(text.encode("utf-8")))


def append_run(path: Path | str, run: Run) -> None:
    """Add ``run`` as the last row of ``path`` (created with the header if absent), atomically.

    The file is rewritten whole under a staging name and renamed into place,
    so a crash leaves it with or without the row. A file whose header is not
    :data:`COLUMNS`, or that already has a row named ``run.run``, is refused.
    """
    path = Path(path)
    try:
        old = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        old = _header_line()
    if not old.startswith(_header_line()):
        first = old.splitlines()[0] if old else ""
        raise InputError(f"{path}: not a runs CSV (its header is {first!r}, expected {','.join(COLUMNS)!r})")
    names = {
        record[0] for record in csv.reader(io.StringIO(old[len(_header_line()) :], newline="")) if record
    }
    if run.run in names:
        raise HerdError(f"{path}: already has a row for run {run.run!r}")
    text = old + _line(run)
    write_atomically(path, lambda f: f.write(text.encode("utf-8")))
