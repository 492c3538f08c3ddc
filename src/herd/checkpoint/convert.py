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

from herd.checkpoint.base import (
    SIDE_FILES_EXTRA,
    TOKENIZER_FILES,
    CheckpointReader,
    find_side_files,
    tensor_names,
)
from herd.checkpoint.destination import FORMATS, check_destination, clean_leftovers
from herd.checkpoint.hf import write_hf
from herd.checkpoint.load import open_checkpoint
from herd.checkpoint.sequence_classification import ARCHITECTURE, SequenceClassificationReader
from herd.errors import HerdError
from herd.model.build import parse_dtype
from herd.tokenizer import Tokenizer, check_vocab_fits, load_tokenizer
from herd.tokenizer.save import save_tokenizer

GGUF_DTYPES = ("f32", "f16", "bf16", "q8_0")


def _progress(reader: CheckpointReader, desc: str, enabled: bool) -> Iterator[tuple[str, torch.Tensor]]:
    total = len(tensor_names(reader.config))
    yield from tqdm(reader.tensors(), total=total, desc=desc, unit="tensor", disable=not enabled)


def _check_request(to: str, *, shards: int | None, tokenizer: object | None, no_vocab: bool) -> None:
    """Refuse, before any work, a combination of options that ``herd convert`` would otherwise ignore."""
    if to not in FORMATS:
        raise HerdError(f"unknown target format {to!r}; use one of {', '.join(FORMATS)}")
    if shards is not None and shards < 1:
        raise HerdError(f"--shards must be at least 1, got {shards}")
    if shards is not None and to != "meta":
        raise HerdError(
            f"--shards {shards}: only --to meta is written in model-parallel shards, not --to {to}"
        )
    if no_vocab and to != "gguf":
        raise HerdError(f"--no-vocab: only --to gguf embeds a vocabulary, not --to {to}")
    if no_vocab and tokenizer is not None:
        raise HerdError("--no-vocab and --tokenizer contradict each other; give one of them")


def convert(
    src: Path | str,
    dst: Path | str,
    to: str,
    *,
    dtype: str | None = None,
    shards: int | None = None,
    progress: bool = True,
    force: bool = False,
    tokenizer: Path | str | None = None,
    no_vocab: bool = False,
) -> Path:
    """Convert the checkpoint at ``src`` into format ``to`` at ``dst``.

    ``dtype``: for hf/meta a torch dtype name (fp32, fp16, bf16; default: the
    source's); for gguf one of f32, f16, bf16, q8_0 (default f32).
    ``shards``: model-parallel shards of a Meta checkpoint (resharding; default 1), meta only.
    ``force``: replace an existing ``dst`` (only a ``to`` checkpoint herd wrote,
    or a GGUF file for gguf; see :func:`~herd.checkpoint.destination.check_destination`).
    ``tokenizer``: any tokenizer :func:`herd.load_tokenizer` opens (a file or a
    directory), written with the model in place of the source's own; its ids
    must fit the model's vocabulary. Without it the source's tokenizer travels
    (a directory's tokenizer files, a GGUF's vocabulary).
    ``no_vocab``: gguf only; write the file without a vocabulary, which is
    otherwise refused (llama.cpp will not load such a file).
    Leftovers of an earlier, killed conversion into ``dst`` are removed first.
    """
    src, dst = Path(src), Path(dst)
    _check_request(to, shards=shards, tokenizer=tokenizer, no_vocab=no_vocab)
    clean_leftovers(dst)
    check_destination(src, dst, to, force=force)
    new_tokenizer = None if tokenizer is None else load_tokenizer(tokenizer)
    with open_checkpoint(src) as reader, tempfile.TemporaryDirectory() as scratch:
        if isinstance(reader, SequenceClassificationReader):
            raise HerdError(
                f"{src}: a reward model ({ARCHITECTURE}); herd convert converts language models only"
            )
        if new_tokenizer is not None:
            check_vocab_fits(new_tokenizer, reader.config.vocab_size)
        if to == "gguf":
            _write_gguf(src, dst, reader, dtype, new_tokenizer, no_vocab=no_vocab, progress=progress)
            return dst
        reader.info.extras[SIDE_FILES_EXTRA] = _side_files(
            src, reader, tokenizer, new_tokenizer, Path(scratch)
        )
        if to == "hf":
            write_hf(
                dst, reader.info, _progress(reader, f"{src.name} → hf", progress), dtype=parse_dtype(dtype)
            )
        else:
            from herd.checkpoint.meta import write_meta

            write_meta(dst, reader, shards=shards or 1, dtype=parse_dtype(dtype), progress=progress)
    return dst


def _write_gguf(
    src: Path,
    dst: Path,
    reader: CheckpointReader,
    dtype: str | None,
    tokenizer: Tokenizer | None,
    *,
    no_vocab: bool,
    progress: bool,
) -> None:
    """Write ``reader``'s model as a GGUF file with ``tokenizer``, else the source's vocabulary.

    A source without any vocabulary is refused unless ``no_vocab`` (which also
    drops the vocabulary of a GGUF source).
    """
    from herd.checkpoint.gguf import TOKENIZER_EXTRA, write_gguf

    gguf_dtype = (dtype or "f32").lower()
    if gguf_dtype not in GGUF_DTYPES:
        raise HerdError(f"GGUF dtype must be one of {', '.join(GGUF_DTYPES)}, got {dtype!r}")
    if no_vocab:
        reader.info.extras[TOKENIZER_EXTRA] = {}
    elif tokenizer is None:
        tokenizer = _dir_tokenizer(src)
        if tokenizer is None and not reader.info.extras.get(TOKENIZER_EXTRA):
            raise HerdError(
                f"{src}: no tokenizer to embed in {dst.name}; give one with --tokenizer PATH (a tokenizer "
                "file or directory), or pass --no-vocab to write a GGUF without vocabulary (llama.cpp will "
                "refuse to load it)"
            )
    if tokenizer is not None:
        check_vocab_fits(tokenizer, reader.config.vocab_size)
    tensors = _progress(reader, f"{src.name} → gguf", progress)
    write_gguf(dst, reader.info, tensors, dtype=gguf_dtype, tokenizer=tokenizer)


def _side_files(
    src: Path, reader: CheckpointReader, path: Path | str | None, tokenizer: Tokenizer | None, scratch: Path
) -> list[Path]:
    """The files to write beside the weights of a directory checkpoint.

    Without a new ``tokenizer`` (loaded from ``path``): the source directory's
    side files, or a GGUF source's vocabulary as directory files. With one: the
    source's files that are not its tokenizer's, and the new tokenizer's.
    """
    if path is None or tokenizer is None:
        if SIDE_FILES_EXTRA in reader.info.extras:
            return reader.info.extras[SIDE_FILES_EXTRA]
        return gguf_tokenizer_files(src, scratch)
    kept = [f for f in reader.info.extras.get(SIDE_FILES_EXTRA, []) if f.name not in TOKENIZER_FILES]
    return kept + _tokenizer_files(Path(path), tokenizer, scratch)


def _tokenizer_files(path: Path, tokenizer: Tokenizer, scratch: Path) -> list[Path]:
    """The files of the tokenizer at ``path``: a directory's own tokenizer files as they are (transformers
    reads them too), else ``tokenizer`` written by :func:`save_tokenizer` (a single file, a GGUF)."""
    if path.is_dir():
        files = [f for f in find_side_files(path) if f.name in TOKENIZER_FILES]
        if any(f.name in ("tokenizer.model", "tokenizer.json") for f in files):
            return files
    return save_tokenizer(tokenizer, scratch)


def _dir_tokenizer(src: Path) -> Tokenizer | None:
    """The tokenizer of a model directory, to embed in a GGUF (None for a GGUF source or no tokenizer)."""
    if not src.is_dir() or not any((src / name).is_file() for name in ("tokenizer.model", "tokenizer.json")):
        return None
    return load_tokenizer(src)


def gguf_tokenizer_files(src: Path, folder: Path) -> list[Path]:
    """The vocabulary embedded in the GGUF file ``src``, saved into ``folder`` as a model directory's
    tokenizer files (``tokenizer.json`` or ``tokenizer.model``, and ``tokenizer_config.json`` with the
    chat template; :func:`~herd.tokenizer.save.save_tokenizer`).

    For a directory checkpoint made from a GGUF file (``herd convert``, averaging), to travel beside the
    weights as a directory source's tokenizer files do. A GGUF without a readable vocabulary gives none,
    with a warning: the weights are still worth writing.
    """
    try:
        tokenizer = load_tokenizer(src)
    except HerdError as exc:
        print(f"herd: warning: {src}: no tokenizer written ({exc})", file=sys.stderr)
        return []
    return save_tokenizer(tokenizer, folder)
