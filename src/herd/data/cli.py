"""``herd data build`` and ``herd data stats`` (issue 5 §3)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from herd.data.recipe.build import EXECUTORS, build
from herd.data.recipe.config import load_recipe
from herd.data.recipe.report import draw_png, format_tables, load_manifest


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``herd data`` with its ``build`` and ``stats`` subcommands."""
    data = subparsers.add_parser("data", help="build pretraining data from raw sources")
    sub = data.add_subparsers(dest="data_command", metavar="COMMAND", required=True)
    b = sub.add_parser("build", help="run a data recipe (TOML) into packed token shards")
    b.add_argument("config", type=Path, help="recipe TOML, e.g. configs/data/demo.toml")
    b.add_argument("--output", type=Path, required=True, help="output directory")
    b.add_argument("--tokenizer", help="tokenizer file or model directory (overrides the recipe's)")
    b.add_argument("--workers", type=int, help="processes for the local executor (overrides the recipe's)")
    b.add_argument("--executor", choices=EXECUTORS, default="local")
    b.add_argument("--ray-address", help="Ray cluster address (default: a local Ray instance)")
    b.set_defaults(func=_build)
    s = sub.add_parser("stats", help="print a build's manifest as tables and draw stats.png")
    s.add_argument("directory", type=Path)
    s.add_argument("--png", type=Path, help="where to draw the chart (default DIRECTORY/stats.png)")
    s.set_defaults(func=_stats)


def _build(args: argparse.Namespace) -> int:
    import dataclasses

    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    recipe = load_recipe(args.config)
    if args.workers:
        recipe = dataclasses.replace(recipe, workers=args.workers)
    tokenizer = None
    path = args.tokenizer or recipe.tokenizer
    if path:
        from herd.tokenizer.load import load_tokenizer

        if not args.tokenizer and not Path(path).is_absolute():
            path = str(recipe.base_dir / path)
        tokenizer = load_tokenizer(path)
    manifest = build(recipe, args.output, tokenizer, executor=args.executor, address=args.ray_address)
    print(format_tables(manifest))
    return 0


def _stats(args: argparse.Namespace) -> int:
    manifest = load_manifest(args.directory)
    print(format_tables(manifest))
    png = args.png or args.directory / "stats.png"
    if draw_png(manifest, png):
        print(f"\nchart: {png}")
    return 0
