"""fastText loading and prediction shared by language ID and the Wikipedia-reference classifier.

fastText's Python ``predict`` breaks under NumPy 2 (it asks for a copy-free
array), so predictions go through the underlying ``model.f.predict``, which
returns plain ``(probability, label)`` pairs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from herd.data.errors import DataInputError

LABEL_PREFIX = "__label__"


def load_fasttext(path: str | Path) -> Any:
    """The fastText model at ``path``; a missing or unreadable file is a :class:`DataInputError`."""
    from fasttext.FastText import _FastText

    try:  # fasttext.load_model only adds a deprecation notice on stderr
        return _FastText(model_path=str(path))
    except ValueError as exc:
        raise DataInputError(f"{path}: cannot load the fastText model ({exc})") from None


def fasttext_line(text: str, lower: bool = True) -> str:
    """``text`` as the single line fastText reads (newlines as spaces; lower-cased for classifiers)."""
    line = " ".join(text.split())
    return line.lower() if lower else line


def predict_labels(model: Any, line: str, k: int = -1) -> list[tuple[str, float]]:
    """The top ``k`` (all for -1) labels of ``line`` without the ``__label__`` prefix, best first."""
    return [
        (label.removeprefix(LABEL_PREFIX), float(p)) for p, label in model.f.predict(line, k, 0.0, "replace")
    ]
