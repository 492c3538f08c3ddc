"""A pipeline: one reader, a list of steps, one output file per task.

:meth:`Pipeline.run_task` is what every executor calls for one shard of the
input: it reads the shard's files, streams the documents through the steps,
writes the survivors (and, if asked, each step's exclusions) under temporary
names, renames them into place, and only then writes the shard's completion
marker holding its stats and the fingerprint of what produced it (see
:mod:`herd.data.fingerprint`). A task whose marker holds the current
fingerprint is skipped, so a rerun or a resumed run redoes exactly the
unfinished shards, and because a task's output depends only on its files, the
final output is byte-identical to an uninterrupted run. A task whose marker
holds another fingerprint (the recipe or an input changed) is built again.
"""

from __future__ import annotations

import copy
import glob
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from herd.data.checks import expect_key
from herd.data.errors import DataInputError
from herd.data.fingerprint import digest, json_default, pipeline_description, read_marker
from herd.data.io.atomic_writer import AtomicWriter
from herd.data.io.reader import Reader
from herd.data.io.writer import open_writer
from herd.data.progress import TaskMeter
from herd.data.stats import StepStats
from herd.data.step import Step
from herd.io.atomic import write_atomically

log = logging.getLogger("herd.data")

DONE_DIR = ".done"
EXCLUDED_DIR = "excluded"


@dataclass
class Pipeline:
    """``reader`` → ``steps`` → ``output`` (a file-name pattern with ``{rank}``; suffix picks the format).

    With ``exclusions``, each step's dropped documents go to
    ``exclusion_dir/<step>/NNNNN.jsonl.gz``, relative to the output directory
    unless absolute (global MinHash's first stage writes its shards elsewhere
    but its exclusions beside the final output's). With ``progress``, each task
    counts what it reads and keeps towards its source's progress line
    (:mod:`herd.data.progress`); a pipeline that reads another stage's output
    (global MinHash's last stage) counts nothing, so documents count once.
    """

    reader: Reader
    steps: Sequence[Step] = ()
    output: str = "{rank:05d}.jsonl.gz"
    exclusions: bool = False
    exclusion_dir: str | Path = EXCLUDED_DIR
    progress: bool = True
    names: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.names = [self.reader.stats.name, *(s.name for s in self.steps)]
        if len(set(self.names)) != len(self.names):
            raise DataInputError(f"pipeline: step names must be unique, got {self.names}")

    def describe(self, files: Sequence[str | Path]) -> dict[str, Any]:
        """What a task over ``files`` depends on: its fingerprint is the digest of this."""
        return {
            **pipeline_description(self.reader, self.steps, files),
            "output": self.output,
            "exclusions": self.exclusions,
        }

    def run_task(self, files: Sequence[str | Path], rank: int, output_dir: str | Path) -> list[StepStats]:
        """Run one shard (unless its marker says the same pipeline already made it) and return its stats."""
        output_dir = Path(output_dir)
        marker = output_dir / DONE_DIR / f"{rank:05d}.json"
        output = output_dir / self.output.format(rank=rank)
        description = self.describe(files)
        fingerprint = digest(description)
        record = read_marker(marker, fingerprint, description)
        meter = TaskMeter(counting=self.progress)
        if record is not None:
            try:
                if not output.is_file():
                    raise DataInputError(f"{marker}: its shard {output.name} is missing")
                reused = stats_from_record(record, marker, self.names)
                meter.reused(reused)
                return reused
            except DataInputError as exc:
                log.warning("%s; building this part again", exc)
        marker.unlink(missing_ok=True)
        task = copy.deepcopy(self)  # fresh stats and step state for every shard
        exclusions = {step.name: self._exclusion_file(output_dir, step.name, rank) for step in task.steps}
        for path in (output, *exclusions.values()):  # another recipe's: nothing of it may survive this run
            path.unlink(missing_ok=True)
        writers: list[AtomicWriter] = []
        try:
            out = open_writer(output)
            writers.append(out)
            if self.exclusions:
                for step in task.steps:
                    step.exclusion = open_writer(exclusions[step.name])
                    writers.append(step.exclusion)  # type: ignore[arg-type]
            stream: Iterable = meter.reading(task.reader.read_files(files), task.reader.stats)
            for step in task.steps:
                stream = step.run(stream)
            for doc in stream:
                out.write(doc)
                meter.kept()
            meter.flush()
            while writers:
                writers.pop(0).close()  # a close that fails removes its own temporary file
        except BaseException:
            for w in writers:
                w.discard()
            raise
        stats = [task.reader.stats, *(s.stats for s in task.steps)]
        record = {
            "rank": rank,
            "fingerprint": fingerprint,
            "produced_by": description,
            "stats": [s.to_dict() for s in stats],
        }
        write_marker(marker, record)
        return stats

    def _exclusion_file(self, output_dir: Path, step: str, rank: int) -> Path:
        return output_dir / self.exclusion_dir / step / f"{rank:05d}.jsonl.gz"


def stats_from_record(record: dict[str, Any], marker: Path, names: Sequence[str]) -> list[StepStats]:
    """The stats of the steps ``names`` a completion marker holds, checked (damage: :class:`DataInputError`)."""
    entries = expect_key(record, "stats", list, str(marker))
    stats = [StepStats.from_dict(entry, f"{marker}: stats[{i}]") for i, entry in enumerate(entries)]
    if [s.name for s in stats] != list(names):
        raise DataInputError(f"{marker}: stats of {[s.name for s in stats]}, expected {list(names)}")
    return stats


def write_marker(marker: Path, record: dict[str, Any]) -> None:
    """Write a completion marker atomically (temporary name, then rename): it exists only when whole."""
    text = json.dumps(record, indent=1, default=json_default) + "\n"
    write_atomically(marker, lambda f: f.write(text.encode()))


def expand_inputs(patterns: Iterable[str | Path]) -> list[Path]:
    """Files named by paths, directories (all files below, recursively) or glob patterns, sorted."""
    files: set[Path] = set()
    for pattern in patterns:
        p = Path(pattern)
        if p.is_dir():
            files.update(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
        elif p.is_file():
            files.add(p)
        else:
            matches = [Path(m) for m in glob.glob(str(pattern), recursive=True)]
            if not matches:
                raise DataInputError(f"{pattern}: no such input file, directory or pattern")
            files.update(m for m in matches if m.is_file())
    return sorted(files)


def shard(files: Sequence[Path], tasks: int) -> list[list[Path]]:
    """Split ``files`` into ``tasks`` shards by rank (file i goes to task i mod tasks)."""
    if tasks < 1:
        raise DataInputError(f"tasks must be at least 1, got {tasks}")
    return [list(files[rank::tasks]) for rank in range(tasks)]
