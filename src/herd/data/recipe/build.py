"""``herd data build``: run every source of a recipe, then tokenize and pack the kept documents.

Layout of the output directory::

    documents/<source>/NNNNN.jsonl.gz     kept documents per shard (+ .done markers, excluded/)
    documents/<source>/.minhash/          global MinHash stages (sources with tasks > 1)
    tokens/<source>/train-NNNNN.bin/.idx.npy
    manifest.json                          herd-tokens-v1 + per-source counts + per-step stats

The token shards and the manifest's format are :mod:`herd.io.token_shards`.

Document stages resume shard by shard (see :mod:`herd.data.pipeline`): a
shard is reused only when its marker's fingerprint matches the current recipe
and inputs (:mod:`herd.data.fingerprint`), so a changed recipe rebuilds what it
changes. Tokenization is redone from the kept documents every time, and the
manifest is written last and atomically, so an interrupted build is finished
by running it again.

The output directory must be new, empty, or a previous build (it holds
``.herd-build.json``, or a ``herd-tokens-v1`` manifest from before that file
existed); anything else is refused, since a build removes what an earlier
build left. A build holds ``.herd-build.lock`` while it runs, and a second one
into the same directory is refused. Before it starts, a build removes the
temporary files of a killed run, the previous manifest and the token shards it lists (refusing a manifest
that names files outside the directory), and after each source's documents,
the shards, markers and exclusions that another task count or step list made.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from herd.data.dedup.global_minhash import GlobalMinhash, global_minhash_index
from herd.data.document import Document
from herd.data.errors import DataInputError
from herd.data.executor import Executor
from herd.data.executor.local import LocalExecutor
from herd.data.executor.ray import RayExecutor
from herd.data.io.jsonl import JsonlReader
from herd.data.pipeline import DONE_DIR, EXCLUDED_DIR, Pipeline, expand_inputs
from herd.data.recipe.config import RecipeConfig, SourceConfig
from herd.data.recipe.registry import make_reader, make_step
from herd.data.recipe.report import load_manifest, manifest_shards
from herd.data.recipe.tokenize import TextTokenizer, is_held_out, tokenize_source
from herd.data.stats import StepStats
from herd.io.atomic import remove_stale_temporaries, write_atomically
from herd.io.token_shards import FORMAT, MANIFEST, SHARD_SUFFIXES, token_dtype, write_manifest
from herd.paths import contained

log = logging.getLogger("herd.data")

EXECUTORS = ("local", "ray")
# Written into every build directory: what lets a later build reuse (and clean) it.
BUILD_MARKER = ".herd-build.json"
BUILD_FORMAT = "herd-data-build-v1"
LOCK = ".herd-build.lock"
# Names of the files a pipeline task writes per rank (shards, exclusions; markers end in .json).
_RANK_FILE = re.compile(r"(\d{5})\.(jsonl\.gz|json)")


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
        stats = executor_for(pipeline, out).run()
    else:
        stats = GlobalMinhash(pipeline, index, out, source.tasks).run(executor_for)
    _remove_leftovers(out, source.tasks, [s.name for s in steps] if recipe.exclusions else [])
    return stats


def _remove_leftovers(out: Path, tasks: int, excluding: Sequence[str]) -> None:
    """Delete the per-rank files an earlier build of this source made that this recipe does not.

    Shards and markers of ranks ≥ ``tasks`` (the task count went down) and
    exclusions of steps not in ``excluding`` (a step was removed, or exclusions
    turned off) would otherwise sit beside the current ones as if they were
    part of this build.
    """
    stale = [p for p in (*out.glob("*.jsonl.gz"), *(out / DONE_DIR).glob("*.json")) if _rank(p) >= tasks]
    excluded = out / EXCLUDED_DIR
    for folder in sorted(excluded.iterdir()) if excluded.is_dir() else ():
        keep = folder.name in excluding
        stale += [p for p in folder.glob("*.jsonl.gz") if _rank(p) >= (0 if not keep else tasks)]
    for path in stale:
        log.info("%s: left by an earlier build with other tasks or steps; removed", path)
        path.unlink()
    for folder in sorted(excluded.iterdir()) if excluded.is_dir() else ():
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def _rank(path: Path) -> int:
    """The rank a task file is named after (``NNNNN.jsonl.gz``), or -1 for a name no task writes."""
    match = _RANK_FILE.fullmatch(path.name)
    return int(match.group(1)) if match else -1


def _tokenize_splits(
    recipe: RecipeConfig, source: SourceConfig, docs_dir: Path, output: Path, tokenizer: TextTokenizer
) -> dict[str, dict[str, Any]]:
    """Tokenize a source's kept documents: "train" over its epochs, "val" (held out) once."""
    files = [docs_dir / f"{rank:05d}.jsonl.gz" for rank in range(source.tasks)]
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
    claim_output(output)
    with _exclusive(output):
        clean_output(output)
        return _run(recipe, output, tokenizer, executor, address)


def _run(
    recipe: RecipeConfig, output: Path, tokenizer: TextTokenizer | None, executor: str, address: str | None
) -> dict[str, Any]:
    """The body of :func:`build`, once ``output`` is claimed and cleaned."""
    manifest: dict[str, Any] = {"format": FORMAT, "recipe": recipe.name, "sources": {}, "steps": {}}
    if tokenizer is not None:
        manifest.update(dtype=token_dtype(tokenizer.vocab_size), vocab_size=tokenizer.vocab_size)
        manifest["splits"] = {"train": {}, "val": {}} if recipe.val_fraction else {"train": {}}
    for source in recipe.sources:
        docs_dir = contained(output / "documents", source.name, f"recipe {recipe.name!r}: source name")
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
    write_manifest(output, manifest)
    return manifest


def claim_output(output: Path) -> None:
    """Make ``output`` a build directory: refuse a file or a directory holding anything but a herd build.

    A refusal is one :class:`DataInputError` and touches nothing; otherwise
    the directory exists afterwards and holds the build marker.
    """
    if output.exists() and not output.is_dir():
        raise DataInputError(f"output {output}: is a file, not a directory (give a new or empty directory)")
    if output.is_dir() and not is_build(output) and any(output.iterdir()):
        raise DataInputError(
            f"output {output}: the directory is not empty and holds no herd data build (no {BUILD_MARKER}); "
            "give a new or empty directory (herd never deletes what it did not create)"
        )
    output.mkdir(parents=True, exist_ok=True)
    if not (output / BUILD_MARKER).is_file():
        record = json.dumps({"format": BUILD_FORMAT}) + "\n"
        write_atomically(output / BUILD_MARKER, lambda f: f.write(record.encode()))


@contextlib.contextmanager
def _exclusive(output: Path) -> Iterator[None]:
    """Hold ``output``'s build lock: a second build into it is refused rather than interleaved.

    (Each would take the other's temporary files for a killed run's.) The
    operating system releases the lock when its process ends, killed or not;
    a build that ends removes the file, so finished outputs are alike whether
    or not an earlier run was killed.
    """
    with open(output / LOCK, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataInputError(f"output {output}: another herd data build is writing to it") from None
        try:
            yield
        finally:
            (output / LOCK).unlink(missing_ok=True)


def clean_output(output: Path) -> None:
    """Remove what a rebuild replaces: a killed run's temporary files, the previous manifest and its shards.

    The manifest goes last, so that until this build ends the directory
    holds no manifest describing shards being rewritten. A previous manifest
    that is damaged or names files outside ``output`` is refused (one
    :class:`DataInputError`) before anything it lists is deleted.
    """
    # the build holds the output's lock: every temporary there is a killed run's
    for leftover in remove_stale_temporaries(output, recursive=True, exclusive=True):
        log.info("%s: temporary file of an interrupted run; removed", leftover.path)
    previous = output / MANIFEST
    if previous.is_file():
        for path in manifest_shards(load_manifest(output), previous):
            if path.name.endswith(SHARD_SUFFIXES) and not path.is_dir():  # only what tokenization writes
                path.unlink(missing_ok=True)
        previous.unlink()


def is_build(directory: Path) -> bool:
    """Whether ``directory`` holds a herd data build (its marker, or a token manifest from before markers)."""
    for name, value in ((BUILD_MARKER, BUILD_FORMAT), (MANIFEST, FORMAT)):
        try:
            record = json.loads((directory / name).read_text("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(record, dict) and record.get("format") == value:
            return True
    return False
