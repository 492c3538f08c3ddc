"""The contract between checkpoint formats: readers yield herd-named tensors, writers consume them.

herd's canonical tensor names are those of :class:`herd.model.Transformer`
(``tok_embeddings.weight``, ``layers.{i}.attention.wq.weight``, ...) with q/k
rows in the Hugging Face rotate-half order. Every format converts to and from
these names, so any reader can feed any writer, one tensor at a time: a
conversion never holds more than one tensor (or one output shard) in memory.
"""

from __future__ import annotations

import shutil
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from herd.errors import CheckpointError
from herd.model.config import ModelConfig


class MissingTensorError(CheckpointError):
    """A checkpoint lacks a tensor its config implies (a reader raises it for a name it does not hold)."""


@dataclass
class CheckpointInfo:
    """What a reader found besides the tensors: the model shape and optional extras."""

    config: ModelConfig
    # Format-specific extras carried across a conversion (e.g. GGUF tokenizer metadata).
    extras: dict[str, Any] = field(default_factory=dict)


# The files of a model directory that make up its tokenizer (what herd.load_tokenizer and transformers read).
TOKENIZER_FILES = (
    "tokenizer.model",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "special_tokens.json",  # herd-trained tiktoken tokenizers
    "chat_template.jinja",
)
# Files beside the weights that travel with a model directory (tokenizer and generation settings).
SIDE_FILES = (*TOKENIZER_FILES, "generation_config.json")
SIDE_FILES_EXTRA = "side_files"


# herd's names for the float types, however a format spells them (safetensors, GGUF, torch).
_FLOAT_NAMES = {
    "F32": "fp32",
    "FLOAT32": "fp32",
    "BF16": "bf16",
    "BFLOAT16": "bf16",
    "F16": "fp16",
    "FLOAT16": "fp16",
}


def storage_name(stored: str) -> str:
    """herd's name of a storage type: fp32, bf16 or fp16 for the floats (``F32``, ``torch.bfloat16``),
    any other type in lower case (GGUF's ``Q4_1`` is ``q4_1``)."""
    stored = stored.removeprefix("torch.")
    return _FLOAT_NAMES.get(stored.upper(), stored.lower())


def find_side_files(folder: Path) -> list[Path]:
    """The :data:`SIDE_FILES` present in a model directory."""
    return [folder / name for name in SIDE_FILES if (folder / name).is_file()]


def copy_side_files(info: CheckpointInfo, dst_dir: Path) -> None:
    """Copy the source's tokenizer files (``info.extras["side_files"]``) into a directory being written."""
    for file in info.extras.get(SIDE_FILES_EXTRA, []):
        shutil.copyfile(file, dst_dir / Path(file).name)


def layer_tensor_names(layer: int) -> list[str]:
    """herd names of the nine tensors of one Transformer block."""
    p = f"layers.{layer}."
    return [
        p + "attention.wq.weight",
        p + "attention.wk.weight",
        p + "attention.wv.weight",
        p + "attention.wo.weight",
        p + "feed_forward.w1.weight",
        p + "feed_forward.w2.weight",
        p + "feed_forward.w3.weight",
        p + "attention_norm.weight",
        p + "ffn_norm.weight",
    ]


def tensor_names(config: ModelConfig) -> list[str]:
    """Every canonical tensor name of a model, in checkpoint order (the tied output is omitted)."""
    names = ["tok_embeddings.weight"]
    for i in range(config.n_layers):
        names += layer_tensor_names(i)
    names.append("norm.weight")
    if not config.tie_embeddings:
        names.append("output.weight")
    return names


def expected_shape(config: ModelConfig, name: str) -> tuple[int, ...]:
    """The shape a canonical tensor must have under ``config``."""
    d, hd = config.dim, config.head_dim
    leaf = name.rsplit(".", 2)[-2] if name.count(".") >= 2 else name.split(".")[0]
    shapes: dict[str, tuple[int, ...]] = {
        "tok_embeddings": (config.vocab_size, d),
        "output": (config.vocab_size, d),
        "norm": (d,),
        "attention_norm": (d,),
        "ffn_norm": (d,),
        "wq": (config.n_heads * hd, d),
        "wk": (config.n_kv_heads * hd, d),
        "wv": (config.n_kv_heads * hd, d),
        "wo": (d, config.n_heads * hd),
        "w1": (config.hidden_dim, d),
        "w3": (config.hidden_dim, d),
        "w2": (d, config.hidden_dim),
        "score": (1, d),  # a reward model's one-label head (LlamaForSequenceClassification)
    }
    return shapes[leaf]


class CheckpointReader(ABC):
    """A checkpoint on disk, read lazily tensor by tensor in herd's canonical layout."""

    path: Path
    info: CheckpointInfo

    @property
    def config(self) -> ModelConfig:
        return self.info.config

    @abstractmethod
    def get(self, name: str) -> torch.Tensor:
        """The canonical tensor ``name`` (in the file's own dtype where it has one; dequantized otherwise)."""

    def names(self) -> list[str]:
        """The canonical names :meth:`tensors` yields, in order: a language model's :func:`tensor_names`."""
        return tensor_names(self.config)

    def storage(self, name: str) -> tuple[str, int]:
        """How the canonical tensor ``name`` is stored: its type (:func:`storage_name`) and element count.

        Readers answer from the file's header; this fallback reads the tensor.
        """
        tensor = self.get(name)
        return storage_name(str(tensor.dtype)), tensor.numel()

    def stored_dtype(self) -> str | None:
        """The storage types of the weight matrices (norms aside), the one holding the most parameters
        first, joined by ``+``: ``bf16`` for a uniform checkpoint, ``q4_1+q8_0`` for a mixed GGUF;
        None when the checkpoint holds none of them (a GGUF of metadata only)."""
        counts: Counter[str] = Counter()
        for name in self.names():
            if len(expected_shape(self.config, name)) == 2:
                try:
                    stored, numel = self.storage(name)
                except MissingTensorError:
                    continue
                counts[stored] += numel
        return "+".join(stored for stored, _ in counts.most_common()) or None

    def tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        """All canonical tensors in checkpoint order (:meth:`names`), one at a time."""
        for name in self.names():
            yield name, self.get(name)

    def close(self) -> None:  # noqa: B027 (optional hook: most readers hold nothing to release)
        """Release open files (mmaps)."""

    def __enter__(self) -> CheckpointReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def expected_tensors(reader: CheckpointReader) -> dict[str, tuple[int, ...]]:
    """The canonical tensors ``reader.tensors()`` yields, each with the shape its config implies."""
    return {name: expected_shape(reader.config, name) for name in reader.names()}


def check_shape(config: ModelConfig, name: str, tensor: torch.Tensor, source: Path | str) -> torch.Tensor:
    """Return ``tensor`` if its shape fits ``config``; otherwise raise a one-line error naming ``source``."""
    want = expected_shape(config, name)
    if tuple(tensor.shape) != want:
        raise CheckpointError(
            f"{source}: tensor {name} has shape {tuple(tensor.shape)} but the config implies {want}"
        )
    return tensor
