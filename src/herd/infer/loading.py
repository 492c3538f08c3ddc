"""Opening a model and its tokenizer for generation, as the CLI and benchmarks need them.

MODEL is a checkpoint ``herd.load_model`` reads (Hugging Face or Meta
directory, GGUF file) or, with ``random=True``, a preset name built with random
weights for smoke tests. The tokenizer comes from ``tokenizer`` when given,
else from the checkpoint itself (its directory or GGUF metadata); a random
preset without one gets the byte-level fallback of
:mod:`herd.infer.byte_tokenizer`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from herd.checkpoint.load import load_model
from herd.errors import HerdError
from herd.infer.byte_tokenizer import ByteTokenizer
from herd.infer.quantize import QuantMode, quantize_model
from herd.model.build import parse_dtype
from herd.model.presets import is_preset
from herd.model.transformer import Transformer
from herd.tokenizer.base import Tokenizer, TokenizerError, check_vocab_fits
from herd.tokenizer.load import load_tokenizer


def open_tokenizer(spec: str, tokenizer: str | None, random: bool) -> Tokenizer:
    """The tokenizer for MODEL ``spec``: ``tokenizer`` if given, else the checkpoint's own."""
    if tokenizer is not None:
        return load_tokenizer(tokenizer)
    if random:
        return ByteTokenizer()
    try:
        return load_tokenizer(spec)
    except TokenizerError as exc:
        raise HerdError(f"{spec}: no tokenizer found with the model ({exc}); pass --tokenizer PATH") from None


def check_model_spec(spec: str, random: bool) -> None:
    """Raise unless ``spec`` is an existing checkpoint path (or a preset name when ``random``)."""
    exists = Path(spec).exists()
    if random and not (is_preset(spec) and not exists):
        raise HerdError(f"--random needs a preset name (see herd model presets), got {spec!r}")
    if not random and not exists:
        hint = "; add --random to build this preset with random weights" if is_preset(spec) else ""
        raise HerdError(f"{spec}: no such checkpoint file or directory{hint}")


def load_for_inference(
    spec: str,
    *,
    tokenizer: str | None = None,
    random: bool = False,
    dtype: str | torch.dtype | None = "fp32",
    quantize: QuantMode | None = None,
    group_size: int = 32,
    device: str = "cpu",
) -> tuple[Transformer, Tokenizer]:
    """The model (cast, quantized, on ``device``) and its tokenizer; input problems raise :class:`HerdError`."""
    check_model_spec(spec, random)
    parsed = parse_dtype(dtype)
    tok = open_tokenizer(spec, tokenizer, random)
    model = load_model(spec, dtype=parsed, device=device)
    check_vocab_fits(tok, model.config.vocab_size)
    if quantize is not None:
        quantize_model(model, quantize, group_size)
    return model, tok
