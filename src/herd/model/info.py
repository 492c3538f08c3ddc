"""Sizes of a model without allocating it: parameters, FLOPs, KV cache and weight memory.

Counts come from instantiating the real :class:`Transformer` on the meta device,
so they cannot drift from the code. Training FLOPs per token follow the PaLM
accounting (Chowdhery et al. 2022, App. B): ``6·N + 12·L·H·Q·T`` with N the
parameters that take part in matmuls (all but the input embedding lookup),
L layers, H heads of size Q and context T (the attention scores and values).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from herd.model.build import empty_model
from herd.model.config import ModelConfig


@dataclass(frozen=True)
class ModelInfo:
    """What ``herd model info`` reports."""

    name: str
    dtype: str | None
    tied_embeddings: bool
    context_length: int
    parameters: int
    non_embedding_parameters: int
    training_flops_per_token: int
    seq_len: int
    kv_cache_bytes_per_token_bf16: int
    weight_bytes_fp32: int
    weight_bytes_bf16: int
    weight_bytes_int8: int
    weight_bytes_int4: int

    def to_dict(self) -> dict:
        return asdict(self)


def count_parameters(config: ModelConfig) -> int:
    """Exact parameter count (tied weights counted once), with no memory allocated."""
    return sum(p.numel() for p in empty_model(config, "meta").parameters())


def format_bytes(size: int) -> str:
    """``size`` for people, in the largest binary unit it reaches: ``512 bytes``, ``1.50 KiB``,
    ``256.00 MiB``, ``12.55 GiB``."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.2f} {unit}"
    return f"{size} bytes"


def model_info(config: ModelConfig, seq_len: int | None = None, dtype: str | None = "fp32") -> ModelInfo:
    """Parameter counts, training FLOPs per token at ``seq_len`` (default: the context) and memory.

    ``dtype``: how the weights are stored (a checkpoint's, reported as given; None: no weights stored).
    """
    seq_len = seq_len or config.max_seq_len
    total = count_parameters(config)
    embedding = config.vocab_size * config.dim
    non_embedding = total - embedding if config.tie_embeddings else total - 2 * embedding
    matmul_params = total - (0 if config.tie_embeddings else embedding)
    attention = 12 * config.n_layers * config.n_heads * config.head_dim * seq_len
    return ModelInfo(
        name=config.name,
        dtype=dtype,
        tied_embeddings=config.tie_embeddings,
        context_length=config.max_seq_len,
        parameters=total,
        non_embedding_parameters=non_embedding,
        training_flops_per_token=6 * matmul_params + attention,
        seq_len=seq_len,
        kv_cache_bytes_per_token_bf16=2 * config.n_layers * config.n_kv_heads * config.head_dim * 2,
        weight_bytes_fp32=4 * total,
        weight_bytes_bf16=2 * total,
        weight_bytes_int8=total,
        weight_bytes_int4=total // 2,
    )
