"""Every Llama-family architecture: config, presets and the Transformer."""

from herd.model.config import ModelConfig, RopeScaling
from herd.model.kv_cache import KVCache
from herd.model.presets import get_preset, preset_names
from herd.model.transformer import Transformer

__all__ = ["KVCache", "ModelConfig", "RopeScaling", "Transformer", "get_preset", "preset_names"]
