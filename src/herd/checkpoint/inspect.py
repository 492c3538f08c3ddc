"""A model's configuration from a preset name or a checkpoint path, without reading any weights.

``herd model info`` sizes a model this way: the config is all it needs, so a
405B checkpoint is inspected as fast as a preset. Opening a checkpoint reads
only its header (``config.json``, ``params.json`` or the GGUF metadata, and the
tensor headers for the stored dtype), which is why this lives in
:mod:`herd.checkpoint` and not in :mod:`herd.model`.
"""

from __future__ import annotations

from pathlib import Path

from herd.checkpoint.load import open_checkpoint
from herd.errors import HerdError
from herd.model.config import ModelConfig
from herd.model.presets import close_presets, get_preset, is_preset, unknown_preset

#: The dtype herd builds a preset in (``herd.load_model(preset)``, ``herd generate PRESET --random``).
PRESET_DTYPE = "fp32"


def resolve_model(spec: str) -> tuple[ModelConfig, str | None]:
    """The config of a preset name, or of the checkpoint at that path (named after its file or directory),
    and the dtype its weights are stored in (:meth:`~herd.checkpoint.base.CheckpointReader.stored_dtype`;
    :data:`PRESET_DTYPE` for a preset; None for a checkpoint without weight matrices).

    A path that exists wins over a preset of the same name, so a directory
    called ``llama3-tiny`` is read rather than shadowed. A name that is neither
    but close to a preset is reported as a typo of it.
    """
    if is_preset(spec) and not Path(spec).exists():
        return get_preset(spec), PRESET_DTYPE
    if not Path(spec).exists():
        if "/" not in spec and close_presets(spec):
            raise unknown_preset(spec)
        raise HerdError(f"{spec}: neither a preset nor an existing path (presets: herd model presets)")
    with open_checkpoint(spec) as reader:
        return reader.config.replace(name=Path(spec).name), reader.stored_dtype()
