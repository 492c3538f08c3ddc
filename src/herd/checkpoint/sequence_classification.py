"""Reward models in the Hugging Face layout: ``LlamaForSequenceClassification`` with one label.

A Llama 2 reward model is the chat model with its next-token head replaced by a
head that outputs one scalar (Llama 2 §3.2.2, docs/spec.md §5.2). Hugging Face
stores exactly that as ``LlamaForSequenceClassification``: the decoder's
``model.*`` tensors under herd's Hugging Face names (:mod:`herd.checkpoint.hf`),
no ``lm_head``, and ``score.weight`` of shape (num_labels, hidden) = (1, dim);
``config.json`` names the architecture, one label and the ``pad_token_id``.

In herd's canonical names the same checkpoint is the decoder's tensors without
``output.weight``, followed by :data:`SCORE` (:func:`reward_tensor_names`),
whose shape :func:`herd.checkpoint.base.expected_shape` knows. The Hugging Face
reader and writer handle it like any tensor; this module adds the config keys
and their checks, and :func:`herd.checkpoint.load.open_checkpoint` opens such a
directory as a :class:`SequenceClassificationReader`.

**Which token is scored.** transformers reads each row at the rightmost token
that is not ``pad_token_id``, for right and left padding alike.
:class:`herd.posttrain.reward_model.RewardModel` applies the same rule with the
pad id it saves here, so a checkpoint scores the same batch identically in both.
The pad id must therefore never be the token a scored sequence ends with: a
Llama 3 end-of-turn token that closes every answer must not double as padding
(Llama 3's tokenizer reserves ``<|finetune_right_pad_id|>`` for this).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch

from herd.checkpoint.base import SIDE_FILES_EXTRA, TOKENIZER_FILES, CheckpointInfo, tensor_names
from herd.checkpoint.hf import DEFAULT_MAX_SHARD_BYTES, HFReader, is_hf_dir, write_hf
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
        if SCORE not in self._where:
            raise CheckpointError(f"{self.path}: tensor {SCORE} is missing")

    def names(self) -> list[str]:
        return reward_tensor_names(self.config)


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
    (``score.weight`` anywhere among them), written by
    :func:`herd.checkpoint.hf.write_hf` with the tokenizer side files of
    ``info``; the config gains the architecture, one label and ``pad_token_id``.
    ``tokenizer``, when given, is saved beside the weights in place of ``info``'s
    tokenizer files (:func:`herd.tokenizer.save.save_tokenizer`). Like every
    herd checkpoint, the directory appears whole or not at all.
    """
    dst = Path(dst)
    if not 0 <= pad_token_id < info.config.vocab_size:
        raise ConfigError(
            f"{dst}: pad_token_id {pad_token_id} is not a token id (vocabulary of {info.config.vocab_size})"
        )
    head = {
        "architectures": [ARCHITECTURE],
        "num_labels": 1,
        "id2label": {"0": "LABEL_0"},
        "label2id": {"LABEL_0": 0},
        "pad_token_id": pad_token_id,
    }
    with tempfile.TemporaryDirectory() as scratch:
        if tokenizer is not None:
            kept = [f for f in info.extras.get(SIDE_FILES_EXTRA, []) if Path(f).name not in TOKENIZER_FILES]
            saved = save_tokenizer(tokenizer, scratch)
            info = CheckpointInfo(info.config, info.extras | {SIDE_FILES_EXTRA: kept + saved})
        return write_hf(
            dst,
            info,
            _one_score(tensors, dst),
            dtype=dtype,
            max_shard_bytes=max_shard_bytes,
            extra_config=head,
        )


def _one_score(tensors: Iterable[tuple[str, torch.Tensor]], dst: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """``tensors`` as they come; after the last, an error (and nothing written) unless one was the score."""
    count = 0
    for name, tensor in tensors:
        count += name == SCORE
        yield name, tensor
    if count != 1:
        raise CheckpointError(f"{dst}: expected one {SCORE} among the tensors, got {count}")
