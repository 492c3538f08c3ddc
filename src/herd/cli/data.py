"""``herd data build``, ``stats``, ``train-lm`` and ``train-classifier`` (issue 5 §3)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from herd.argtypes import positive_int
from herd.data.recipe.build import EXECUTORS, build
from herd.data.recipe.config import load_recipe
from herd.data.recipe.remap import parse_remap, remap_paths
from herd.data.recipe.report import draw_png, format_tables, load_manifest


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``herd data`` with its ``build``, ``stats``, ``train-lm`` and ``train-classifier`` subcommands."""
    data = subparsers.add_parser("data", help="build pretraining data from raw sources")
    sub = data.add_subparsers(dest="data_command", metavar="COMMAND", required=True)
    b = sub.add_parser("build", help="run a data recipe (TOML) into packed token shards")
    b.add_argument("config", type=Path, help="recipe TOML, e.g. configs/data/demo.toml")
    b.add_argument("--output", type=Path, required=True, help="output directory")
    b.add_argument("--tokenizer", help="tokenizer file or model directory (overrides the recipe's)")
    b.add_argument(
        "--workers", type=positive_int, help="processes for the local executor (overrides the recipe's)"
    )
    b.add_argument("--executor", choices=EXECUTORS, default="local")
    b.add_argument("--ray-address", help="Ray cluster address (default: a local Ray instance)")
    b.add_argument(
        "--remap",
        action="append",
        default=[],
        type=_remap_rule,
        metavar="OLD=NEW",
        help="run the recipe on other inputs/models: its inputs, step files and tokenizer under OLD are read "
        "from the same place under NEW (longest OLD first; an empty NEW removes the path, so the step's "
        "default applies); repeatable, e.g. --remap data=/scratch/data --remap data/models/lid.176.bin=",
    )
    b.set_defaults(func=_build)
    s = sub.add_parser("stats", help="print a build's manifest as tables and draw stats.png")
    s.add_argument("directory", type=Path)
    s.add_argument("--png", type=Path, help="where to draw the chart (default DIRECTORY/stats.png)")
    s.set_defaults(func=_stats)
    lm = sub.add_parser("train-lm", help="estimate a Kneser-Ney n-gram model (ARPA) for ccnet_perplexity")
    lm.add_argument("inputs", nargs="+", help="files, directories or globs the reader reads")
    lm.add_argument("--reader", default="wikipedia", help="reader name (default: wikipedia, as CCNet)")
    lm.add_argument("--order", type=positive_int, default=5, help="n-gram order (default 5)")
    lm.add_argument("--output", type=Path, required=True, help="ARPA file to write")
    lm.set_defaults(func=_train_lm)
    c = sub.add_parser(
        "train-classifier", help="train a wiki_reference (fastText) or embedding_quality model"
    )
    c.add_argument("--kind", choices=("fasttext", "embedding"), default="fasttext")
    c.add_argument("--positive", nargs="+", required=True, help="JSONL documents or text (one per line)")
    c.add_argument("--negative", nargs="+", required=True, help="JSONL documents or text (one per line)")
    c.add_argument("--output", type=Path, required=True, help="model file (.bin for fastText, .json)")
    c.set_defaults(func=_train_classifier)


def _remap_rule(text: str) -> tuple[Path, Path | None]:
    try:
        return parse_remap(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _build(args: argparse.Namespace) -> int:
    import dataclasses

    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    recipe = load_recipe(args.config)
    if args.remap:
        recipe = remap_paths(recipe, args.remap)
    if args.workers is not None:
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


def _train_lm(args: argparse.Namespace) -> int:
    from herd.data.pipeline import expand_inputs
    from herd.data.quality.ngram_lm import estimate_kneser_ney, sentences
    from herd.data.recipe.registry import make_reader

    reader = make_reader(args.reader, {}, "train-lm")
    corpus = (s for doc in reader.read_files(expand_inputs(args.inputs)) for s in sentences(doc.text))
    model = estimate_kneser_ney(corpus, args.order)
    model.write_arpa(args.output)
    counts = [sum(len(g) == n for g in model.entries) for n in range(1, model.order + 1)]
    print(f"{args.output}: {model.order}-gram model, n-grams per order {counts}")
    return 0


def _train_classifier(args: argparse.Namespace) -> int:
    from herd.data.quality.examples import read_examples

    positive, negative = list(read_examples(args.positive)), list(read_examples(args.negative))
    if args.kind == "fasttext":
        from herd.data.quality.wiki_classifier import train_fasttext_classifier

        train_fasttext_classifier(positive, negative, args.output)
    else:
        from herd.data.quality.embedding_classifier import train_embedding_classifier

        train_embedding_classifier(positive, negative, args.output)
    print(f"{args.output}: trained on {len(positive)} positive and {len(negative)} negative examples")
    return 0
