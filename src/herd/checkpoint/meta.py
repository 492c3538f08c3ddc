"""Meta's original checkpoint layout: ``params.json`` + model-parallel ``consolidated.NN.pth`` shards.

This is the format of Meta's reference code (Llama 1/2/3 ``model.py``): tensor
names are herd's canonical names, q/k rows are in the interleaved RoPE order
(docs/spec.md §1), and a model trained with N-way tensor parallelism is saved as N
shards, each holding a slice of every weight (docs/spec.md §1 merge rules):

- ``wq``/``wk``/``wv``/``w1``/``w3``/``output``: split on dim 0 (output rows, whole heads);
- ``wo``/``w2``: split on dim 1 (input columns);
- ``tok_embeddings``: split on dim 1 (the model dim) by Llama 1/2's ``ParallelEmbedding``,
  on dim 0 (the vocabulary) by Llama 3's ``VocabParallelEmbedding``;
- norms: replicated in every shard.

Reading never unpickles arbitrary objects (``torch.load(weights_only=True)``)
and memory-maps each shard (``mmap=True``), so merging a 70B checkpoint holds
one merged tensor at a time, not eight shards.

``params.json`` has Meta's keys (dim, n_layers, n_heads, n_kv_heads,
vocab_size, multiple_of, ffn_dim_multiplier, norm_eps, rope_theta,
use_scaled_rope). Meta's loaders pass it as keyword arguments to their
``ModelArgs``, so the writer adds a herd-specific key only when Meta's keys
cannot describe the model: ``head_dim`` (not dim // n_heads) and
``rope_scaling`` (any RoPE scaling but Llama 3.1's). Any FFN hidden size (e.g.
SmolLM2's) is expressed by choosing multiple_of/ffn_dim_multiplier so that the
Llama rule reproduces it. The reader takes the FFN hidden size, the vocabulary
(``-1`` in Llama 1/2 files) and the embedding split from the weights' shapes.
The format has no tied embeddings and no context length: a tied model is written
with an explicit ``output`` and reads back untied; the context length is
inferred (:func:`context_length`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import pickle
import re
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

import torch
from tqdm import tqdm

from herd.checkpoint.base import (
    CheckpointInfo,
    CheckpointReader,
    MissingTensorError,
    check_shape,
    copy_side_files,
    expected_shape,
    storage_name,
    tensor_names,
)
from herd.checkpoint.destination import staged_checkpoint
from herd.checkpoint.permute import halves_to_interleaved, interleaved_to_halves
from herd.errors import CheckpointError, ConfigError
from herd.io.fields import Fields, read_json_object
from herd.model.config import ModelConfig, RopeScaling, llama_hidden_dim

PARAMS_NAME = "params.json"
SHARD_GLOB = "consolidated.*.pth"
_SHARD_RE = re.compile(r"consolidated\.(\d+)\.pth")

EmbeddingSplit = Literal["dim", "vocab"]
# Key of CheckpointInfo.extras where the reader records how tok_embeddings was split.
EMBEDDING_SPLIT_KEY = "meta_embedding_split"
# The Llama 3 tokenizer (docs/spec.md §2): the vocabulary from which Meta's code splits embeddings by rows.
LLAMA3_VOCAB = 128_000

# Tensors split on dim 1; norms (the 1-D tensors) are replicated; everything else splits on dim 0.
_DIM1_LEAVES = ("wo", "w2")
_REPLICATED_LEAVES = ("norm", "attention_norm", "ffn_norm")

TensorPairs = Iterable[tuple[str, torch.Tensor]]
TensorSource = CheckpointReader | Callable[[], TensorPairs] | TensorPairs


def shard_name(index: int) -> str:
    """``consolidated.00.pth``, ``consolidated.01.pth``, ... as Meta names them."""
    return f"consolidated.{index:02d}.pth"


def _leaf(name: str) -> str:
    """``wq`` for ``layers.0.attention.wq.weight``, ``tok_embeddings`` for ``tok_embeddings.weight``."""
    return name.split(".")[-2]


def split_dim(name: str, embedding_split: EmbeddingSplit) -> int | None:
    """The dim along which tensor ``name`` is split across model-parallel shards; None if replicated (docs/spec.md §1)."""
    leaf = _leaf(name)
    if leaf in _REPLICATED_LEAVES:
        return None
    if leaf == "tok_embeddings":
        return 0 if embedding_split == "vocab" else 1
    return 1 if leaf in _DIM1_LEAVES else 0


def _rope_heads(name: str, config: ModelConfig) -> int | None:
    """Heads whose rows the RoPE permutation reorders: n_heads for wq, n_kv_heads for wk, else None."""
    return {"wq": config.n_heads, "wk": config.n_kv_heads}.get(_leaf(name))


def _part_shape(full: tuple[int, ...], dim: int | None, shards: int) -> tuple[int, ...] | None:
    """The shape of one shard's slice of a ``full``-shaped tensor; None if ``shards`` does not divide it."""
    if dim is None:
        return full
    if full[dim] % shards:
        return None
    return (*full[:dim], full[dim] // shards, *full[dim + 1 :])


# ---- params.json ---------------------------------------------------------------------------------


def context_length(rope_theta: float, scaling: RopeScaling | None) -> int:
    """The training context a params.json implies, as it names none (docs/spec.md §1 table).

    RoPE scaling: the scaled context (Llama 3.1: 8192 × 8); θ ≥ 1e6: Code Llama's
    16384; θ = 5e5: Llama 3's 8192; otherwise Llama 2's 4096.
    """
    if scaling is not None:
        return int(scaling.original_max_seq_len * scaling.factor)
    if rope_theta >= 1e6:
        return 16384
    if rope_theta >= 5e5:
        return 8192
    return 4096


def _scaling_from_params(params: Fields) -> RopeScaling | None:
    """Llama 3.1's scaling for ``use_scaled_rope``; herd's ``rope_scaling`` key for any other."""
    section = params.section("rope_scaling")
    if section is None:
        return RopeScaling() if params.flag("use_scaled_rope", False) else None
    section.unknown({f.name for f in dataclasses.fields(RopeScaling)})
    default = RopeScaling()
    return RopeScaling(
        kind=section.text("kind", default.kind),
        factor=section.number("factor", default.factor),
        low_freq_factor=section.number("low_freq_factor", default.low_freq_factor),
        high_freq_factor=section.number("high_freq_factor", default.high_freq_factor),
        original_max_seq_len=section.integer("original_max_seq_len", default.original_max_seq_len),
    )


def ffn_params(config: ModelConfig) -> tuple[int, float | None]:
    """``(multiple_of, ffn_dim_multiplier)`` for which the Llama rule gives ``config.hidden_dim``.

    The config's own pair comes first; then, for each power of two dividing the
    hidden size, no multiplier and the ratio to the rule's base size (rounded
    as Meta writes them, 1.3, 1.5, ..., else exact: with multiple_of 1 the ratio
    one float step up always lands on the hidden size).
    """
    dim, hidden = config.dim, config.hidden_dim
    base = int(2 * 4 * dim / 3)
    candidates: list[tuple[int, float | None]] = [(config.multiple_of, config.ffn_dim_multiplier)]
    for multiple_of in (1024, 512, 256, 128, 64, 32, 16, 8, 4, 2, 1):
        if hidden % multiple_of == 0:
            ratio = hidden / base
            candidates.append((multiple_of, None))
            candidates += [(multiple_of, round(ratio, digits)) for digits in (1, 2, 3, 4, 6)]
            candidates += [(multiple_of, ratio), (multiple_of, math.nextafter(ratio, math.inf))]
    for multiple_of, multiplier in candidates:
        if llama_hidden_dim(dim, multiple_of, multiplier) == hidden:
            return multiple_of, multiplier
    raise CheckpointError(f"no multiple_of/ffn_dim_multiplier gives hidden size {hidden} at dim {dim}")


def params_from_config(config: ModelConfig) -> dict[str, Any]:
    """The ``params.json`` dict of ``config``, with herd-specific keys only where Meta's cannot say it."""
    params: dict[str, Any] = {
        "dim": config.dim,
        "n_layers": config.n_layers,
        "n_heads": config.n_heads,
        "n_kv_heads": config.n_kv_heads,
        "vocab_size": config.vocab_size,
        "norm_eps": config.norm_eps,
        "rope_theta": config.rope_theta,
    }
    params["multiple_of"], multiplier = ffn_params(config)
    if multiplier is not None:
        params["ffn_dim_multiplier"] = multiplier
    if config.head_dim != config.dim // config.n_heads:
        params["head_dim"] = config.head_dim
    if config.rope_scaling == RopeScaling():
        params["use_scaled_rope"] = True
    elif config.rope_scaling is not None:
        params["rope_scaling"] = dataclasses.asdict(config.rope_scaling)
    return params


def read_params(path: Path) -> Fields:
    """The typed ``params.json`` (a nested ``{"model": {...}}`` is unwrapped); errors name the file."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no {PARAMS_NAME} in the model directory")
    params = read_json_object(path, CheckpointError)
    if isinstance(params.get("model"), dict):
        params = params["model"]
    return Fields(params, path, error=CheckpointError)


# ---- reading -------------------------------------------------------------------------------------


def shard_files(path: Path) -> list[Path]:
    """The ``consolidated.NN.pth`` files of a directory in order; a gap in the numbering is an error."""
    numbered: dict[int, Path] = {}
    for file in path.glob(SHARD_GLOB):
        m = _SHARD_RE.fullmatch(file.name)
        if m:
            numbered[int(m.group(1))] = file
    if not numbered:
        raise CheckpointError(f"{path}: no {SHARD_GLOB} weight files beside {PARAMS_NAME}")
    for index in range(max(numbered) + 1):
        if index not in numbered:
            raise CheckpointError(
                f"{path / shard_name(index)}: shard missing (found {len(numbered)} shards numbered up to "
                f"{max(numbered):02d})"
            )
    return [numbered[i] for i in range(len(numbered))]


def load_shard(file: Path) -> dict[str, Any]:
    """One shard's state dict, memory-mapped; only tensors and plain containers are unpickled."""
    try:
        state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as exc:
        # torch's message goes on to explain how to load the file anyway; only its diagnosis is kept.
        found = re.search(r"WeightsUnpickler error: (.+?)(?: Please use|$)", str(exc), re.MULTILINE)
        detail = f" ({found.group(1).rstrip('.')})" if found else ""
        raise CheckpointError(
            f"{file}: refused: the pickle holds objects other than tensors{detail}, and herd never "
            "runs arbitrary pickled code"
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(
            f"{file}: not a readable torch.save zip file (truncated, corrupt or the pre-1.6 format): {first}"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{file}: expected a state dict of tensors, got {type(state).__name__}")
    return state


class MetaReader(CheckpointReader):
    """Reads a Meta checkpoint directory of any number of shards, merging each tensor on demand."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        params = read_params(self.path / PARAMS_NAME)
        self._files = shard_files(self.path)
        self._shards = [load_shard(f) for f in self._files]
        config = self._config(params)
        self._embedding_split = self._find_embedding_split(config.dim)
        for what, count in (("n_heads", config.n_heads), ("n_kv_heads", config.n_kv_heads)):
            if count % self.shards:
                raise CheckpointError(
                    f"{self.path}: {self.shards} shards cannot each hold whole heads: {what} is {count}"
                )
        self.info = CheckpointInfo(config, extras={EMBEDDING_SPLIT_KEY: self._embedding_split})

    @property
    def shards(self) -> int:
        """How many model-parallel shards the checkpoint has."""
        return len(self._files)

    def _raw(self, index: int, name: str) -> torch.Tensor:
        tensor = self._shards[index].get(name)
        if tensor is None:
            raise MissingTensorError(f"{self._files[index]}: tensor {name} is missing")
        if not isinstance(tensor, torch.Tensor):
            raise CheckpointError(
                f"{self._files[index]}: tensor {name} is a {type(tensor).__name__}, not a tensor"
            )
        return tensor

    def _find_embedding_split(self, dim: int) -> EmbeddingSplit:
        """Whether the shards split tok_embeddings by vocabulary rows or by model-dim columns (from shapes)."""
        first = self._raw(0, "tok_embeddings.weight")
        if first.ndim == 2 and first.shape[1] == dim:
            return "vocab"
        if first.ndim == 2 and first.shape[1] * self.shards == dim:
            return "dim"
        raise CheckpointError(
            f"{self._files[0]}: tok_embeddings.weight has shape {tuple(first.shape)}, which fits neither "
            f"dim {dim} nor dim/{self.shards} shards"
        )

    def _rows(self, name: str) -> int:
        """Rows of shard 0's slice of the matrix ``name`` (split on dim 0)."""
        tensor = self._raw(0, name)
        if tensor.ndim != 2:
            raise CheckpointError(f"{self._files[0]}: tensor {name} has shape {tuple(tensor.shape)}, not 2-D")
        return tensor.shape[0]

    def _check_shard_count(self, n_heads: int, head_dim: int) -> None:
        """Name the missing file when the last shard(s) are absent (``consolidated.01.pth`` of two).

        A gap in the numbering is caught by :func:`shard_files`; a missing last
        shard shows only in the shapes: shard 0 holds 1/N of wq's rows.
        """
        rows = self._rows("layers.0.attention.wq.weight")
        total = n_heads * head_dim
        if rows and total % rows == 0 and total // rows > self.shards:
            raise CheckpointError(
                f"{self.path / shard_name(self.shards)}: shard missing ({PARAMS_NAME} gives wq {total} rows, "
                f"{self._files[0].name} holds {rows}: {total // rows} shards, found {self.shards})"
            )

    def _config(self, params: Fields) -> ModelConfig:
        """The model shape: params.json for the architecture, the weights for hidden size and vocabulary."""
        dim, n_layers, n_heads = params.integer("dim"), params.integer("n_layers"), params.integer("n_heads")
        n_kv_heads, head_dim = params.integer("n_kv_heads", None), params.integer("head_dim", None)
        multiple_of = params.integer("multiple_of", 256)
        multiplier = params.number("ffn_dim_multiplier", None)
        norm_eps, theta = params.number("norm_eps", 1e-5), params.number("rope_theta", 10000.0)
        # Llama 1/2 write vocab_size -1: the vocabulary is read from the output rows.
        vocab = None if params.values.get("vocab_size") in (None, -1) else params.integer("vocab_size")
        try:
            scaling = _scaling_from_params(params)
            self._check_shard_count(n_heads, head_dim or dim // n_heads)
            hidden = self._rows("layers.0.feed_forward.w1.weight") * self.shards
            if llama_hidden_dim(dim, multiple_of, multiplier) != hidden:
                warnings.warn(
                    f"{params.source}: multiple_of {multiple_of} and ffn_dim_multiplier {multiplier} give "
                    f"hidden size {llama_hidden_dim(dim, multiple_of, multiplier)}, the weights have {hidden}; "
                    "using the weights",
                    stacklevel=3,
                )
            return ModelConfig(
                dim=dim,
                n_layers=n_layers,
                n_heads=n_heads,
                n_kv_heads=n_kv_heads,
                vocab_size=vocab or self._rows("output.weight") * self.shards,
                hidden_dim=hidden,
                multiple_of=multiple_of,
                ffn_dim_multiplier=multiplier,
                norm_eps=norm_eps,
                rope_theta=theta,
                rope_scaling=scaling,
                max_seq_len=context_length(theta, scaling),
                head_dim=head_dim,
            )
        except ConfigError as exc:
            raise CheckpointError(f"{params.source}: {exc}") from None

    def storage(self, name: str) -> tuple[str, int]:
        """The dtype of shard 0's memory-mapped slice (no data is read) and the merged tensor's size."""
        return storage_name(str(self._raw(0, name).dtype)), math.prod(expected_shape(self.config, name))

    def get(self, name: str) -> torch.Tensor:
        """The merged tensor ``name`` in herd's layout (q/k rows in rotate-half order)."""
        config = self.config
        dim = split_dim(name, self._embedding_split)
        full = expected_shape(config, name)
        want = _part_shape(full, dim, self.shards)
        if want is None:
            raise CheckpointError(
                f"{self.path}: {name} of shape {full} cannot be split into {self.shards} shards on dim {dim}"
            )
        parts = []
        for index in range(self.shards):
            part = self._raw(index, name)
            if tuple(part.shape) != want:
                raise CheckpointError(
                    f"{self._files[index]}: tensor {name} has shape {tuple(part.shape)} but params.json and "
                    f"{self.shards} shard(s) imply {want}"
                )
            parts.append(part)
        tensor = parts[0] if dim is None or self.shards == 1 else torch.cat(parts, dim)
        heads = _rope_heads(name, config)
        if heads is not None:
            tensor = interleaved_to_halves(tensor, heads)
        return check_shape(config, name, tensor, self.path)

    def close(self) -> None:
        self._shards.clear()


# ---- writing -------------------------------------------------------------------------------------


def default_embedding_split(info: CheckpointInfo, shards: int) -> EmbeddingSplit:
    """How to split tok_embeddings: as the source checkpoint did, else by Meta's code for the family.

    Llama 3 (the 128,256-token tokenizer) splits the vocabulary, Llama 1/2 the
    model dim (docs/spec.md §1); if that does not divide by ``shards``, the other way.
    """
    config = info.config
    preferred: EmbeddingSplit = info.extras.get(EMBEDDING_SPLIT_KEY) or (
        "vocab" if config.vocab_size >= LLAMA3_VOCAB else "dim"
    )
    size = {"vocab": config.vocab_size, "dim": config.dim}
    if size[preferred] % shards == 0:
        return preferred
    return "dim" if preferred == "vocab" else "vocab"


def _check_divisible(config: ModelConfig, shards: int, embedding_split: EmbeddingSplit) -> None:
    """Every split tensor must divide into whole heads / equal slices, else a clear error before writing."""
    for what, count in (("n_heads", config.n_heads), ("n_kv_heads", config.n_kv_heads)):
        if count % shards:
            raise CheckpointError(
                f"cannot write {shards} Meta shards: {what} ({count}) is not divisible by {shards} "
                "(each shard holds whole attention heads)"
            )
    for name in tensor_names(config.replace(tie_embeddings=False)):
        dim = split_dim(name, embedding_split)
        if _part_shape(expected_shape(config, name), dim, shards) is None:
            raise CheckpointError(
                f"cannot write {shards} Meta shards: {name} of shape {expected_shape(config, name)} "
                f"does not split evenly on dim {dim}"
            )


def _passes(source: TensorSource, shards: int) -> Callable[[], TensorPairs]:
    """A callable giving the source tensors afresh for each output shard."""
    if isinstance(source, CheckpointReader):
        return source.tensors
    if callable(source):
        return source
    if shards > 1 and iter(source) is source:
        raise TypeError(
            "write_meta: a one-shot iterator can only be written as one shard; pass a reader, a list "
            "or a callable returning the tensors so each of the shards can stream them"
        )
    return lambda: source


def _slice(
    name: str,
    tensor: torch.Tensor,
    config: ModelConfig,
    index: int,
    shards: int,
    split: EmbeddingSplit,
    dtype: torch.dtype | None,
) -> torch.Tensor:
    """Shard ``index`` of canonical ``tensor`` in Meta's layout (q/k rows back to interleaved)."""
    dim = split_dim(name, split)
    if dim is not None and shards > 1:
        size = tensor.shape[dim] // shards
        tensor = tensor.narrow(dim, index * size, size)
    if dtype is not None:
        tensor = tensor.to(dtype)
    heads = _rope_heads(name, config)
    if heads is not None:
        tensor = halves_to_interleaved(tensor, heads // shards)
    tensor = tensor.contiguous()
    if tensor.storage_offset() or tensor.untyped_storage().nbytes() != tensor.nbytes:
        tensor = tensor.clone()  # torch.save writes a view's whole storage
    return tensor


def write_meta(
    dst: Path | str,
    info: CheckpointInfo | CheckpointReader,
    tensors: TensorSource | None = None,
    *,
    shards: int = 1,
    dtype: torch.dtype | None = None,
    embedding_split: EmbeddingSplit | None = None,
    progress: bool = False,
) -> Path:
    """Write a Meta checkpoint directory atomically: ``params.json`` + ``consolidated.00.pth`` ... .

    ``tensors`` yields canonical (name, tensor) pairs; it may be a reader, a
    callable returning them, or a re-iterable. ``info`` may itself be a reader,
    which is then also the tensor source. For ``shards`` > 1 the source is
    streamed once per output shard, keeping only that shard's slices, so memory
    holds one output shard (1/N of the model) plus the one source tensor being
    sliced, never two copies of the weights. ``embedding_split`` defaults to
    :func:`default_embedding_split`.
    """
    dst = Path(dst)
    if isinstance(info, CheckpointReader):
        tensors = info if tensors is None else tensors
        info = info.info
    if tensors is None:
        raise TypeError("write_meta: no tensors given")
    if shards < 1:
        raise CheckpointError(f"cannot write {shards} Meta shards: need at least one")
    config = info.config
    split = embedding_split or default_embedding_split(info, shards)
    _check_divisible(config, shards, split)
    passes = _passes(tensors, shards)
    names = tensor_names(config)
    bar = tqdm(total=shards * len(names), desc=f"→ meta {dst.name}", unit="tensor", disable=not progress)
    with staged_checkpoint(dst, "meta") as tmp, bar:
        for index in range(shards):
            state: dict[str, torch.Tensor] = {}
            for name, tensor in passes():
                check_shape(config, name, tensor, f"{dst} (input)")
                state[name] = _slice(name, tensor, config, index, shards, split, dtype)
                if name == "tok_embeddings.weight" and config.tie_embeddings:
                    state["output.weight"] = _slice(
                        "output.weight", tensor, config, index, shards, split, dtype
                    )
                bar.update()
            missing = [n for n in names if n not in state]
            if missing:
                raise CheckpointError(f"{dst}: the source has no tensor {missing[0]}")
            # torch.save to a path keeps the file open for as long as a failure's traceback lives;
            # a file of ours is closed at once, so a full disk gets its space back.
            with (tmp / shard_name(index)).open("wb") as file:
                torch.save(state, file)
            del state
        copy_side_files(info, tmp)
        params = params_from_config(config)
        (tmp / PARAMS_NAME).write_text(json.dumps(params, indent=2, sort_keys=True) + "\n")
    return dst
