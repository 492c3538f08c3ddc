"""Conversion throughput against a plain copy of the same bytes (docs/checkpoints.md).

Writes a random multi-GB Hugging Face checkpoint (tensor by tensor, never the
whole model in memory), then times, in one run:

- a plain copy of its files (``shutil.copyfile``: the floor any converter pays),
  each job timed from a synced page cache until its output is synced to disk,
- ``herd convert`` to hf (resharded), meta (2 shards) and gguf (f32),

and prints each conversion's GB/s and its ratio to the copy.

    python bench/convert.py --gb 2 --workdir /tmp/herd-bench
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from herd.checkpoint.base import CheckpointInfo, expected_shape, tensor_names
from herd.checkpoint.convert import convert
from herd.checkpoint.hf import write_hf
from herd.model.config import ModelConfig


def random_config(gb: float) -> ModelConfig:
    """A Llama-2-7B-shaped model cut to about ``gb`` GB of fp32 weights."""
    per_layer = 4 * 2048 * 2048 + 3 * 2048 * 5632
    n_layers = max(1, int((gb * 1e9 / 4 - 2 * 32000 * 2048) / per_layer))
    return ModelConfig(
        dim=2048, n_layers=n_layers, n_heads=16, vocab_size=32000, hidden_dim=5632, name="bench"
    )


def random_tensors(config: ModelConfig) -> Iterator[tuple[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    for name in tensor_names(config):
        yield name, torch.randn(expected_shape(config, name), generator=g) * 0.02


def timed(fn: Callable[[], object], out: Path, repeats: int) -> float:
    """Best wall time of ``repeats`` runs, each starting with no dirty pages and ending on disk (sync)."""
    best = float("inf")
    for _ in range(repeats):
        if out.is_dir():
            shutil.rmtree(out)
        out.unlink(missing_ok=True)
        os.sync()
        start = time.perf_counter()
        fn()
        os.sync()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gb", type=float, default=2.0, help="checkpoint size in GB (fp32)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per job; the best is reported")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch directory (default: a temp dir)")
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="herd-bench-convert-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        config = random_config(args.gb)
        src = work / "src"
        print(f"writing a random {config.n_layers}-layer checkpoint to {src} ...")
        write_hf(src, CheckpointInfo(config), random_tensors(config), max_shard_bytes=10**9)
        nbytes = sum(f.stat().st_size for f in src.iterdir())
        print(f"source: {nbytes / 1e9:.2f} GB in {len(list(src.iterdir()))} files")

        def plain_copy() -> None:
            (work / "copy").mkdir()
            for f in src.iterdir():
                shutil.copyfile(f, work / "copy" / f.name)

        runs: dict[str, tuple[Callable[[], object], Path]] = {
            "plain copy": (plain_copy, work / "copy"),
            "herd convert --to hf": (lambda: convert(src, work / "hf", "hf", progress=False), work / "hf"),
            "herd convert --to meta --shards 2": (
                lambda: convert(src, work / "meta", "meta", shards=2, progress=False),
                work / "meta",
            ),
            "herd convert --to gguf (f32)": (
                lambda: convert(src, work / "m.gguf", "gguf", progress=False),
                work / "m.gguf",
            ),
        }
        results = {}
        for label, (fn, out) in runs.items():
            results[label] = timed(fn, out, args.repeats)
            print(f"  {label:<36} {results[label]:7.2f} s")
        base = results["plain copy"]
        print(f"\n{'job':<36} {'GB/s':>7} {'vs copy':>8}")
        for label, seconds in results.items():
            print(f"{label:<36} {nbytes / 1e9 / seconds:7.2f} {base / seconds:7.2f}x")
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
