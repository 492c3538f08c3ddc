"""Exact presets of every released Llama-family model, plus tiny CPU shapes.

Figures from the papers and Meta's ``params.json`` files (docs/spec.md §1); each
preset's parameter count is checked against docs/spec.md §1 in the tests. The ``*-tiny``
presets keep each family's structure (MHA vs GQA ratio, RoPE θ and scaling,
norm eps, tied embeddings) at a size that trains on a laptop CPU.
"""

from __future__ import annotations

import difflib

from herd.errors import ConfigError
from herd.model.config import ModelConfig, RopeScaling

LLAMA31_SCALING = RopeScaling(
    kind="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_seq_len=8192
)


def _llama1(dim: int, n_layers: int, n_heads: int) -> dict:
    return dict(
        dim=dim, n_layers=n_layers, n_heads=n_heads, vocab_size=32000, norm_eps=1e-6, max_seq_len=2048
    )


def _llama2(dim: int, n_layers: int, n_heads: int, **kw: object) -> dict:
    return dict(dim=dim, n_layers=n_layers, n_heads=n_heads, vocab_size=32000, max_seq_len=4096, **kw)


def _codellama(dim: int, n_layers: int, n_heads: int, vocab_size: int = 32016, **kw: object) -> dict:
    return dict(
        dim=dim,
        n_layers=n_layers,
        n_heads=n_heads,
        vocab_size=vocab_size,
        rope_theta=1e6,
        max_seq_len=16384,
        **kw,
    )


def _llama3(dim: int, n_layers: int, n_heads: int, mult: float, multiple_of: int, scaled: bool) -> dict:
    return dict(
        dim=dim,
        n_layers=n_layers,
        n_heads=n_heads,
        n_kv_heads=8,
        vocab_size=128256,
        ffn_dim_multiplier=mult,
        multiple_of=multiple_of,
        rope_theta=500000.0,
        rope_scaling=LLAMA31_SCALING if scaled else None,
        max_seq_len=131072 if scaled else 8192,
    )


_LLAMA3_TINY = dict(
    dim=128,
    n_layers=4,
    n_heads=4,
    n_kv_heads=2,
    vocab_size=4096,
    ffn_dim_multiplier=1.3,
    multiple_of=64,
    rope_theta=500000.0,
    max_seq_len=512,
)

_PRESETS: dict[str, dict] = {
    "llama1-7b": _llama1(4096, 32, 32),
    "llama1-13b": _llama1(5120, 40, 40),
    "llama1-33b": _llama1(6656, 60, 52),
    "llama1-65b": _llama1(8192, 80, 64),
    "llama2-7b": _llama2(4096, 32, 32),
    "llama2-13b": _llama2(5120, 40, 40),
    "llama2-70b": _llama2(8192, 80, 64, n_kv_heads=8, ffn_dim_multiplier=1.3, multiple_of=4096),
    "codellama-7b": _codellama(4096, 32, 32),
    "codellama-13b": _codellama(5120, 40, 40),
    "codellama-34b": _codellama(8192, 48, 64, vocab_size=32000, n_kv_heads=8, ffn_dim_multiplier=1.0),
    "codellama-70b": _codellama(8192, 80, 64, n_kv_heads=8, ffn_dim_multiplier=1.3, multiple_of=4096),
    "llama3-8b": _llama3(4096, 32, 32, 1.3, 1024, scaled=False),
    "llama3-70b": _llama3(8192, 80, 64, 1.3, 4096, scaled=False),
    "llama3.1-8b": _llama3(4096, 32, 32, 1.3, 1024, scaled=True),
    "llama3.1-70b": _llama3(8192, 80, 64, 1.3, 4096, scaled=True),
    "llama3.1-405b": _llama3(16384, 126, 128, 1.2, 4096, scaled=True),
    # SmolLM2-135M: a real Llama-architecture model with tied embeddings (docs/spec.md §2).
    "smollm2-135m": dict(
        dim=576,
        n_layers=30,
        n_heads=9,
        n_kv_heads=3,
        vocab_size=49152,
        hidden_dim=1536,
        rope_theta=100000.0,
        max_seq_len=8192,
        tie_embeddings=True,
    ),
    # Tiny CPU shapes, one per family.
    "llama1-tiny": dict(dim=64, n_layers=2, n_heads=4, vocab_size=512, norm_eps=1e-6, max_seq_len=256),
    "llama2-tiny": dict(dim=64, n_layers=2, n_heads=4, vocab_size=512, max_seq_len=256),
    "llama2-tiny-gqa": dict(
        dim=64, n_layers=2, n_heads=8, n_kv_heads=2, vocab_size=512, max_seq_len=256, ffn_dim_multiplier=1.3
    ),
    "codellama-tiny": dict(dim=64, n_layers=2, n_heads=4, vocab_size=528, rope_theta=1e6, max_seq_len=512),
    "llama3-tiny": _LLAMA3_TINY,
    "llama3.1-tiny": {
        **_LLAMA3_TINY,
        # Scaled RoPE with a short "original" context, so the scaling matters at tiny lengths.
        "rope_scaling": RopeScaling(original_max_seq_len=64),
        "max_seq_len": 1024,
    },
}


def preset_names() -> list[str]:
    """All preset names, in table order."""
    return list(_PRESETS)


def close_presets(name: str) -> list[str]:
    """The preset names ``name`` is most likely a typo of (``llama3-8bb`` → ``llama3-8b``); none if no
    name is close.

    Names at least 80% similar (difflib's ratio, ignoring case) are candidates;
    only those within 0.05 of the best are kept, best first, so a clear best
    match comes alone.
    """
    scores = {p: difflib.SequenceMatcher(None, name.lower(), p).ratio() for p in _PRESETS}
    best = max(scores.values())
    close = [p for p, score in scores.items() if score >= max(0.8, best - 0.05)]
    return sorted(close, key=lambda p: -scores[p])


def unknown_preset(name: str) -> ConfigError:
    """The one-line error for a preset name that does not exist, suggesting the closest names."""
    close = close_presets(name)
    if close:
        return ConfigError(f"unknown preset {name!r}; did you mean {' or '.join(close)}?")
    return ConfigError(f"unknown preset {name!r}; known presets: {', '.join(_PRESETS)}")


def get_preset(name: str) -> ModelConfig:
    """The :class:`ModelConfig` of a named preset (e.g. ``llama2-70b``)."""
    try:
        fields = _PRESETS[name]
    except KeyError:
        raise unknown_preset(name) from None
    return ModelConfig(name=name, **fields)


def is_preset(name: str) -> bool:
    """Whether ``name`` is a known preset."""
    return name in _PRESETS
