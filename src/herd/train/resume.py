"""``herd pretrain CONFIG --resume`` (and ``herd sft``): a run continues with the config it was saved with.

Every checkpoint's trainer state holds the run's config (resolved: an unset
``model.vocab_size`` is saved as the value taken from the data). Resuming starts
from that config, so a run started with ``--set train.steps=20`` resumes as it
was without repeating the flag. The values given on the command line now
(``--set``, ``-o``, ``--max-restarts``, ``--quiet``) are applied on top, and each
one that changes a saved value is reported in one line. What differs only in
the config file is not applied, since the file may have been edited for another
run since; one line names those keys. A change a run in progress cannot take
(the model's shape, the data, the seed, the batch) is still refused when the
trainer restores the checkpoint (:func:`herd.train.checkpointing.check_compatible`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from herd.config import apply_overrides
from herd.errors import CheckpointError, ConfigError
from herd.train import checkpointing
from herd.train.config import (
    VOCAB_FROM_DATA,
    ConfigT,
    PretrainConfig,
    load_run_config,
    run_config_from_dict,
)

# What a change of a key does to the run, said after the line that reports it.
_CONSEQUENCES = {"train.steps": "the LR schedule is re-planned over {new} steps"}


def override_keys(overrides: Sequence[str]) -> list[str]:
    """The dotted keys of ``KEY=VALUE`` overrides, each once, in the order given."""
    return list(dict.fromkeys(item.partition("=")[0].strip() for item in overrides))


def _show(value: Any) -> str:
    """A config value as TOML would write it (strings quoted), or ``(unset)``."""
    return "(unset)" if value is None else json.dumps(value)


def _covered(key: str, explicit: Sequence[str]) -> bool:
    """Whether the leaf ``key`` is one of the ``explicit`` keys or lies inside one of them."""
    return any(key == e or key.startswith(e + ".") for e in explicit)


def resume_config(
    path: Path | str, overrides: Sequence[str], cls: type[ConfigT] = PretrainConfig
) -> tuple[ConfigT, list[str]]:
    """The config (a ``cls``) that resumes the run of the config file ``path``, and the lines that report changes.

    The run is the one in the ``out_dir`` of the file with ``overrides``
    applied. Without a checkpoint there, that config and no lines: the
    trainer then says there is nothing to resume.
    """
    current = load_run_config(cls, path, overrides)
    latest = checkpointing.latest_checkpoint(current.out_dir)
    if latest is None:
        return current, []
    try:
        saved = run_config_from_dict(cls, copy.deepcopy(checkpointing.read_trainer_state(latest)["config"]))
    except ConfigError as exc:
        raise CheckpointError(
            f"{latest}: the config saved with this checkpoint is not valid ({exc})"
        ) from None
    before = saved.to_dict()
    # The run continues where it was found, whatever out_dir it was saved with.
    resumed = run_config_from_dict(
        cls, apply_overrides(copy.deepcopy(before) | {"out_dir": current.out_dir}, overrides)
    )
    after = resumed.to_dict()
    explicit = override_keys(overrides)
    lines = []
    for key in explicit:
        old, new = checkpointing.lookup(before, key), checkpointing.lookup(after, key)
        if old != new:
            why = _CONSEQUENCES.get(key)
            lines.append(
                f"resume: {key} {_show(old)} → {_show(new)}" + (f" ({why.format(new=new)})" if why else "")
            )
    in_file = checkpointing.flatten(load_run_config(cls, path).to_dict())
    in_run = checkpointing.flatten(before)
    ignored = [
        f"{key} = {_show(in_file.get(key))} (saved {_show(in_run.get(key))})"
        for key in sorted(set(in_file) | set(in_run))
        if in_file.get(key) != in_run.get(key)
        and not _covered(key, ["out_dir", *explicit])
        # an unset vocabulary in the file is the one the run took from the data
        and not (key == "model.vocab_size" and in_file.get(key) == VOCAB_FROM_DATA)
        # a model key the file leaves out of a run started from init is the checkpoint's
        and not (key.startswith("model.") and key not in in_file and in_run.get("init"))
    ]
    if ignored:
        lines.append(
            f"resume: the run keeps its saved config; not applied from {path}: {', '.join(ignored)} "
            "(pass --set KEY=VALUE to change them)"
        )
    return resumed, lines
