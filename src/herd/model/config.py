"""Model hyperparameters of every Llama-family architecture.

The fields follow Meta's ``params.json`` (Llama 1/2/3 reference code), so a
config reads the same as the papers' tables; ``hidden_dim`` is derived with the
Llama rule unless given (docs/spec.md §1): ``hidden = int(2 * 4 * dim / 3)``, times
``ffn_dim_multiplier`` if set, rounded up to a multiple of ``multiple_of``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from herd.errors import ConfigError


@dataclass(frozen=True)
class RopeScaling:
    """How RoPE frequencies are stretched for contexts longer than training.

    ``llama3`` is the Llama 3.1 rule (factor 8, low 1, high 4, original 8192);
    ``linear`` divides every position by ``factor`` (position interpolation).
    """

    kind: Literal["llama3", "linear"] = "llama3"
    factor: float = 8.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_seq_len: int = 8192

    def __post_init__(self) -> None:
        if self.kind not in ("llama3", "linear"):
            raise ConfigError(
                f"rope_scaling.kind: unknown kind {self.kind!r} (expected 'llama3' or 'linear')"
            )
        if self.factor <= 0:
            raise ConfigError(f"rope_scaling.factor must be positive, got {self.factor}")
        if self.kind == "llama3" and self.high_freq_factor <= self.low_freq_factor:
            raise ConfigError("rope_scaling: high_freq_factor must exceed low_freq_factor")


def llama_hidden_dim(dim: int, multiple_of: int, ffn_dim_multiplier: float | None) -> int:
    """The SwiGLU hidden size of Meta's reference code (docs/spec.md §1)."""
    hidden = int(2 * 4 * dim / 3)
    if ffn_dim_multiplier is not None:
        hidden = int(ffn_dim_multiplier * hidden)
    return multiple_of * math.ceil(hidden / multiple_of)


@dataclass(frozen=True)
class ModelConfig:
    """Shape of a Llama-family decoder-only Transformer."""

    dim: int
    n_layers: int
    n_heads: int
    vocab_size: int
    n_kv_heads: int | None = None
    hidden_dim: int | None = None
    # How hidden_dim is derived when not given; not part of the shape once it is resolved.
    multiple_of: int = field(default=256, compare=False)
    ffn_dim_multiplier: float | None = field(default=None, compare=False)
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    rope_scaling: RopeScaling | None = None
    max_seq_len: int = 4096
    tie_embeddings: bool = False
    head_dim: int | None = None
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        for key in ("dim", "n_layers", "n_heads", "vocab_size", "max_seq_len", "multiple_of"):
            value = getattr(self, key)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"model config: {key} must be a positive integer, got {value!r}")
        if self.n_kv_heads is None:
            object.__setattr__(self, "n_kv_heads", self.n_heads)
        if self.n_kv_heads <= 0 or self.n_heads % self.n_kv_heads:
            raise ConfigError(
                f"model config: n_heads ({self.n_heads}) must be a multiple of n_kv_heads ({self.n_kv_heads})"
            )
        if self.head_dim is None:
            if self.dim % self.n_heads:
                raise ConfigError(
                    f"model config: dim ({self.dim}) is not divisible by n_heads ({self.n_heads})"
                )
            object.__setattr__(self, "head_dim", self.dim // self.n_heads)
        if self.head_dim % 2:
            raise ConfigError(f"model config: head_dim must be even for RoPE, got {self.head_dim}")
        if self.hidden_dim is None:
            object.__setattr__(
                self, "hidden_dim", llama_hidden_dim(self.dim, self.multiple_of, self.ffn_dim_multiplier)
            )
        if isinstance(self.rope_scaling, dict):
            object.__setattr__(self, "rope_scaling", _rope_scaling_from_dict(self.rope_scaling))

    @property
    def n_rep(self) -> int:
        """Query heads per key/value head (1 = multi-head attention, >1 = GQA)."""
        return self.n_heads // self.n_kv_heads

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with some fields changed (derived sizes are recomputed unless given)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if "dim" in changes or "ffn_dim_multiplier" in changes or "multiple_of" in changes:
            values["hidden_dim"] = None
        if "dim" in changes or "n_heads" in changes:
            values["head_dim"] = None
        if "n_heads" in changes and "n_kv_heads" not in changes and values["n_kv_heads"] == self.n_heads:
            values["n_kv_heads"] = None
        values.update(changes)
        return ModelConfig(**values)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (all derived sizes resolved)."""
        out = dataclasses.asdict(self)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build from a dict, rejecting unknown keys by name."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"model config: unknown key(s) {', '.join(unknown)}")
        return cls(**data)


def _rope_scaling_from_dict(data: dict[str, Any]) -> RopeScaling:
    known = {f.name for f in dataclasses.fields(RopeScaling)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"rope_scaling: unknown key(s) {', '.join(unknown)}")
    return RopeScaling(**data)
