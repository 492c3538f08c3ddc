"""CCNet language identification (Wenzek et al. 2019 §3.2; Llama 1 §2.1; Llama 3 §3.1.1).

The whole document (newlines as spaces) is classified; its top language and
score go to ``metadata["language"]`` / ``["language_score"]``. A document is
dropped when the score is below ``threshold`` (0.5, CCNet) as
``language_<lang>_below_<threshold>``, or when its language is not in
``languages`` as ``language_<lang>`` (an empty list or ``None`` keeps every
language, for labelling only: Llama 3's multilingual routing).

With ``model_path`` the fastText model there (``lid.176.bin``, 176 languages,
as CCNet and Llama 3 use) is applied; otherwise lingua, which ships its own
models. lingua's low-accuracy mode is the default: it is as good on texts of
a few hundred characters and more (documents) and loads ~20× faster.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from herd.data.document import Document
from herd.data.errors import DataInputError
from herd.data.quality.fasttext_model import fasttext_line, load_fasttext, predict_labels
from herd.data.quality.lazy import LazyModel
from herd.data.step import Filter


class LanguageIdFilter(LazyModel, Filter):
    """Keeps documents in ``languages`` identified with a score ≥ ``threshold`` (see module docstring)."""

    name = "ccnet_lid"

    def __init__(
        self,
        languages: Sequence[str] | None = ("en",),
        threshold: float = 0.5,
        model_path: str | Path | None = None,
        accurate: bool = False,
    ) -> None:
        super().__init__()
        if model_path is not None and not Path(model_path).is_file():
            raise DataInputError(f"{model_path}: no such fastText language-ID model")
        self.languages = frozenset(languages) if languages else None
        self.threshold = threshold
        self.model_path = None if model_path is None else Path(model_path)
        self.accurate = accurate
        self._model: Any = None

    def identify(self, text: str) -> tuple[str, float]:
        """The top ISO 639-1 language code of ``text`` and its score (``"unknown"``, 0.0 for no text)."""
        if self.model_path is not None:
            if self._model is None:
                self._model = load_fasttext(self.model_path)
            ranked = predict_labels(self._model, fasttext_line(text, lower=False), 1)
            return ranked[0] if ranked else ("unknown", 0.0)
        if self._model is None:
            self._model = _lingua_detector(self.accurate)
        values = self._model.compute_language_confidence_values(text.replace("\n", " "))
        if not values or values[0].value <= 0.0:
            return "unknown", 0.0
        return values[0].language.iso_code_639_1.name.lower(), float(values[0].value)

    def check(self, doc: Document) -> str | None:
        language, score = self.identify(doc.text)
        doc.metadata["language"] = language
        doc.metadata["language_score"] = round(score, 4)
        if score < self.threshold:
            return f"language_{language}_below_{self.threshold:g}"
        if self.languages is not None and language not in self.languages:
            return f"language_{language}"
        return None


def _lingua_detector(accurate: bool) -> Any:
    from lingua import LanguageDetectorBuilder

    builder = LanguageDetectorBuilder.from_all_languages()
    return builder.build() if accurate else builder.with_low_accuracy_mode().build()
