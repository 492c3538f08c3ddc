"""Global MinHash dedup across the tasks of a source (Llama 3 §3.1.1 "global MinHash" document dedup).

The in-stream :class:`~herd.data.dedup.minhash.MinhashDedup` sees one task's
documents only. For a source with ``tasks > 1`` whose ``minhash_dedup`` step
has ``scope = "global"`` (the default), :func:`herd.data.recipe.build.run_source`
splits the pipeline at that step and runs five stages instead (datatrove's
design, herd's code), every per-task or per-band job on the recipe's executor:

1. **before** (per task): the reader and the steps before ``minhash_dedup``,
   through :meth:`Pipeline.run_task <herd.data.pipeline.Pipeline.run_task>`, into
   ``.minhash/before/NNNNN.jsonl.gz``; their exclusions go to the source's usual
   ``excluded/<step>/``.
2. **signatures** (per task): each of those documents shingled into word
   5-grams and hashed to 14 bands × 8 rows (docs/spec.md §4, the in-stream step's
   :func:`~herd.data.dedup.minhash.shingles` and
   :class:`~herd.data.dedup.minhash.MinHasher`), stored as
   ``.minhash/signatures/NNNNN.npy`` (uint32 [documents, 112]).
3. **buckets** (per band): the band's keys from every task, sorted; documents
   sharing a key are confirmed by signature agreement ≥ ``threshold`` (0.7, as
   in-stream) and the confirmed pairs of document numbers written to
   ``.minhash/buckets/NNNNN.npy`` (int64 [pairs, 2]). Within a bucket, each
   document (in number order) is compared with the bucket's representatives —
   the earlier documents not confirmed as duplicates there — and paired with
   every one it agrees with; one agreeing with none becomes a representative.
   A bucket of k copies so costs k comparisons, not k².
4. **clusters** (one job): union-find over every band's pairs; a cluster keeps
   its smallest document number and the others are listed per task in
   ``.minhash/clusters/NNNNN.npy`` (indices into that task's stage-1 output).
5. **after** (per task): the stage-1 documents minus those listed, dropped as
   ``near_duplicate`` by a step named ``minhash_dedup`` (so the manifest shows
   the step once, as in-stream), then the remaining steps, into the source's
   ``NNNNN.jsonl.gz`` with its ``.done`` markers and exclusions.

A document's number is its index in the concatenation of the tasks' stage-1
outputs in task order, so "smallest number" is "smallest (task, index)": with
one input file per task, the document the in-stream filter would keep when run
as one task over the same files. The difference is that clusters are
transitive: for a chain a ~ b ~ c with a ≁ c the in-stream filter keeps a and
c (c is only compared with kept documents), the stages keep a only.

Each stage writes its files under temporary names, renames them into place and
then writes ``<stage>/.done/NNNNN.json`` (stage 4: ``clusters.json``) holding
the job's fingerprint (:mod:`herd.data.fingerprint`): the MinHash parameters
and the fingerprints of the stage-1 tasks the job reads (its own task for
stage 2, every task for stages 3–5). A rerun skips the jobs whose marker
holds the current fingerprint, so after a change to one input file or to the
steps before ``minhash_dedup`` only what depends on it is redone. Every
output depends only on the previous stage's files, so a run resumed after a
kill at any moment ends with the same bytes as an uninterrupted one. The
``.minhash/`` directory stays after the build (it holds a copy of the stage-1
documents): delete it to reclaim the space once the source is finished (a
rerun would then redo stages 1–4).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from herd.data.dedup.minhash import MinhashDedup, shingles
from herd.data.document import Document
from herd.data.errors import DataInputError
from herd.data.executor import Executor
from herd.data.fingerprint import class_identity, digest, read_marker
from herd.data.io.jsonl import JsonlReader
from herd.data.pipeline import DONE_DIR, EXCLUDED_DIR, Pipeline, write_marker
from herd.data.stats import StepStats, merge_stats
from herd.data.step import Filter, Step
from herd.io.atomic import write_atomically

log = logging.getLogger(__name__)

STAGE_DIR = ".minhash"


def global_minhash_index(steps: Sequence[Step], tasks: int, where: str) -> int | None:
    """Index of the ``minhash_dedup`` step to run as global stages, or ``None`` when the stream suffices.

    With one task the in-stream filter already sees the whole source.
    """
    if tasks <= 1:
        return None
    for index, step in enumerate(steps):
        if isinstance(step, MinhashDedup) and step.scope == "global":
            if step.exact:
                raise DataInputError(
                    f"{where}: {step.name} with exact = true cannot run across tasks (the global stages "
                    'confirm by signature agreement); set scope = "task" or tasks = 1'
                )
            return index
    return None


class StageReader(JsonlReader):
    """Reads back a stage's own JSONL output: every record is a document, already counted upstream.

    Unlike a source reader it keeps documents whose text a step emptied, so
    document positions and counts agree with the stage that wrote them.
    """

    name = "minhash_stage"

    def emit(self, doc: Document, path: str | Path) -> Document | None:
        return doc


class ClusterFilter(Filter):
    """``minhash_dedup`` in stage 5: drops the documents at the listed positions of the task's stream.

    ``clusters`` is the fingerprint of the stage-4 job that listed them (part of stage 5's).
    """

    name = MinhashDedup.name

    def __init__(self, removed: set[int], clusters: str) -> None:
        super().__init__()
        self.removed = removed
        self.position = 0
        self.identity = {**class_identity(self), "clusters": clusters}

    def check(self, doc: Document) -> str | None:
        position, self.position = self.position, self.position + 1
        return "near_duplicate" if position in self.removed else None


class GlobalMinhash:
    """The five stages for one source: ``pipeline`` split at ``steps[index]``, final output in ``output_dir``."""

    def __init__(self, pipeline: Pipeline, index: int, output_dir: str | Path, tasks: int) -> None:
        step = pipeline.steps[index]
        if not isinstance(step, MinhashDedup):
            raise DataInputError(f"pipeline step {index} is {step.name!r}, not {MinhashDedup.name!r}")
        self.output_dir = Path(output_dir).resolve()
        self.stages = self.output_dir / STAGE_DIR
        self.tasks = tasks
        self.n, self.hasher, self.threshold = step.n, step.hasher, step.threshold
        hash_functions = hashlib.sha256(self.hasher.a.tobytes() + self.hasher.b.tobytes()).hexdigest()
        self.params = {
            "step": step.identity or class_identity(step),
            "n": self.n,
            "bands": self.hasher.bands,
            "rows": self.hasher.rows,
            "threshold": self.threshold,
            "hash_functions": hash_functions,
        }
        self.before_fingerprints: list[str] = []  # per task, set by run()
        self.exclusions = pipeline.exclusions
        self.before = Pipeline(
            pipeline.reader,
            pipeline.steps[:index],
            exclusions=pipeline.exclusions,
            exclusion_dir=self.output_dir / EXCLUDED_DIR,
        )
        self.after_steps = list(pipeline.steps[index + 1 :])

    def run(self, executor_for: Callable[[Pipeline, Path], Executor]) -> list[StepStats]:
        """Run (or finish) every stage; the stats of the reader and every step, ``minhash_dedup`` once.

        ``executor_for(pipeline, output_dir)`` builds the executor that runs
        stage 1 and, through its ``map``, the jobs of the other stages.
        """
        executor = executor_for(self.before, self.stages / "before")
        self.before_fingerprints = [digest(self.before.describe(files)) for files in executor.shards]
        stage = f"{self.output_dir.name}: global minhash stage"
        log.info("%s 1/5 (before): %d tasks", stage, self.tasks)
        before = executor.run()
        ranks = [(rank,) for rank in range(self.tasks)]
        signatures = executor.map(self.signatures, ranks)
        log.info("%s 2/5 (signatures): %d documents", stage, sum(r["documents"] for r in signatures))
        buckets = executor.map(self.buckets, [(band,) for band in range(self.hasher.bands)])
        log.info("%s 3/5 (buckets): %d confirmed pairs", stage, sum(r["pairs"] for r in buckets))
        clusters = executor.map(self.clusters, [()])
        found = clusters[0]
        log.info("%s 4/5 (clusters): %d, %d duplicates", stage, found["clusters"], found["duplicates"])
        after = merge_stats(executor.map(self.filter, ranks))
        log.info("%s 5/5 (after): %d documents kept", stage, after[-1].kept)
        dedup = after[1]  # after[0] is the stage reader, not a step of the recipe
        dedup.seconds += sum(r["seconds"] for r in [*signatures, *buckets, *clusters])
        return [*before, *after[1:]]

    def signatures(self, rank: int) -> dict[str, Any]:
        """Stage 2 for one task: the signature of each stage-1 document; its marker record."""
        marker = self._marker("signatures", rank)
        fingerprint = self._fingerprint("signatures", rank, [self.before_fingerprints[rank]])
        if (record := _done(marker, fingerprint, "documents", self._file("signatures", rank))) is not None:
            return record
        start = time.perf_counter()
        docs = StageReader().read_files([self._file("before", rank, ".jsonl.gz")])
        rows = [self.hasher.signature(shingles(doc.text, self.n)) for doc in docs]
        signatures = np.array(rows, dtype=np.uint32).reshape(len(rows), self.hasher.bands * self.hasher.rows)
        _save(self._file("signatures", rank), signatures)
        return _finish(marker, start, fingerprint, task=rank, documents=len(signatures))

    def buckets(self, band: int) -> dict[str, Any]:
        """Stage 3 for one band: confirmed pairs among documents sharing this band's key; its marker record."""
        marker = self._marker("buckets", band)
        fingerprint = self._fingerprint("buckets", band, self.before_fingerprints)
        if (record := _done(marker, fingerprint, "pairs", self._file("buckets", band))) is not None:
            return record
        start = time.perf_counter()
        signatures = [np.load(self._file("signatures", rank), mmap_mode="r") for rank in range(self.tasks)]
        columns = slice(band * self.hasher.rows, (band + 1) * self.hasher.rows)
        keys = np.concatenate([s[:, columns] for s in signatures])
        order = np.lexsort(keys.T[::-1])  # by key, then by document number (the sort is stable)
        ordered = keys[order]
        starts = np.flatnonzero(np.r_[True, np.any(ordered[1:] != ordered[:-1], axis=1)])
        ends = np.r_[starts[1:], len(order)]
        shared = [order[a:b] for a, b in zip(starts, ends, strict=True) if b - a > 1]
        members = np.sort(np.concatenate(shared)) if shared else np.zeros(0, dtype=np.int64)
        rows = _gather(signatures, members)
        pairs = [
            pair
            for bucket in shared
            for pair in _confirm(bucket, rows[np.searchsorted(members, bucket)], self.threshold)
        ]
        _save(self._file("buckets", band), np.array(pairs, dtype=np.int64).reshape(len(pairs), 2))
        return _finish(marker, start, fingerprint, band=band, pairs=len(pairs))

    def clusters(self) -> dict[str, Any]:
        """Stage 4: union-find over all bands' pairs, the duplicates to drop listed per task; its marker record."""
        marker = self.stages / "clusters" / DONE_DIR / "clusters.json"
        fingerprint = self._fingerprint("clusters", None, self.before_fingerprints)
        files = [self._file("clusters", rank) for rank in range(self.tasks)]
        if (record := _done(marker, fingerprint, "duplicates", *files)) is not None:
            return record
        start = time.perf_counter()
        pairs = np.concatenate([np.load(self._file("buckets", band)) for band in range(self.hasher.bands)])
        parent = _union_find(pairs)
        duplicates = np.array(sorted(parent), dtype=np.int64)
        offsets = _offsets([np.load(self._file("signatures", r), mmap_mode="r") for r in range(self.tasks)])
        for rank in range(self.tasks):
            low, high = np.searchsorted(duplicates, offsets[rank : rank + 2])
            _save(self._file("clusters", rank), duplicates[low:high] - offsets[rank])
        roots = {_root(parent, x) for x in list(parent)}
        return _finish(marker, start, fingerprint, clusters=len(roots), duplicates=len(duplicates))

    def filter(self, rank: int) -> list[StepStats]:
        """Stage 5 for one task: drop its listed duplicates, run the remaining steps, write the final shard."""
        removed = set(np.load(self._file("clusters", rank)).tolist())
        clusters = self._fingerprint("clusters", None, self.before_fingerprints)
        after = Pipeline(
            StageReader(),
            [ClusterFilter(removed, clusters), *self.after_steps],
            exclusions=self.exclusions,
            progress=False,  # stage 1 counted these documents as read
        )
        return after.run_task([self._file("before", rank, ".jsonl.gz")], rank, self.output_dir)

    def _file(self, stage: str, number: int, suffix: str = ".npy") -> Path:
        return self.stages / stage / f"{number:05d}{suffix}"

    def _marker(self, stage: str, number: int) -> Path:
        return self.stages / stage / DONE_DIR / f"{number:05d}.json"

    def _fingerprint(self, stage: str, number: int | None, before: Sequence[str]) -> str:
        """A stage job's fingerprint: the MinHash parameters and the stage-1 tasks it depends on."""
        return digest({"stage": stage, "job": number, "minhash": self.params, "before": list(before)})


def _save(path: Path, array: np.ndarray) -> None:
    """``np.save`` under a temporary name, then rename: the file exists only when complete."""
    write_atomically(path, lambda f: np.save(f, array))


def _done(marker: Path, fingerprint: str, count: str, *outputs: Path) -> dict[str, Any] | None:
    """A finished job's marker record (checked), or ``None`` when the job must run (again).

    The job is finished when its marker holds ``fingerprint``, an integer
    ``count`` and a number of seconds, and its ``outputs`` exist.
    """
    record = read_marker(marker, fingerprint)
    if record is None:
        return None
    valid = type(record.get(count)) is int and type(record.get("seconds")) in (int, float)
    if not valid or not all(p.is_file() for p in outputs):
        log.warning("%s: damaged completion marker or missing output; running this job again", marker)
        return None
    return record


def _finish(marker: Path, start: float, fingerprint: str, **record: Any) -> dict[str, Any]:
    """Write a job's marker (its ``record``, ``fingerprint`` and the seconds since ``start``); the record."""
    record["seconds"] = round(time.perf_counter() - start, 6)
    record["fingerprint"] = fingerprint
    write_marker(marker, record)
    return record


def _offsets(signatures: Sequence[np.ndarray]) -> np.ndarray:
    """The number of each task's first document: ``[0, n0, n0 + n1, ...]``."""
    return np.cumsum([0, *(len(s) for s in signatures)])


def _gather(signatures: Sequence[np.ndarray], numbers: np.ndarray) -> np.ndarray:
    """The signatures of the documents ``numbers`` (sorted), read from the per-task arrays."""
    offsets = _offsets(signatures)
    rows = np.empty((len(numbers), signatures[0].shape[1]), dtype=np.uint32)
    for rank, array in enumerate(signatures):
        low, high = np.searchsorted(numbers, offsets[rank : rank + 2])
        rows[low:high] = array[numbers[low:high] - offsets[rank]]
    return rows


def _confirm(bucket: np.ndarray, signatures: np.ndarray, threshold: float) -> Iterator[tuple[int, int]]:
    """Pairs (representative, document) in one bucket whose signatures agree on ≥ ``threshold``.

    ``bucket`` holds ascending document numbers, ``signatures`` their rows; see
    the module docstring for the representatives rule.
    """
    representatives: list[int] = []
    for i, number in enumerate(bucket.tolist()):
        agree = (signatures[representatives] == signatures[i]).mean(axis=1) >= threshold
        matches = np.flatnonzero(agree)
        for j in matches:
            yield int(bucket[representatives[j]]), number
        if not len(matches):
            representatives.append(i)


def _root(parent: dict[int, int], x: int) -> int:
    """The root of ``x`` (the smallest number of its cluster), halving the path on the way."""
    while (up := parent.get(x, x)) != x:
        parent[x] = parent.get(up, up)
        x = parent[x]
    return x


def _union_find(pairs: np.ndarray) -> dict[int, int]:
    """Union-find over ``pairs`` where the smaller root always wins.

    Every key of the returned map has a smaller parent, so its keys are
    exactly the documents that are not the smallest of their cluster.
    """
    parent: dict[int, int] = {}
    for a, b in pairs.tolist():
        ra, rb = _root(parent, a), _root(parent, b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return parent
