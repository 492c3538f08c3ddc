"""Making a :class:`Transformer` from its config, and herd's one vocabulary of dtype names.

Training starts from :func:`build_model` (random Llama-style init, seeded);
a checkpoint reader fills an :func:`empty_model` with its tensors. Both live
here, beside the model, so that training and inference build a model without
reaching into ``herd.checkpoint``.
"""

from __future__ import annotations

import torch

from herd.errors import ConfigError
from herd.model.config import ModelConfig
from herd.model.transformer import Transformer

# The dtype names every flag and config offers; torch's own names are accepted as synonyms.
DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
SYNONYMS: dict[str, torch.dtype] = {str(dtype).removeprefix("torch."): dtype for dtype in DTYPES.values()}
_ANY_NAME = {**DTYPES, **SYNONYMS}


def parse_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """``torch.float32`` from ``"fp32"``/``"float32"``/``torch.float32`` (likewise bf16, fp16); None stays None."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _ANY_NAME[dtype]
    except KeyError:
        raise ConfigError(
            f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)} (or {', '.join(SYNONYMS)})"
        ) from None


def build_model(
    config: ModelConfig,
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
    seed: int | None = 0,
) -> Transformer:
    """A randomly initialised model (Llama-style init, :meth:`Transformer.init_weights`) of ``config``."""
    model = empty_model(config, device)
    model.init_weights(seed=seed)
    return model.to(dtype) if dtype is not None else model


def empty_model(config: ModelConfig, device: str | torch.device) -> Transformer:
    """A model whose weights are allocated on ``device`` but not initialised (built on the meta device first).

    With ``device="meta"`` nothing is allocated: a checkpoint loader then
    assigns the tensors it read (``load_state_dict(..., assign=True)``).
    """
    with torch.device("meta"):
        model = Transformer(config)
    model.allocate(device)
    return model
