"""Every Llama-family architecture: config, presets, the Transformer and how to build one."""

from herd.model.build import build_model, empty_model, parse_dtype
from herd.model.config import ModelConfig, RopeScaling
from herd.model.kv_cache import KVCache
from herd.model.presets import get_preset, preset_names
from herd.model.transformer import Transformer

__all__ = [
    "KVCache",
    "ModelConfig",
    "RopeScaling",
    "Transformer",
    "build_model",
    "empty_model",
    "get_preset",
    "parse_dtype",
    "preset_names",
]
