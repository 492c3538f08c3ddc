"""CommonCrawl-path throughput, herd against datatrove, on the bundled WARC sample (docs/data.md).

Both run the same sequence on one core (one worker) over ``--tasks`` tasks, in one run:

- herd: ``WarcReader`` (FastWARC + resiliparse main-content extraction) →
  ``gopher_quality`` → ``c4`` → JSONL.gz, then its global MinHash stages
  (:mod:`herd.data.dedup.global_minhash`: signatures → 14 band jobs → clusters
  → filter, 5-grams, 14×8) → JSONL.gz;
- datatrove: ``WarcReader`` → an extractor (resiliparse main content, the same
  as herd's, by default; ``--extractor trafilatura`` when installed) →
  ``GopherQualityFilter`` → ``C4QualityFilter`` → JSONL.gz, then its MinHash
  stages (signatures → 14 bucket tasks → clusters → filter, 5-grams, 14×8) → JSONL.gz.

So both dedup globally across the tasks, with the same stage structure. The
input is the sample WARC copied ``--copies`` times (so MinHash has duplicates
to find and timings are long enough to be stable). Each side runs
``--repeats`` times, alternating; the best wall time is reported as documents
(WARC records read) per second per core, with herd/datatrove. datatrove is a
benchmark-only dependency (not in herd's extras).

    python bench/data.py --copies 8 --repeats 3
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "samples" / "commoncrawl" / "rust-book.warc.gz"


def make_input(workdir: Path, copies: int) -> Path:
    """A folder holding ``copies`` copies of the sample WARC."""
    folder = workdir / "warc"
    folder.mkdir(parents=True)
    for i in range(copies):
        shutil.copyfile(SAMPLE, folder / f"{i:03d}.warc.gz")
    return folder


def run_herd(inputs: Path, out: Path, tasks: int) -> int:
    """herd's pipeline in this process, MinHash as global stages; the number of WARC records read."""
    from herd.data.dedup.global_minhash import GlobalMinhash
    from herd.data.dedup.minhash import MinhashDedup
    from herd.data.executor.local import LocalExecutor
    from herd.data.filters.c4 import C4Filter
    from herd.data.filters.gopher import GopherQualityFilter
    from herd.data.pipeline import Pipeline
    from herd.data.sources.warc import WarcReader

    files = sorted(inputs.glob("*.warc.gz"))
    steps = [GopherQualityFilter(), C4Filter(), MinhashDedup()]
    stages = GlobalMinhash(Pipeline(WarcReader(), steps), len(steps) - 1, out, tasks)
    stats = stages.run(lambda part, folder: LocalExecutor(part, files, folder, tasks=tasks))
    return stats[0].docs_in


def _resiliparse_extractor() -> object:
    from datatrove.pipeline.extractors.base import BaseExtractor
    from resiliparse.extract.html2text import extract_plain_text

    class ResiliparseExtractor(BaseExtractor):
        """datatrove extractor around resiliparse's main-content extraction (what herd's reader uses)."""

        name = "resiliparse"

        def __init__(self, timeout: float = 1) -> None:
            super().__init__(timeout)

        def extract(self, text: str) -> str:
            return extract_plain_text(text, main_content=True, alt_texts=True)

    return ResiliparseExtractor()


def run_datatrove(inputs: Path, out: Path, extractor: str, tasks: int) -> int:
    """datatrove's equivalent pipeline (five local stages); the number of WARC records read."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.filters import C4QualityFilter, GopherQualityFilter
    from datatrove.pipeline.readers import JsonlReader, WarcReader
    from datatrove.pipeline.writers import JsonlWriter

    if extractor == "trafilatura":
        from datatrove.pipeline.extractors import Trafilatura

        extract = Trafilatura(favour_precision=True)
    else:
        extract = _resiliparse_extractor()
    config = MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=8)
    filtered, sigs, buckets, clusters = (out / n for n in ("filtered", "sigs", "buckets", "clusters"))
    stages = [
        [
            WarcReader(str(inputs)),
            extract,
            GopherQualityFilter(),
            C4QualityFilter(),
            JsonlWriter(str(filtered)),
        ],
        [JsonlReader(str(filtered)), MinhashDedupSignature(str(sigs), config=config)],
        [MinhashDedupBuckets(str(sigs), str(buckets), config=config)],
        [MinhashDedupCluster(str(buckets), str(clusters), config=config)],
        [JsonlReader(str(filtered)), MinhashDedupFilter(str(clusters)), JsonlWriter(str(out / "output"))],
    ]
    stage_tasks = (tasks, tasks, config.num_buckets, 1, tasks)
    stats = []
    for i, stage in enumerate(stages):
        executor = LocalPipelineExecutor(
            stage,
            tasks=stage_tasks[i],
            workers=1,
            logging_dir=str(out / f"logs{i}"),
            skip_completed=False,
        )
        stats.append(executor.run())
    return stats[0].stats[0].stats["documents"].total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=8, help="copies of the sample WARC (131 records each)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--tasks", type=int, default=2, help="tasks of the per-task stages (MinHash across them)"
    )
    parser.add_argument("--extractor", choices=("resiliparse", "trafilatura"), default="resiliparse")
    args = parser.parse_args()
    logging.getLogger().setLevel(logging.ERROR)
    from datatrove.utils.logging import logger as datatrove_logger

    datatrove_logger.remove()  # datatrove logs every stage's progress to stderr
    best = {"herd": float("inf"), "datatrove": float("inf")}
    documents = {}
    with tempfile.TemporaryDirectory() as tmp:
        inputs = make_input(Path(tmp), args.copies)
        for repeat in range(args.repeats):
            for name in best:
                out = Path(tmp) / f"{name}-{repeat}"
                start = time.perf_counter()
                if name == "herd":
                    documents[name] = run_herd(inputs, out, args.tasks)
                else:
                    documents[name] = run_datatrove(inputs, out, args.extractor, args.tasks)
                best[name] = min(best[name], time.perf_counter() - start)
    rates = {name: documents[name] / seconds for name, seconds in best.items()}
    print(
        f"input: {args.copies} × {SAMPLE.name}; {args.tasks} tasks; extractor for datatrove: {args.extractor};"
        " 1 core each"
    )
    for name in best:
        print(f"{name:10s} {documents[name]:6d} docs  {best[name]:7.2f} s  {rates[name]:8.1f} docs/s/core")
    print(f"herd / datatrove: {rates['herd'] / rates['datatrove']:.2f}x")


if __name__ == "__main__":
    main()
