"""Recipe dataclasses loaded from TOML (tomllib); unknown keys and wrong values are rejected by name.

The file is read, and ``--set KEY=VALUE`` overrides applied to it, by
:mod:`herd.config` (keys as in the file: ``recipe.workers=4``,
``source[0].weight=0.5``). Every key is then checked before use: its type (a
string where a number belongs, a list where a table belongs, in the words of
:mod:`herd.data.checks`, which also checks manifests), reader and step names
against the registry, and each step's arguments against its constructor
(:mod:`herd.data.recipe.registry`). Every problem is one :class:`RecipeError`
naming the file and the key.

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

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import herd.config as loader
from herd.data.checks import expect, unknown_name
from herd.data.errors import DataInputError, RecipeError
from herd.data.recipe.registry import check_reader, check_step
from herd.errors import ConfigError


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
    # The TOML file it was read from (None: made in code); errors found when it is built name it.
    path: Path | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.val_fraction < 1.0:
            raise RecipeError(
                f"recipe {self.name!r}: val_fraction must be in [0, 1), got {self.val_fraction}"
            )


# The TOML type of every recipe key (float accepts integers); checked before any value is used.
RECIPE_TYPES: dict[str, type] = {
    "name": str,
    "tokenizer": str,
    "tokens_per_shard": int,
    "workers": int,
    "seed": int,
    "exclusions": bool,
    "val_fraction": float,
}
SOURCE_TYPES: dict[str, type] = {
    "name": str,
    "reader": str,
    "inputs": list,
    "weight": float,
    "epochs": float,
    "tasks": int,
    "reader_args": dict,
    "steps": list,
}
# A source's name is a directory of the output (documents/<name>, tokens/<name>).
SOURCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _check_table(table: dict[str, Any], types: dict[str, type], where: str) -> None:
    """Refuse unknown keys and values of the wrong type, naming ``where.KEY``."""
    unknown = sorted(set(table) - set(types))
    if unknown:
        raise RecipeError(f"{where}: unknown key(s) {', '.join(unknown)} {unknown_name(unknown[0], types)}")
    for key, value in table.items():
        expect(value, types[key], f"{where}.{key}")


def _positive(value: float, where: str, zero: bool = False) -> None:
    if value < 0 or (value == 0 and not zero):
        raise RecipeError(f"{where}: must be {'0 or more' if zero else 'more than 0'}, got {value}")


def _source(table: Any, where: str) -> SourceConfig:
    expect(table, dict, where)
    if isinstance(table.get("inputs"), str):
        table = {**table, "inputs": [table["inputs"]]}
    _check_table(table, SOURCE_TYPES, where)
    for key in ("name", "reader", "inputs"):
        if key not in table:
            raise RecipeError(f"{where}: missing key {key!r}")
    if not SOURCE_NAME.fullmatch(table["name"]):
        raise RecipeError(
            f"{where}.name: {table['name']!r} is not a plain name (letters, digits, '_', '.', '-'; it names "
            "the source's output directories)"
        )
    for i, pattern in enumerate(table["inputs"]):
        expect(pattern, str, f"{where}.inputs[{i}]")
    if not table["inputs"]:
        raise RecipeError(f"{where}.inputs: no input patterns")
    named = source_where(where, table["name"])
    check_reader(table["reader"], table.get("reader_args", {}), reader_where(named, table["reader"]))
    steps = []
    for i, step in enumerate(table.get("steps", [])):
        if not isinstance(step, dict) or "type" not in step:
            raise RecipeError(f"{named}, steps[{i}]: a table with a 'type' key is required")
        args = {k: v for k, v in step.items() if k != "type"}
        check_step(step["type"], args, step_where(named, i, step["type"]))
        steps.append(StepConfig(step["type"], args))
    _positive(table.get("weight", 1.0), f"{where}.weight", zero=True)
    _positive(table.get("epochs", 1.0), f"{where}.epochs")
    _positive(table.get("tasks", 1), f"{where}.tasks")
    return SourceConfig(**{**table, "inputs": tuple(table["inputs"]), "steps": tuple(steps)})


def source_where(where: str, name: str) -> str:
    """How errors name a source: ``FILE: source[0] 'web'`` (its place in the file, then its name)."""
    return f"{where} {name!r}"


def reader_where(source: str, reader: Any) -> str:
    """How errors name a source's reader and its ``reader_args``: ``FILE: source[0] 'web', reader 'jsonl'``."""
    return f"{source}, reader {reader!r}"


def step_where(source: str, index: int, kind: Any) -> str:
    """How errors name a step: ``FILE: source[0] 'web', steps[2] 'c4'`` (its index and type)."""
    return f"{source}, steps[{index}] {kind!r}"


def recipe_where(recipe: RecipeConfig) -> str:
    """How errors name a recipe: its file, or ``recipe NAME`` for one made in code."""
    return str(recipe.path) if recipe.path is not None else f"recipe {recipe.name!r}"


def load_recipe(path: str | Path, overrides: Iterable[str] = ()) -> RecipeConfig:
    """Parse and validate a recipe TOML file, ``overrides`` (``KEY=VALUE``, as ``--set`` gives them) applied first."""
    path = Path(path)
    try:
        return _recipe(loader.apply_overrides(loader.load_toml(path, "recipe"), overrides), path)
    except RecipeError:
        raise
    except (ConfigError, DataInputError) as exc:  # from herd.config, herd.data.checks and the registry
        raise RecipeError(str(exc)) from None


def _recipe(data: dict[str, Any], path: Path) -> RecipeConfig:
    """The recipe of the TOML table ``data`` read from ``path``."""
    unknown = sorted(set(data) - {"recipe", "source"})
    if unknown:
        raise RecipeError(f"{path}: unknown table(s) {', '.join(unknown)} (known: recipe, source)")
    head = expect(data.get("recipe", {}), dict, f"{path}: recipe")
    _check_table(head, RECIPE_TYPES, f"{path}: recipe")
    for key in ("tokens_per_shard", "workers"):
        _positive(head.get(key, 1), f"{path}: recipe.{key}")
    tables = expect(data.get("source", []), list, f"{path}: source")
    sources = tuple(_source(s, f"{path}: source[{i}]") for i, s in enumerate(tables))
    if not sources:
        raise RecipeError(f"{path}: no [[source]] tables")
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise RecipeError(f"{path}: duplicate source names in {names}")
    return RecipeConfig(
        name=head.get("name", path.stem),
        sources=sources,
        base_dir=path.resolve().parent,
        path=path,
        **{k: v for k, v in head.items() if k != "name"},
    )
