"""Recipe dataclasses loaded from TOML (tomllib); unknown keys are rejected by name.

Example::

    [recipe]
    name = "demo"
    tokenizer = "path/to/tokenizer.model"    # optional; --tokenizer overrides
    tokens_per_shard = 50000000

    [[source]]
    name = "commoncrawl"
    reader = "warc"
    inputs = ["../../data/samples/commoncrawl/*.warc.gz"]   # relative to this file
    weight = 0.67                                           # Llama 1 §2.1 mixture share
    epochs = 1.10                                           # passes over the kept documents
    steps = [{type = "url_dedup"}, {type = "gopher_quality", min_words = 50}]
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from herd.data.errors import DataInputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass(frozen=True)
class StepConfig:
    """One step: its registry name and keyword arguments."""

    type: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceConfig:
    """One source of the mixture."""

    name: str
    reader: str
    inputs: tuple[str, ...]
    weight: float = 1.0
    epochs: float = 1.0
    tasks: int = 1
    reader_args: dict[str, Any] = field(default_factory=dict)
    steps: tuple[StepConfig, ...] = ()


@dataclass(frozen=True)
class RecipeConfig:
    """A whole recipe: global options and its sources."""

    name: str
    sources: tuple[SourceConfig, ...]
    tokenizer: str | None = None
    tokens_per_shard: int = 50_000_000
    workers: int = 1
    seed: int = 0
    exclusions: bool = False
    # Share of each source's documents (chosen by a hash of the id) held out as the "val" split.
    val_fraction: float = 0.0
    base_dir: Path = Path(".")

    def __post_init__(self) -> None:
        if not 0.0 <= self.val_fraction < 1.0:
            raise DataInputError(
                f"recipe {self.name!r}: val_fraction must be in [0, 1), got {self.val_fraction}"
            )


def _check_keys(table: dict[str, Any], cls: type, where: str, skip: tuple[str, ...] = ()) -> None:
    known = {f.name for f in dataclasses.fields(cls)} - set(skip)
    unknown = sorted(set(table) - known)
    if unknown:
        raise DataInputError(
            f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )


def _source(table: dict[str, Any], where: str) -> SourceConfig:
    _check_keys(table, SourceConfig, where)
    for key in ("name", "reader", "inputs"):
        if key not in table:
            raise DataInputError(f"{where}: missing key {key!r}")
    steps = []
    for i, step in enumerate(table.get("steps", [])):
        if not isinstance(step, dict) or "type" not in step:
            raise DataInputError(f"{where}.steps[{i}]: a table with a 'type' key is required")
        args = {k: v for k, v in step.items() if k != "type"}
        steps.append(StepConfig(step["type"], args))
    inputs = table["inputs"]
    if isinstance(inputs, str):
        inputs = [inputs]
    values = {**table, "inputs": tuple(inputs), "steps": tuple(steps)}
    source = SourceConfig(**values)
    if source.weight < 0 or source.epochs <= 0 or source.tasks < 1:
        raise DataInputError(f"{where}: weight must be ≥ 0, epochs > 0 and tasks ≥ 1")
    return source


def load_recipe(path: str | Path) -> RecipeConfig:
    """Parse and validate a recipe TOML file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataInputError(f"{path}: cannot read recipe ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise DataInputError(f"{path}: invalid TOML ({exc})") from None
    unknown = sorted(set(data) - {"recipe", "source"})
    if unknown:
        raise DataInputError(f"{path}: unknown table(s) {', '.join(unknown)} (known: recipe, source)")
    head = data.get("recipe", {})
    _check_keys(head, RecipeConfig, f"{path}: [recipe]", skip=("sources", "base_dir"))
    sources = tuple(_source(s, f"{path}: source[{i}]") for i, s in enumerate(data.get("source", [])))
    if not sources:
        raise DataInputError(f"{path}: no [[source]] tables")
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise DataInputError(f"{path}: duplicate source names in {names}")
    return RecipeConfig(
        name=head.get("name", path.stem),
        sources=sources,
        base_dir=path.resolve().parent,
        **{k: v for k, v in head.items() if k != "name"},
    )
