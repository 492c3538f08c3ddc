"""Reward models in the Hugging Face layout: ``LlamaForSequenceClassification`` with one label.

A Llama 2 reward model is the chat model with its next-token head replaced by a
head that outputs one scalar (Llama 2 §3.2.2, docs/spec.md §5.2). Hugging Face
stores exactly that as ``LlamaForSequenceClassification``: the decoder's
``model.*`` tensors under herd's Hugging Face names (:mod:`herd.checkpoint.hf`),
no ``lm_head``, and ``score.weight`` of shape (num_labels, hidden) = (1, dim);
``config.json`` names the architecture, one label and the ``pad_token_id``.

In herd's canonical names the same checkpoint is the decoder's tensors without
``output.weight``, followed by :data:`SCORE` (:func:`reward_tensor_names`).

**Which token is scored.** transformers reads each row at the rightmost token
that is not ``pad_token_id``, for right and left padding alike.
:class:`herd.posttrain.reward_model.RewardModel` applies the same rule with the
pad id it saves here, so a checkpoint scores the same batch identically in both.
The pad id must therefore never be the token a scored sequence ends with: a
Llama 3 end-of-turn token that closes every answer must not double as padding
(Llama 3's tokenizer reserves ``<|finetune_right_pad_id|>`` for this).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from herd.checkpoint.base import (
    SIDE_FILES_EXTRA,
    CheckpointInfo,
    CheckpointReader,
    expected_shape,
    find_side_files,
    tensor_names,
)
from herd.checkpoint.destination import MARKER_NAME, staged_checkpoint
from herd.checkpoint.hf import (
    DEFAULT_MAX_SHARD_BYTES,
    INDEX_NAME,
    SINGLE_NAME,
    HFReader,
    is_hf_dir,
    shard_path,
    write_hf,
)
from herd.checkpoint.load import open_checkpoint
from herd.errors import CheckpointError, ConfigError
from herd.io.fields import Fields, read_json_object
from herd.model.config import ModelConfig
from herd.tokenizer.base import Tokenizer
from herd.tokenizer.save import save_tokenizer

SCORE = "score.weight"
ARCHITECTURE = "LlamaForSequenceClassification"
OUTPUT = "output.weight"


def reward_tensor_names(config: ModelConfig) -> list[str]:
    """A reward model's canonical tensor names: the decoder's without the output head, then :data:`SCORE`."""
    return [name for name in tensor_names(config) if name != OUTPUT] + [SCORE]


def reward_tensor_shape(config: ModelConfig, name: str) -> tuple[int, ...]:
    """The shape tensor ``name`` of a reward model of ``config`` must have ((1, dim) for the score head)."""
    return (1, config.dim) if name == SCORE else expected_shape(config, name)


def is_sequence_classification(path: Path | str) -> bool:
    """Whether ``path`` is a Hugging Face directory whose config names a ``*ForSequenceClassification``."""
    path = Path(path)
    if not is_hf_dir(path):
        return False
    config = read_json_object(path / "config.json", CheckpointError)
    architectures = config.get("architectures")
    return isinstance(architectures, list) and any(
        isinstance(name, str) and name.endswith("ForSequenceClassification") for name in architectures
    )


class SequenceClassificationReader(HFReader):
    """A one-label ``LlamaForSequenceClassification`` directory, read lazily in herd's names.

    :meth:`tensors` yields :func:`reward_tensor_names`: the decoder's tensors,
    then ``score.weight`` (1, dim). :attr:`pad_token_id` is the config's pad
    id (None when it has none), the token transformers skips when it looks for
    the last real token of a row.
    """

    def __init__(self, path: Path | str) -> None:
        super().__init__(Path(path))
        config_path = self.path / "config.json"
        fields = Fields(read_json_object(config_path, CheckpointError), config_path, error=CheckpointError)
        if not is_sequence_classification(self.path):
            architectures = fields.array("architectures", [])
            raise CheckpointError(
                f"{config_path}: architectures is {architectures}, not a sequence classifier "
                f"({ARCHITECTURE}); a reward model has a score head instead of lm_head"
            )
        labels = fields.section("id2label")
        count = len(labels.values) if labels is not None else fields.integer("num_labels", 2)
        if count != 1:
            raise CheckpointError(
                f"{config_path}: {count} labels; a reward model has one (a scalar score per sequence)"
            )
        self.pad_token_id: int | None = fields.integer(
            "pad_token_id", None, minimum=0, below=self.config.vocab_size
        )
        self._where[SCORE] = self._score_location()
        self.info.extras[SIDE_FILES_EXTRA] = find_side_files(self.path)

    def _score_location(self) -> tuple[Path, str]:
        """The safetensors file holding ``score.weight`` (listed by the index, or the single file)."""
        index = self.path / INDEX_NAME
        if index.is_file():
            file = read_json_object(index, CheckpointError)["weight_map"].get(SCORE)
            if file is not None:
                return shard_path(self.path, file, index), SCORE
        elif SCORE in self._open(self.path / SINGLE_NAME).keys():  # noqa: SIM118 (safe_open is not iterable)
            return self.path / SINGLE_NAME, SCORE
        raise CheckpointError(f"{self.path}: tensor {SCORE} is missing")

    def get(self, name: str) -> torch.Tensor:
        if name == OUTPUT:
            raise CheckpointError(f"{self.path}: a reward model has no {OUTPUT} (its head is {SCORE})")
        if name != SCORE:
            return super().get(name)
        file, key = self._where[SCORE]
        try:
            tensor = self._open(file).get_tensor(key)
        except (SafetensorError, OSError, RuntimeError) as exc:
            raise CheckpointError(f"{file}: cannot read tensor {key} ({exc})") from None
        want = reward_tensor_shape(self.config, SCORE)
        if tuple(tensor.shape) != want:
            raise CheckpointError(
                f"{file}: tensor {SCORE} has shape {tuple(tensor.shape)} but a one-label head is {want}"
            )
        return tensor

    def tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        for name in reward_tensor_names(self.config):
            yield name, self.get(name)


def open_any_checkpoint(path: Path | str) -> CheckpointReader:
    """:func:`~herd.checkpoint.load.open_checkpoint` that opens reward models too (as a
    :class:`SequenceClassificationReader`)."""
    if is_sequence_classification(path):
        return SequenceClassificationReader(path)
    return open_checkpoint(path)


def expected_tensors(reader: CheckpointReader) -> dict[str, tuple[int, ...]]:
    """The canonical tensors ``reader.tensors()`` yields, each with the shape its config implies."""
    config = reader.config
    if isinstance(reader, SequenceClassificationReader):
        return {name: reward_tensor_shape(config, name) for name in reward_tensor_names(config)}
    return {name: expected_shape(config, name) for name in tensor_names(config)}


def write_sequence_classification(
    dst: Path | str,
    info: CheckpointInfo,
    tensors: Iterable[tuple[str, torch.Tensor]],
    *,
    pad_token_id: int,
    tokenizer: Tokenizer | None = None,
    dtype: torch.dtype | None = None,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
) -> Path:
    """Write a reward model as a one-label ``LlamaForSequenceClassification`` directory, atomically.

    ``tensors``: the canonical tensors of :func:`reward_tensor_names`, streamed
    (``score.weight`` anywhere among them). The decoder is written by
    :func:`herd.checkpoint.hf.write_hf` (shards, tokenizer side files of
    ``info``, config); the score head becomes one more shard and the config
    gains the architecture, one label and ``pad_token_id``. ``tokenizer``, when
    given, is saved beside the weights (:func:`herd.tokenizer.save.save_tokenizer`).
    Like every herd checkpoint, the directory appears whole or not at all.
    """
    dst = Path(dst)
    if not 0 <= pad_token_id < info.config.vocab_size:
        raise ConfigError(
            f"{dst}: pad_token_id {pad_token_id} is not a token id (vocabulary of {info.config.vocab_size})"
        )
    score: list[torch.Tensor] = []
    total_bytes = 0

    def decoder() -> Iterator[tuple[str, torch.Tensor]]:
        nonlocal total_bytes
        for name, tensor in tensors:
            total_bytes += tensor.numel() * (dtype or tensor.dtype).itemsize
            if name == SCORE:
                score.append(tensor if dtype is None else tensor.to(dtype))
            else:
                yield name, tensor

    with staged_checkpoint(dst, "hf") as tmp:
        inner = write_hf(tmp / "decoder", info, decoder(), dtype=dtype, max_shard_bytes=max_shard_bytes)
        if len(score) != 1:
            raise CheckpointError(f"{dst}: expected one {SCORE} among the tensors, got {len(score)}")
        (inner / MARKER_NAME).unlink()
        for entry in inner.iterdir():
            entry.rename(tmp / entry.name)
        inner.rmdir()
        _add_score_shard(tmp, score[0], total_bytes)
        if tokenizer is not None:
            save_tokenizer(tokenizer, tmp)
        config = json.loads((tmp / "config.json").read_text())
        config |= {
            "architectures": [ARCHITECTURE],
            "num_labels": 1,
            "id2label": {"0": "LABEL_0"},
            "label2id": {"LABEL_0": 0},
            "pad_token_id": pad_token_id,
        }
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return dst


def _add_score_shard(folder: Path, score: torch.Tensor, total_bytes: int) -> None:
    """Store ``score`` as the last safetensors shard of the decoder ``write_hf`` wrote into ``folder``.

    The weights always end up as shards listed by an index: transformers reads
    a lone ``model.safetensors`` in preference to an index, so the single file
    of a small model is renamed to the first of two shards.
    """
    index = folder / INDEX_NAME
    if index.is_file():
        weight_map: dict[str, str] = json.loads(index.read_text())["weight_map"]
    else:
        weight_map = dict.fromkeys(safe_open(str(folder / SINGLE_NAME), framework="pt").keys(), SINGLE_NAME)
    files = sorted(set(weight_map.values()))
    names = [f"model-{i + 1:05d}-of-{len(files) + 1:05d}.safetensors" for i in range(len(files) + 1)]
    renamed = dict(zip(files, names, strict=False))
    for old, new in renamed.items():
        (folder / old).rename(folder / new)
    save_file({SCORE: score.contiguous()}, str(folder / names[-1]), metadata={"format": "pt"})
    weight_map = {name: renamed[file] for name, file in weight_map.items()} | {SCORE: names[-1]}
    text = json.dumps({"metadata": {"total_size": total_bytes}, "weight_map": weight_map}, indent=2)
    index.write_text(text + "\n")
