"""``herd data build --remap OLD=NEW``: run a recipe file on other inputs and models without editing it.

Recipes name their inputs, step files (arguments ending in ``_path`` or ``_file``) and tokenizer
relative to the recipe file; the paper recipes put them under ``data/raw`` and ``data/models``.
:func:`remap_paths` moves every such path that lies under OLD (a directory or a file) to the same
place under NEW, the longest matching OLD first, so ``--remap data=/scratch/data`` moves both trees
and ``--remap data/models/lid.176.bin=`` can still single out one file. An empty NEW removes the
path: an input pattern is dropped, and a step argument or the tokenizer is unset, so its default
applies (``ccnet_lid`` without ``model_path`` identifies languages with lingua). A rule that
matches nothing is an error: a mistyped OLD would otherwise leave the recipe's paths silently as
they were.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from herd.data.errors import DataInputError
from herd.data.recipe.build import resolve_paths
from herd.data.recipe.config import RecipeConfig, StepConfig


def parse_remap(text: str) -> tuple[Path, Path | None]:
    """``"OLD=NEW"`` as absolute paths (relative to the current directory); an empty NEW is None."""
    old, sep, new = text.partition("=")
    if not sep or not old:
        raise ValueError(f"{text!r}: expected OLD=NEW (an empty NEW removes the path)")
    return Path(old).resolve(), Path(new).resolve() if new else None


class _Rules:
    """The OLD → NEW rules, longest OLD first, remembering which ones matched."""

    def __init__(self, rules: Sequence[tuple[Path, Path | None]]) -> None:
        self.rules = sorted(rules, key=lambda rule: len(rule[0].parts), reverse=True)
        self.used: set[Path] = set()

    def apply(self, path: str) -> str | None:
        """The absolute ``path`` moved under its rule's NEW (None: removed); unchanged if no OLD holds it."""
        target = Path(os.path.normpath(path))
        for old, new in self.rules:
            if target == old or old in target.parents:
                self.used.add(old)
                return None if new is None else str(new / target.relative_to(old))
        return path


def _step(step: StepConfig, base_dir: Path, rules: _Rules) -> StepConfig:
    """``step`` with its file arguments remapped (those :func:`resolve_paths` makes absolute)."""
    args: dict[str, Any] = {}
    for key, value in resolve_paths(step.args, base_dir).items():
        if isinstance(value, str) and Path(value).is_absolute():
            value = rules.apply(value)
            if value is None:
                continue
        args[key] = value
    return dataclasses.replace(step, args=args)


def remap_paths(recipe: RecipeConfig, rules: Sequence[tuple[Path, Path | None]]) -> RecipeConfig:
    """``recipe`` with its inputs, step files and tokenizer under each OLD moved under NEW (see the module).

    Paths no rule holds are made absolute (the recipe directory is not the current one), not moved.
    """
    table = _Rules(rules)
    base = recipe.base_dir
    sources = []
    for source in recipe.sources:
        moved = (table.apply(str(base / pattern)) for pattern in source.inputs)
        inputs = tuple(p for p in moved if p is not None)
        steps = tuple(_step(s, base, table) for s in source.steps)
        sources.append(dataclasses.replace(source, inputs=inputs, steps=steps))
    tokenizer = None if recipe.tokenizer is None else table.apply(str(base / recipe.tokenizer))
    unused = [str(old) for old, _ in table.rules if old not in table.used]
    if unused:
        raise DataInputError(
            f"--remap {', '.join(unused)}: no input, step file or tokenizer of recipe {recipe.name!r} there"
        )
    return dataclasses.replace(recipe, sources=tuple(sources), tokenizer=tokenizer)
