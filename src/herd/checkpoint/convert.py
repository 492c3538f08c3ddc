"""``herd convert``: any checkpoint format to any other, one tensor at a time.

The reader yields canonical tensors lazily (safetensors and GGUF are
memory-mapped, Meta ``.pth`` shards are loaded with ``mmap=True``) and the
writer streams them out, so a conversion holds at most one output shard in
memory, never two copies of the weights. Output is written under a temporary
name and renamed at the end: a failed conversion leaves nothing behind, and
only a destination herd itself wrote is ever replaced
(:mod:`herd.checkpoint.destination`).
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
from tqdm import tqdm

from herd.checkpoint.base import SIDE_FILES_EXTRA, CheckpointReader, tensor_names
from herd.checkpoint.destination import check_destination, clean_leftovers
from herd.checkpoint.hf import write_hf
from herd.checkpoint.load import open_checkpoint
from herd.errors import HerdError
from herd.model.build import parse_dtype
from herd.tokenizer import Tokenizer, load_tokenizer
from herd.tokenizer.save import save_tokenizer

FORMATS = ("hf", "meta", "gguf")
GGUF_DTYPES = ("f32", "f16", "bf16", "q8_0")


def _progress(reader: CheckpointReader, desc: str, enabled: bool) -> Iterator[tuple[str, torch.Tensor]]:
    total = len(tensor_names(reader.config))
    yield from tqdm(reader.tensors(), total=total, desc=desc, unit="tensor", disable=not enabled)


def convert(
    src: Path | str,
    dst: Path | str,
    to: str,
    *,
    dtype: str | None = None,
    shards: int = 1,
    progress: bool = True,
    force: bool = False,
) -> Path:
    """Convert the checkpoint at ``src`` into format ``to`` at ``dst``.

    ``dtype``: for hf/meta a torch dtype name (fp32, fp16, bf16; default: the
    source's); for gguf one of f32, f16, bf16, q8_0 (default f32).
    ``shards``: model-parallel shards of a Meta checkpoint (resharding).
    ``force``: replace an existing ``dst`` (only a ``to`` checkpoint herd wrote,
    or a GGUF file for gguf; see :func:`~herd.checkpoint.destination.check_destination`).
    Leftovers of an earlier, killed conversion into ``dst`` are removed first.
    """
    src, dst = Path(src), Path(dst)
    if to not in FORMATS:
        raise HerdError(f"unknown target format {to!r}; use one of {', '.join(FORMATS)}")
    if shards < 1:
        raise HerdError(f"--shards must be at least 1, got {shards}")
    clean_leftovers(dst)
    check_destination(src, dst, to, force=force)
    with open_checkpoint(src) as reader, tempfile.TemporaryDirectory() as scratch:
        if to != "gguf" and SIDE_FILES_EXTRA not in reader.info.extras:
            reader.info.extras[SIDE_FILES_EXTRA] = _gguf_tokenizer_files(src, Path(scratch))
        if to == "hf":
            write_hf(
                dst, reader.info, _progress(reader, f"{src.name} → hf", progress), dtype=parse_dtype(dtype)
            )
        elif to == "meta":
            from herd.checkpoint.meta import write_meta

            write_meta(dst, reader, shards=shards, dtype=parse_dtype(dtype), progress=progress)
        else:
            from herd.checkpoint.gguf import write_gguf

            gguf_dtype = (dtype or "f32").lower()
            if gguf_dtype not in GGUF_DTYPES:
                raise HerdError(f"GGUF dtype must be one of {', '.join(GGUF_DTYPES)}, got {dtype!r}")
            tokenizer = _dir_tokenizer(src)
            tensors = _progress(reader, f"{src.name} → gguf", progress)
            write_gguf(dst, reader.info, tensors, dtype=gguf_dtype, tokenizer=tokenizer)
    return dst


def _dir_tokenizer(src: Path) -> Tokenizer | None:
    """The tokenizer of a model directory, to embed in a GGUF (None for a GGUF source or no tokenizer)."""
    if not src.is_dir() or not any((src / name).is_file() for name in ("tokenizer.model", "tokenizer.json")):
        return None
    return load_tokenizer(src)


def _gguf_tokenizer_files(src: Path, scratch: Path) -> list[Path]:
    """The vocabulary of a GGUF source written as directory files (``tokenizer.json``/``.model`` + config)."""
    try:
        tokenizer = load_tokenizer(src)
    except HerdError as exc:
        print(f"herd: warning: {src}: no tokenizer written ({exc})", file=sys.stderr)
        return []
    return save_tokenizer(tokenizer, scratch)
