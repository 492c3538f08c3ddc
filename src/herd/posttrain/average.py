"""Model averaging: the weighted mean of checkpoints of one architecture (Llama 3 §4.1.5).

Llama 3 averages "models obtained from experiments using various versions of
data or hyperparameters at each RM, SFT, or DPO stage" (docs/spec.md §5.6).
:func:`average_checkpoints` does it for any checkpoints herd reads (Hugging
Face, Meta, GGUF, mixed) and for reward models (``LlamaForSequenceClassification``
directories, score head included), tensor by tensor: for each tensor it reads
one input at a time into an fp32 accumulator (fp64 if an input is fp64), so
memory holds one tensor of one input plus the running sum, never a whole model.

Every input is checked against the first before anything is written: the same
tensor names, the same shapes and the same architecture (every field of the
model config but the context length, RoPE included; a reward model's pad id
too). The output is herd's Hugging Face layout, staged and renamed into place
like ``herd convert``'s (:mod:`herd.checkpoint.destination`), with the first
input's config and tokenizer.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path

import torch
from tqdm import tqdm

from herd.checkpoint.base import SIDE_FILES_EXTRA, CheckpointInfo, CheckpointReader, expected_tensors
from herd.checkpoint.convert import gguf_tokenizer_files
from herd.checkpoint.destination import check_destination, clean_leftovers
from herd.checkpoint.hf import write_hf
from herd.checkpoint.load import open_checkpoint
from herd.checkpoint.sequence_classification import (
    SequenceClassificationReader,
    write_sequence_classification,
)
from herd.errors import CheckpointError, ConfigError
from herd.model.build import parse_dtype

# Config fields that may differ between inputs (see check_compatible).
UNCOMPARED = ("max_seq_len",)


def normalised_weights(weights: Sequence[float] | None, count: int) -> list[float]:
    """``weights`` scaled to sum 1 (None: equal); negative, non-finite or all-zero weights are refused."""
    if weights is None:
        return [1.0 / count] * count
    if len(weights) != count:
        raise ConfigError(f"averaging weights: {len(weights)} given for {count} checkpoints")
    bad = [w for w in weights if not math.isfinite(w) or w < 0]
    if bad:
        raise ConfigError(f"averaging weights must be finite and at least 0, got {bad[0]}")
    total = math.fsum(weights)
    if total == 0:
        raise ConfigError("averaging weights are all zero")
    return [w / total for w in weights]


def average_checkpoints(
    inputs: Sequence[Path | str],
    output: Path | str,
    weights: Sequence[float] | None = None,
    dtype: torch.dtype | str | None = None,
    *,
    force: bool = False,
    progress: bool = False,
) -> Path:
    """Write the weighted average of the checkpoints ``inputs`` to ``output`` (Hugging Face layout).

    ``weights``: one per input, normalised to sum 1 (default: equal).
    ``dtype``: of the output (fp32, bf16, fp16; default: the first input's).
    ``force``: replace an ``output`` that exists, if it is a Hugging Face
    checkpoint herd wrote (as ``herd convert --force``); an input is never a
    destination. Reward models average into a reward model (score head and pad
    id kept). Nothing is written when any check fails.
    """
    paths, output = [Path(p) for p in inputs], Path(output)
    if len(paths) < 2:
        raise ConfigError(f"averaging needs at least two checkpoints, got {len(paths)}")
    weights = normalised_weights(weights, len(paths))
    target = parse_dtype(dtype)
    clean_leftovers(output)
    for path in paths:
        check_destination(path, output, "hf", force=force)
    with ExitStack() as stack:
        readers = [stack.enter_context(open_checkpoint(path)) for path in paths]
        names = check_compatible(paths, readers)
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        first = readers[0]
        side_files = first.info.extras.get(SIDE_FILES_EXTRA)
        if side_files is None:  # a GGUF: its vocabulary, written as directory files
            side_files = gguf_tokenizer_files(paths[0], scratch)
        info = CheckpointInfo(first.config, {SIDE_FILES_EXTRA: side_files})
        tensors = tqdm(
            _averaged(paths, readers, names, weights, target),
            total=len(names),
            desc=f"average → {output.name}",
            unit="tensor",
            disable=not progress,
        )
        if isinstance(first, SequenceClassificationReader):
            pad = first.pad_token_id
            if pad is None:
                raise CheckpointError(f"{paths[0]}: the reward model has no pad_token_id in its config.json")
            return write_sequence_classification(output, info, tensors, pad_token_id=pad)
        return write_hf(output, info, tensors)


def check_compatible(paths: Sequence[Path], readers: Sequence[CheckpointReader]) -> list[str]:
    """The canonical tensor names all ``readers`` share; a one-line error naming both inputs otherwise.

    Checked, against the first input: reward model or language model, the set
    of tensors, each tensor's shape, then the remaining config fields (RoPE,
    norm epsilon) and a reward model's pad id. The context length is not
    compared: Meta's ``params.json`` does not record it (herd infers one), and
    it changes no weight; the output takes the first input's.
    """
    first, expected = readers[0], expected_tensors(readers[0])
    for path, reader in zip(paths[1:], readers[1:], strict=True):
        pair = f"{paths[0]} and {path}"
        kinds = [isinstance(r, SequenceClassificationReader) for r in (first, reader)]
        if kinds[0] != kinds[1]:
            rm = paths[0] if kinds[0] else path
            raise CheckpointError(f"{pair}: only {rm} is a reward model; average like with like")
        tensors = expected_tensors(reader)
        for name in [*expected, *tensors]:
            if (name in expected) != (name in tensors):
                has, lacks = (paths[0], path) if name in expected else (path, paths[0])
                raise CheckpointError(f"{pair}: tensor {name} is in {has} but not in {lacks}")
            if expected[name] != tensors[name]:
                raise CheckpointError(_shapes(paths[0], path, name, expected[name], tensors[name]))
        different = [
            f"{f.name} {getattr(first.config, f.name)!r} vs {getattr(reader.config, f.name)!r}"
            for f in dataclasses.fields(first.config)
            if f.compare
            and f.name not in UNCOMPARED
            and getattr(first.config, f.name) != getattr(reader.config, f.name)
        ]
        if different:
            raise CheckpointError(f"{pair}: different architectures ({', '.join(different)})")
        if _pad_id(first) != _pad_id(reader):
            raise CheckpointError(f"{pair}: different pad_token_id ({_pad_id(first)} vs {_pad_id(reader)})")
    return list(expected)


def _pad_id(reader: CheckpointReader) -> int | None:
    """A reward model's pad id (None for a language model, or a reward model without one)."""
    return reader.pad_token_id if isinstance(reader, SequenceClassificationReader) else None


def _averaged(
    paths: Sequence[Path],
    readers: Sequence[CheckpointReader],
    names: Sequence[str],
    weights: Sequence[float],
    dtype: torch.dtype | None,
) -> Iterator[tuple[str, torch.Tensor]]:
    """``(name, Σ wᵢ·tensorᵢ)`` for each name, in ``dtype`` (default: the first input's first tensor's)."""
    out_dtype = dtype
    for name in names:
        tensor = readers[0].get(name)
        out_dtype = out_dtype or tensor.dtype
        total = tensor.to(torch.promote_types(tensor.dtype, torch.float32)) * weights[0]
        for path, reader, weight in zip(paths[1:], readers[1:], weights[1:], strict=True):
            tensor = reader.get(name)
            if tensor.shape != total.shape:
                raise CheckpointError(_shapes(paths[0], path, name, tuple(total.shape), tuple(tensor.shape)))
            total.add_(tensor.to(total.dtype), alpha=weight)
        del tensor
        yield name, total.to(out_dtype)


def _shapes(first: Path, other: Path, name: str, shape: tuple[int, ...], other_shape: tuple[int, ...]) -> str:
    """The one-line refusal of two inputs whose tensor ``name`` differs in shape."""
    return f"tensor {name} has shape {shape} in {first} but {other_shape} in {other}"
