"""Format detection and model loading: ``herd.load_model(path_or_preset)``."""

from __future__ import annotations

from pathlib import Path

import torch

from herd.checkpoint.base import SIDE_FILES_EXTRA, CheckpointReader, find_side_files, tensor_names
from herd.checkpoint.hf import HFReader, is_hf_dir
from herd.errors import CheckpointError
from herd.model.config import ModelConfig
from herd.model.presets import get_preset, is_preset
from herd.model.transformer import Transformer

GGUF_MAGIC = b"GGUF"


def detect_format(path: Path) -> str:
    """``hf``, ``meta`` or ``gguf`` for a checkpoint path; a clear error otherwise."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or directory")
    if path.is_file():
        with path.open("rb") as f:
            if f.read(4) == GGUF_MAGIC:
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
    """A lazy reader for the checkpoint at ``path``, whatever its format."""
    path = Path(path)
    fmt = detect_format(path)
    reader: CheckpointReader
    if fmt == "hf":
        reader = HFReader(path)
    elif fmt == "meta":
        from herd.checkpoint.meta import MetaReader

        reader = MetaReader(path)
    else:
        from herd.checkpoint.gguf import GGUFReader

        return GGUFReader(path)
    reader.info.extras[SIDE_FILES_EXTRA] = find_side_files(path)
    return reader


def build_model(
    config: ModelConfig,
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
    seed: int | None = 0,
) -> Transformer:
    """A randomly initialised model (Llama-style init) of ``config``."""
    model = _empty_model(config, device)
    model.init_weights(seed=seed)
    return model.to(dtype) if dtype is not None else model


def _empty_model(config: ModelConfig, device: str | torch.device) -> Transformer:
    """A model whose weights are allocated but not initialised (built on the meta device first)."""
    with torch.device("meta"):
        model = Transformer(config)
    model.allocate(device)
    return model


def load_model(
    path_or_preset: str | Path,
    dtype: torch.dtype | str | None = None,
    device: str | torch.device = "cpu",
) -> Transformer:
    """Load a checkpoint of any format (HF dir, Meta dir, GGUF file), or build a preset at random.

    ``dtype`` None keeps the checkpoint's own floating dtype (quantized GGUF
    tensors are dequantized to fp32). The model is returned in eval mode.
    """
    dtype = parse_dtype(dtype)
    if isinstance(path_or_preset, str) and is_preset(path_or_preset) and not Path(path_or_preset).exists():
        return build_model(get_preset(path_or_preset), dtype, device).eval()
    with open_checkpoint(path_or_preset) as reader:
        model = _empty_model(reader.config, "meta")
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


_DTYPES = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "fp16": torch.float16,
    "float16": torch.float16,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
}


def parse_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """``torch.float32`` from ``"fp32"``/``"float32"``/``torch.float32``; None stays None."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _DTYPES[dtype]
    except KeyError:
        raise CheckpointError(f"unknown dtype {dtype!r}; use one of {', '.join(_DTYPES)}") from None


def model_tensors(model: Transformer) -> list[tuple[str, torch.Tensor]]:
    """The canonical (name, tensor) pairs of a live model, in checkpoint order."""
    params = dict(model.named_parameters(remove_duplicate=False))
    return [(name, params[name].detach()) for name in tensor_names(model.config)]
