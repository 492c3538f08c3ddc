"""``herd data build``, ``stats``, ``train-lm`` and ``train-classifier``: pretraining data from raw sources.

The library modules are imported by the functions that run the commands, so
``herd --help`` does not load them.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from herd.argtypes import positive_int
from herd.cli.flags import add_json, add_output, add_quiet, add_set, add_threads, apply_threads
from herd.data.executor import EXECUTORS
from herd.data.quality import CLASSIFIER_KINDS


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``herd data`` with its ``build``, ``stats``, ``train-lm`` and ``train-classifier`` actions."""
    data = sub.add_parser("data", help="build pretraining data from raw sources")
    data_sub = data.add_subparsers(dest="data_command", metavar="COMMAND", required=True)
    b = data_sub.add_parser(
        "build",
        help="run a data recipe (TOML) into documents and packed token shards",
        description="Check the whole recipe, then read every source, run its filters and deduplication "
        "(a progress line per source on stderr), and with a tokenizer pack the kept documents into "
        "token shards (mixed by weight and epochs, a val_fraction of each source held out) and save "
        "the tokenizer in OUTPUT/tokenizer. Without one, only the documents are written "
        "(OUTPUT/documents). The tables of documents and tokens per source and step are printed at "
        "the end and kept in OUTPUT/manifest.json. A rebuild into the same OUTPUT redoes only what "
        "changed.",
        epilog="examples:\n  herd data build configs/data/demo.toml -o runs/demo/data\n"
        "  herd data build configs/data/demo.toml -o runs/demo/data --tokenizer runs/demo/tokenizer\n"
        "  herd data build configs/data/demo.toml -o runs/demo/val --set recipe.val_fraction=0.2",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    b.add_argument("config", type=Path, help="recipe TOML, e.g. configs/data/demo.toml")
    add_output(b, "output directory (new, empty, or an earlier build of herd data)")
    add_set(b, "--set recipe.val_fraction=0.01 --set 'source[0].weight=2'")
    b.add_argument("--tokenizer", help="tokenizer file or model directory (overrides the recipe's)")
    b.add_argument(
        "--workers",
        type=positive_int,
        help="processes of the local executor, each running whole tasks of a source (overrides the "
        "recipe's workers)",
    )
    add_threads(b).help = (
        "PyTorch's CPU threads in each process, for the model-based steps (MiniLM); "
        "--workers times --threads should not exceed the cores (default: PyTorch's choice)"
    )
    b.add_argument(
        "--executor", choices=EXECUTORS, default="local", help="where the tasks run (default local)"
    )
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
    add_quiet(b, "no progress lines on stderr")
    add_json(b, "the manifest")
    b.set_defaults(func=_build)

    s = data_sub.add_parser(
        "stats",
        help="print a build's manifest as tables and draw stats.png",
        description="Print the documents and tokens per source and step of a finished build, and draw "
        "them as a chart.",
        epilog="examples:\n  herd data stats runs/data\n  herd data stats runs/data --json -o chart.png",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("directory", type=Path, help="the --output directory of herd data build")
    add_output(s, "where to draw the chart (default DIRECTORY/stats.png)", required=False, aliases=("--png",))
    add_json(s, "the manifest")
    s.set_defaults(func=_stats)

    lm = data_sub.add_parser(
        "train-lm",
        help="estimate a Kneser-Ney n-gram model (ARPA) for ccnet_perplexity",
        description="Estimate an interpolated Kneser-Ney n-gram model of the sentences of INPUTS and "
        "write it as an ARPA file (CCNet trains a 5-gram model on Wikipedia).",
        epilog="example:\n  herd data train-lm enwiki-*.xml.bz2 -o en.5gram.arpa",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    lm.add_argument("inputs", nargs="+", help="files, directories or globs the reader reads")
    lm.add_argument("--reader", default="wikipedia", help="reader name (default: wikipedia, as CCNet)")
    lm.add_argument("--order", type=positive_int, default=5, help="n-gram order (default 5)")
    add_output(lm, "ARPA file to write")
    add_json(lm, "the output, order and n-grams per order")
    lm.set_defaults(func=_train_lm)

    c = data_sub.add_parser(
        "train-classifier",
        help="train a wiki_reference (fastText) or embedding_quality model",
        description="Train the classifier of the wiki_reference step (fastText) or of the "
        "embedding_quality step (a linear head on MiniLM embeddings) from positive (high-quality) "
        "and negative examples.",
        epilog="example:\n  herd data train-classifier --kind fasttext --positive refs.jsonl "
        "--negative random.jsonl -o wiki_reference.bin",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("--kind", choices=CLASSIFIER_KINDS, default="fasttext", help="default fasttext")
    c.add_argument("--positive", nargs="+", required=True, help="JSONL documents or text (one per line)")
    c.add_argument("--negative", nargs="+", required=True, help="JSONL documents or text (one per line)")
    add_output(c, "model file (.bin for fastText, .json for the embedding head)")
    add_threads(c)
    add_json(c, "the output, kind and example counts")
    c.set_defaults(func=_train_classifier)


def _remap_rule(text: str) -> tuple[Path, Path | None]:
    from herd.data.recipe.remap import parse_remap

    try:
        return parse_remap(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _print_manifest(manifest: dict[str, Any], as_json: bool) -> None:
    from herd.data.recipe.report import format_tables

    print(json.dumps(manifest) if as_json else format_tables(manifest))


def _build(args: argparse.Namespace) -> int:
    import dataclasses
    import logging

    from herd.data.recipe.build import build
    from herd.data.recipe.config import load_recipe
    from herd.data.recipe.remap import remap_paths
    from herd.data.recipe.tokenizer import recipe_tokenizer

    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    if args.threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # read by PyTorch in the spawned workers
        apply_threads(args)
    recipe = load_recipe(args.config, overrides=args.overrides)
    if args.remap:
        recipe = remap_paths(recipe, args.remap)
    if args.workers is not None:
        recipe = dataclasses.replace(recipe, workers=args.workers)
    tokenizer = recipe_tokenizer(recipe, args.tokenizer)
    manifest = build(
        recipe,
        args.output,
        tokenizer,
        executor=args.executor,
        address=args.ray_address,
        progress=not args.quiet,
    )
    _print_manifest(manifest, args.json)
    return 0


def _stats(args: argparse.Namespace) -> int:
    from herd.data.recipe.report import draw_png, load_manifest

    manifest = load_manifest(args.directory)
    _print_manifest(manifest, args.json)
    png = args.output or args.directory / "stats.png"
    draw_png(manifest, png)
    if not args.json:
        print(f"\nchart: {png}")
    return 0


def _train_lm(args: argparse.Namespace) -> int:
    from herd.data.quality.training import train_ngram_lm

    model = train_ngram_lm(args.inputs, args.reader, args.order)
    model.write_arpa(args.output)
    counts = [sum(len(g) == n for g in model.entries) for n in range(1, model.order + 1)]
    if args.json:
        print(json.dumps({"output": str(args.output), "order": model.order, "ngrams": counts}))
    else:
        print(f"{args.output}: {model.order}-gram model, n-grams per order {counts}")
    return 0


def _train_classifier(args: argparse.Namespace) -> int:
    from herd.data.quality.training import train_classifier

    apply_threads(args)
    positive, negative = train_classifier(args.kind, args.positive, args.negative, args.output)
    if args.json:
        summary = {"output": str(args.output), "kind": args.kind, "positive": positive, "negative": negative}
        print(json.dumps(summary))
    else:
        print(f"{args.output}: trained on {positive} positive and {negative} negative examples")
    return 0
