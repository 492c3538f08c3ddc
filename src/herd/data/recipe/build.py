"""``herd data build``: run every source of a recipe, then tokenize and pack the kept documents.

Layout of the output directory::

    documents/<source>/NNNNN.jsonl.gz     kept documents per shard (+ .done markers, excluded/)
    documents/<source>/.minhash/          global MinHash stages (sources with tasks > 1)
    tokens/<source>/train-NNNNN.bin/.idx.npy
    tokenizer/                             the tokenizer that made the token ids (herd.load_tokenizer reads it)
    manifest.json                          herd-tokens-v1 + per-source counts + per-step stats

The token shards and the manifest's format are :mod:`herd.io.token_shards`;
the manifest's ``tokenizer`` key names the tokenizer's folder, so the next
stage sets its vocabulary from the dataset and ships the tokenizer with the
weights it exports. A build without a tokenizer writes the documents only and
says so in the manifest (``documents_only``: what it made and the command that
packs token shards).

Before anything is read or written the whole recipe is made ready
(:func:`prepare`): every source's reader and steps are built, their files
found and every input pattern expanded, so a mistake in the last source's last
step is one error naming the recipe, the source and the step, not a failure
after the first sources ran.

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
import os
import re
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from herd.data.dedup.global_minhash import GlobalMinhash, global_minhash_index
from herd.data.document import Document
from herd.data.errors import DataInputError
from herd.data.executor import EXECUTORS, Executor
from herd.data.executor.local import LocalExecutor
from herd.data.executor.ray import RayExecutor
from herd.data.io.jsonl import JsonlReader
from herd.data.io.reader import Reader
from herd.data.pipeline import DONE_DIR, EXCLUDED_DIR, Pipeline, expand_inputs
from herd.data.progress import SourceProgress
from herd.data.recipe.config import (
    RecipeConfig,
    SourceConfig,
    reader_where,
    recipe_where,
    source_where,
    step_where,
)
from herd.data.recipe.registry import make_reader, make_step
from herd.data.recipe.report import TOKENIZER_DIR, load_manifest, manifest_shards
from herd.data.recipe.tokenize import is_held_out, tokenize_source
from herd.data.stats import StepStats
from herd.data.step import Step
from herd.io.atomic import atomic_dir, remove_stale_temporaries, write_atomically
from herd.io.token_shards import FORMAT, MANIFEST, SHARD_SUFFIXES, token_dtype, write_manifest
from herd.paths import contained
from herd.tokenizer.base import Tokenizer
from herd.tokenizer.save import save_tokenizer

log = logging.getLogger("herd.data")

# Written into every build directory: what lets a later build reuse (and clean) it.
BUILD_MARKER = ".herd-build.json"
BUILD_FORMAT = "herd-data-build-v1"
LOCK = ".herd-build.lock"
# Names of the files a pipeline task writes per rank (shards, exclusions; markers end in .json).
_RANK_FILE = re.compile(r"(\d{5})\.(jsonl\.gz|json)")


def resolve_paths(args: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """Step arguments naming files (keys ending in ``_path`` or ``_file``) made relative to the recipe."""
    return {k: str(base_dir / v) if is_file_argument(k, v) else v for k, v in args.items()}


def is_file_argument(key: str, value: Any) -> bool:
    """Whether a step argument names a file (its key ends in ``_path`` or ``_file``, its value is a path)."""
    return key.endswith(("_path", "_file")) and isinstance(value, str) and bool(value)


@dataclass
class PreparedSource:
    """A source ready to run: its reader and steps made, its input files found, its documents' folder,
    and the index of the ``minhash_dedup`` step that runs as global stages (None: none does)."""

    config: SourceConfig
    reader: Reader
    steps: list[Step]
    inputs: list[Path]
    documents: Path
    minhash: int | None


def prepare(recipe: RecipeConfig, output: Path) -> list[PreparedSource]:
    """Every source of ``recipe`` made ready to run into ``output``, before anything is read or written.

    :func:`~herd.data.recipe.config.load_recipe` has checked names, types and
    ranges; this adds what needs the file system and the final paths (after
    ``--remap`` or ``--set``): every file a step names (``*_path``,
    ``*_file``) exists, every step's and reader's constructor accepts its
    arguments (a step that needs a model has one), every input pattern
    matches a file, and a global ``minhash_dedup`` can run across the
    source's tasks. The first problem is one :class:`DataInputError` naming
    the recipe, the source and the step.
    """
    prepared = []
    for i, source in enumerate(recipe.sources):
        where = source_where(f"{recipe_where(recipe)}: source[{i}]", source.name)
        reader = make_reader(source.reader, dict(source.reader_args), reader_where(where, source.reader))
        reader.source = reader.source or source.name
        steps = []
        for j, step in enumerate(source.steps):
            at = step_where(where, j, step.type)
            args = resolve_paths(step.args, recipe.base_dir)
            for key, value in args.items():
                if is_file_argument(key, value) and not os.path.exists(value):
                    raise DataInputError(f"{at}: {key}: {value}: no such file or directory")
            steps.append(make_step(step.type, args, at))
        patterns = [p if Path(p).is_absolute() else str(recipe.base_dir / p) for p in source.inputs]
        try:
            inputs = expand_inputs(patterns)
        except DataInputError as exc:
            raise DataInputError(f"{where}: inputs: {exc}") from None
        documents = contained(output / "documents", source.name, f"{where}: name")
        minhash = global_minhash_index(steps, source.tasks, where)
        prepared.append(PreparedSource(source, reader, steps, inputs, documents, minhash))
    return prepared


def run_source(
    recipe: RecipeConfig, source: PreparedSource, executor: str = "local", address: str | None = None
) -> list[StepStats]:
    """Read, filter and dedup one prepared source into its documents folder; the merged stats of its steps.

    A ``minhash_dedup`` step with ``scope = "global"`` in a source with
    ``tasks > 1`` runs as the stages of :mod:`herd.data.dedup.global_minhash`.
    """
    tasks, out = source.config.tasks, source.documents
    pipeline = Pipeline(source.reader, source.steps, exclusions=recipe.exclusions)

    def executor_for(part: Pipeline, output_dir: Path) -> Executor:
        if executor == "ray":
            return RayExecutor(part, source.inputs, output_dir, tasks=tasks, address=address)
        return LocalExecutor(part, source.inputs, output_dir, tasks=tasks, workers=recipe.workers)

    if source.minhash is None:
        stats = executor_for(pipeline, out).run()
    else:
        stats = GlobalMinhash(pipeline, source.minhash, out, tasks).run(executor_for)
    _remove_leftovers(out, tasks, [s.name for s in source.steps] if recipe.exclusions else [])
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
    recipe: RecipeConfig, source: SourceConfig, docs_dir: Path, output: Path, tokenizer: Tokenizer
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
    tokenizer: Tokenizer | None = None,
    executor: str = "local",
    address: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Run the recipe into ``output`` and return the manifest it writes.

    The recipe is made ready first (:func:`prepare`), so a mistake anywhere in
    it stops the build before ``output`` is touched. With a ``tokenizer``, the
    kept documents are packed into token shards and the tokenizer is saved in
    ``output/tokenizer``; ``progress`` shows each source's progress line on
    stderr (:mod:`herd.data.progress`).
    """
    output = Path(output)
    if executor not in EXECUTORS:
        raise DataInputError(f"executor {executor!r}: expected one of {', '.join(EXECUTORS)}")
    sources = prepare(recipe, output)
    claim_output(output)
    with _exclusive(output):
        clean_output(output)
        return _run(recipe, sources, output, tokenizer, executor, address, progress)


def _run(
    recipe: RecipeConfig,
    sources: Sequence[PreparedSource],
    output: Path,
    tokenizer: Tokenizer | None,
    executor: str,
    address: str | None,
    progress: bool,
) -> dict[str, Any]:
    """The body of :func:`build`, once ``output`` is claimed and cleaned."""
    manifest: dict[str, Any] = {"format": FORMAT, "recipe": recipe.name, "sources": {}, "steps": {}}
    if tokenizer is not None:
        with atomic_dir(output / TOKENIZER_DIR) as staging:
            save_tokenizer(tokenizer, staging)
        manifest.update(
            dtype=token_dtype(tokenizer.vocab_size),
            vocab_size=tokenizer.vocab_size,
            tokenizer=TOKENIZER_DIR,
            val_fraction=recipe.val_fraction,
        )
        manifest["splits"] = {"train": {}, "val": {}} if recipe.val_fraction else {"train": {}}
    else:
        manifest["documents_only"] = documents_only(recipe, output)
    for prepared in sources:
        source = prepared.config
        with SourceProgress(source.name, enabled=progress) as line:
            stats = run_source(recipe, prepared, executor, address)
            line.finish(read=stats[0].kept, kept=stats[-1].kept, num_bytes=stats[0].bytes_in)
        manifest["steps"][source.name] = [s.to_dict() for s in stats]
        entry: dict[str, Any] = {
            "documents": stats[-1].kept,
            "weight": source.weight,
            "epochs": source.epochs,
        }
        if tokenizer is not None:
            for split, packed in _tokenize_splits(
                recipe, source, prepared.documents, output, tokenizer
            ).items():
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


def documents_only(recipe: RecipeConfig, output: Path) -> dict[str, str]:
    """What a build without a tokenizer made, and the command that packs token shards from it."""
    recipe_path = recipe.path if recipe.path is not None else "RECIPE"
    return {
        "documents": "documents/<source>/NNNNN.jsonl.gz",
        "token_shards": "none (no tokenizer)",
        "next": f"herd data build {recipe_path} -o {output} --tokenizer PATH "
        '(or tokenizer = "PATH" under [recipe])',
    }


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
    """Remove what a rebuild replaces: a killed run's temporary files, the previous manifest, its shards
    and its tokenizer.

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
        manifest = load_manifest(output)
        for path in manifest_shards(manifest, previous):
            if path.name.endswith(SHARD_SUFFIXES) and not path.is_dir():  # only what tokenization writes
                path.unlink(missing_ok=True)
        tokenizer = output / TOKENIZER_DIR
        if manifest.get("tokenizer") == TOKENIZER_DIR and tokenizer.is_dir() and not tokenizer.is_symlink():
            shutil.rmtree(tokenizer)
        _remove_empty_folders(output / "tokens")
        previous.unlink()


def _remove_empty_folders(root: Path) -> None:
    """Remove the folders under ``root`` (and ``root``) that removing token shards left empty, deepest first.

    A documents-only rebuild then leaves no ``tokens/`` behind; folders still
    holding files (a removed source's shards, which no manifest lists) stay.
    """
    if not root.is_dir() or root.is_symlink():
        return
    for folder in sorted((p for p in root.rglob("*") if p.is_dir() and not p.is_symlink()), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()
    if not any(root.iterdir()):
        root.rmdir()


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
