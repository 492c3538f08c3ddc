"""``herd data build``: run every source of a recipe, then tokenize and pack the kept documents.

Layout of the output directory::

    documents/<source>/NNNNN.jsonl.gz     kept documents per shard (+ .done markers, excluded/)
    documents/<source>/.minhash/          global MinHash stages (sources with tasks > 1)
    tokens/<source>/train-NNNNN.bin/.idx.npy
    manifest.json                          herd-tokens-v1 + per-source counts + per-step stats

Document stages resume shard by shard (see :mod:`herd.data.pipeline`);
tokenization is redone from the kept documents, and the manifest is written
last and atomically, so an interrupted build is finished by running it again.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from herd.data.dedup.global_minhash import GlobalMinhash, global_minhash_index
from herd.data.document import Document
from herd.data.errors import DataInputError
from herd.data.executor import Executor
from herd.data.executor.local import LocalExecutor
from herd.data.executor.ray import RayExecutor
from herd.data.io.jsonl import JsonlReader
from herd.data.io.writer import write_atomically
from herd.data.pipeline import Pipeline, expand_inputs
from herd.data.recipe.config import RecipeConfig, SourceConfig
from herd.data.recipe.registry import make_reader, make_step
from herd.data.recipe.tokenize import TextTokenizer, is_held_out, token_dtype, tokenize_source
from herd.data.stats import StepStats

FORMAT = "herd-tokens-v1"
EXECUTORS = ("local", "ray")


def _inputs(recipe: RecipeConfig, source: SourceConfig) -> list[Path]:
    patterns = [p if Path(p).is_absolute() else str(recipe.base_dir / p) for p in source.inputs]
    return expand_inputs(patterns)


def resolve_paths(args: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """Step arguments naming files (keys ending in ``_path`` or ``_file``) made relative to the recipe."""
    return {
        k: str(base_dir / v) if k.endswith(("_path", "_file")) and isinstance(v, str) and v else v
        for k, v in args.items()
    }


def run_source(
    recipe: RecipeConfig, source: SourceConfig, out: Path, executor: str = "local", address: str | None = None
) -> list[StepStats]:
    """Read, filter and dedup one source into ``out``; the merged stats of its steps.

    A ``minhash_dedup`` step with ``scope = "global"`` in a source with
    ``tasks > 1`` runs as the stages of :mod:`herd.data.dedup.global_minhash`.
    """
    where = f"source {source.name!r}"
    if executor not in EXECUTORS:
        raise DataInputError(f"executor {executor!r}: expected one of {', '.join(EXECUTORS)}")
    reader = make_reader(source.reader, dict(source.reader_args), where)
    reader.source = reader.source or source.name
    steps = [make_step(s.type, resolve_paths(s.args, recipe.base_dir), where) for s in source.steps]
    pipeline = Pipeline(reader, steps, exclusions=recipe.exclusions)
    inputs = _inputs(recipe, source)

    def executor_for(part: Pipeline, output_dir: Path) -> Executor:
        if executor == "ray":
            return RayExecutor(part, inputs, output_dir, tasks=source.tasks, address=address)
        return LocalExecutor(part, inputs, output_dir, tasks=source.tasks, workers=recipe.workers)

    index = global_minhash_index(steps, source.tasks, where)
    if index is None:
        return executor_for(pipeline, out).run()
    return GlobalMinhash(pipeline, index, out, source.tasks).run(executor_for)


def _tokenize_splits(
    recipe: RecipeConfig, source: SourceConfig, docs_dir: Path, output: Path, tokenizer: TextTokenizer
) -> dict[str, dict[str, Any]]:
    """Tokenize a source's kept documents: "train" over its epochs, "val" (held out) once."""
    files = sorted(docs_dir.glob("*.jsonl.gz"))
    seed, fraction = recipe.seed, recipe.val_fraction

    def docs(held_out: bool) -> Iterator[Document]:
        return (d for d in JsonlReader().read_files(files) if is_held_out(d.id, seed, fraction) == held_out)

    splits = {"train": (docs(False), source.epochs)}
    if fraction:
        splits["val"] = (docs(True), 1.0)
    return {
        split: tokenize_source(
            stream, tokenizer, output, f"tokens/{source.name}/{split}", epochs, seed, recipe.tokens_per_shard
        )
        for split, (stream, epochs) in splits.items()
    }


def build(
    recipe: RecipeConfig,
    output: str | Path,
    tokenizer: TextTokenizer | None = None,
    executor: str = "local",
    address: str | None = None,
) -> dict[str, Any]:
    """Run the recipe into ``output`` and return the manifest it writes."""
    output = Path(output)
    manifest: dict[str, Any] = {"format": FORMAT, "recipe": recipe.name, "sources": {}, "steps": {}}
    if tokenizer is not None:
        manifest.update(dtype=token_dtype(tokenizer.vocab_size), vocab_size=tokenizer.vocab_size)
        manifest["splits"] = {"train": {}, "val": {}} if recipe.val_fraction else {"train": {}}
    for source in recipe.sources:
        docs_dir = output / "documents" / source.name
        stats = run_source(recipe, source, docs_dir, executor, address)
        manifest["steps"][source.name] = [s.to_dict() for s in stats]
        kept = stats[-1].kept
        entry: dict[str, Any] = {"documents": kept, "weight": source.weight, "epochs": source.epochs}
        if tokenizer is not None:
            for split, packed in _tokenize_splits(recipe, source, docs_dir, output, tokenizer).items():
                if split == "train":
                    entry.update(
                        sampled_documents=packed["documents"], tokens=packed["tokens"], bytes=packed["bytes"]
                    )
                else:
                    entry.update(val_documents=packed["documents"], val_tokens=packed["tokens"])
                if packed["shards"]:
                    manifest["splits"][split][source.name] = {
                        "weight": source.weight,
                        "shards": packed["shards"],
                    }
        manifest["sources"][source.name] = entry
    text = json.dumps(manifest, indent=2) + "\n"
    write_atomically(output / "manifest.json", lambda f: f.write(text.encode()))
    return manifest
