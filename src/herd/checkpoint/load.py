"""Format detection and model loading: ``herd.load_model(path_or_preset)``.

Models are made by :mod:`herd.model.build`; ``build_model``, ``parse_dtype`` and
``GGUF_MAGIC`` (now :mod:`herd.io.gguf`'s) remain importable from here as
deprecated aliases.
"""

from __future__ import annotations

from pathlib import Path

import torch

import herd.model.build as build
from herd.checkpoint.base import SIDE_FILES_EXTRA, CheckpointReader, find_side_files, tensor_names
from herd.checkpoint.hf import HFReader, is_hf_dir
from herd.checkpoint.sequence_classification import (
    ARCHITECTURE,
    SequenceClassificationReader,
    is_sequence_classification,
)
from herd.deprecation import moved_names
from herd.errors import CheckpointError
from herd.io.gguf import is_gguf
from herd.model.presets import get_preset, is_preset
from herd.model.transformer import Transformer


def detect_format(path: Path) -> str:
    """``hf``, ``meta`` or ``gguf`` for a checkpoint path; a clear error otherwise."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or directory")
    if path.is_file():
        if is_gguf(path):
            return "gguf"
        raise CheckpointError(f"{path}: not a GGUF file (and not a model directory)")
    if is_hf_dir(path):
        return "hf"
    if (path / "params.json").is_file():
        return "meta"
    raise CheckpointError(
        f"{path}: not a model directory (expected config.json + safetensors, or params.json + consolidated.*.pth)"
    )


def open_checkpoint(path: Path | str) -> CheckpointReader:
    """A lazy reader for the checkpoint at ``path``, whatever its format.

    A reward model (a ``LlamaForSequenceClassification`` directory) opens as a
    :class:`~herd.checkpoint.sequence_classification.SequenceClassificationReader`,
    whose tensors are the decoder's and the score head.
    """
    path = Path(path)
    fmt = detect_format(path)
    reader: CheckpointReader
    if fmt == "hf":
        reader = SequenceClassificationReader(path) if is_sequence_classification(path) else HFReader(path)
    elif fmt == "meta":
        from herd.checkpoint.meta import MetaReader

        reader = MetaReader(path)
    else:
        from herd.checkpoint.gguf import GGUFReader

        return GGUFReader(path)
    reader.info.extras[SIDE_FILES_EXTRA] = find_side_files(path)
    return reader


def load_model(
    path_or_preset: str | Path,
    dtype: torch.dtype | str | None = None,
    device: str | torch.device = "cpu",
) -> Transformer:
    """Load a checkpoint of any format (HF dir, Meta dir, GGUF file), or build a preset at random.

    ``dtype`` None keeps the checkpoint's own floating dtype (quantized GGUF
    tensors are dequantized to fp32). The model is returned in eval mode.
    """
    dtype = build.parse_dtype(dtype)
    if isinstance(path_or_preset, str) and is_preset(path_or_preset) and not Path(path_or_preset).exists():
        return build.build_model(get_preset(path_or_preset), dtype, device).eval()
    with open_checkpoint(path_or_preset) as reader:
        if isinstance(reader, SequenceClassificationReader):
            raise CheckpointError(
                f"{path_or_preset}: a reward model ({ARCHITECTURE}), not a language model; load it with "
                "herd.posttrain.reward_model.RewardModel.from_pretrained"
            )
        model = build.empty_model(reader.config, "meta")
        state = {}
        for name, tensor in reader.tensors():
            if dtype is not None:
                tensor = tensor.to(dtype)
            elif not tensor.is_floating_point():
                tensor = tensor.float()
            state[name] = tensor.to(device)
    if dtype is None:
        dtype = state["tok_embeddings.weight"].dtype
    model.load_state_dict(state, strict=not reader.config.tie_embeddings, assign=True)
    if reader.config.tie_embeddings:
        model.output.weight = model.tok_embeddings.weight
    for name, p in model.named_parameters():
        if p.dtype != dtype:
            raise CheckpointError(f"{path_or_preset}: tensor {name} has dtype {p.dtype}, expected {dtype}")
        if p.is_meta:
            raise CheckpointError(f"{path_or_preset}: tensor {name} is missing")
    model.reset_rope(device)
    return model.eval()


def model_tensors(model: Transformer) -> list[tuple[str, torch.Tensor]]:
    """The canonical (name, tensor) pairs of a live model, in checkpoint order."""
    params = dict(model.named_parameters(remove_duplicate=False))
    return [(name, params[name].detach()) for name in tensor_names(model.config)]


# Model construction moved to herd.model.build, the GGUF magic to herd.io.gguf.
__getattr__ = moved_names(
    __name__,
    {"build_model": "herd.model.build", "parse_dtype": "herd.model.build", "GGUF_MAGIC": "herd.io.gguf"},
)
