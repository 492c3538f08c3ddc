"""A model's configuration from a preset name or a checkpoint path, without reading any weights.

``herd model info`` sizes a model this way: the config is all it needs, so a
405B checkpoint is inspected as fast as a preset. Opening a checkpoint reads
only its header (``config.json``, ``params.json`` or the GGUF metadata), which
is why this lives in :mod:`herd.checkpoint` and not in :mod:`herd.model`.
"""

from __future__ import annotations

from pathlib import Path

from herd.checkpoint.load import open_checkpoint
from herd.errors import HerdError
from herd.model.config import ModelConfig
from herd.model.presets import get_preset, is_preset


def resolve_config(spec: str) -> ModelConfig:
    """The config of a preset name, or of the checkpoint at that path (named after its file or directory).

    A path that exists wins over a preset of the same name, so a directory
    called ``llama3-tiny`` is read rather than shadowed.
    """
    if is_preset(spec) and not Path(spec).exists():
        return get_preset(spec)
    if not Path(spec).exists():
        raise HerdError(f"{spec}: neither a preset nor an existing path (presets: herd model presets)")
    with open_checkpoint(spec) as reader:
        return reader.config.replace(name=Path(spec).name)
