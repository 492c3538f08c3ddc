"""The tokenizer a recipe packs its token shards with.

A recipe may name a tokenizer (``tokenizer = "..."`` under ``[recipe]``), and
like every path in a recipe it is read relative to the recipe file, so a recipe
works from any current directory. A tokenizer given by the caller instead (``herd
data build --tokenizer``) is a path the user typed and stays relative to the
current directory. A recipe without either builds documents only.
"""

from __future__ import annotations

from pathlib import Path

from herd.data.recipe.config import RecipeConfig
from herd.tokenizer.base import Tokenizer
from herd.tokenizer.load import load_tokenizer


def recipe_tokenizer(recipe: RecipeConfig, override: str | Path | None = None) -> Tokenizer | None:
    """``override`` if given, else the recipe's own tokenizer (relative to the recipe file), else None.

    An empty path counts as none.
    """
    if override:
        return load_tokenizer(override)
    if not recipe.tokenizer:
        return None
    return load_tokenizer(recipe.base_dir / recipe.tokenizer)
