"""Write a loaded tokenizer as files of a model directory (``tokenizer.model``/``tokenizer.json``).

Used when a checkpoint is converted from GGUF, whose vocabulary lives in its
metadata, to a directory layout: the result then loads in herd and in
transformers (``AutoTokenizer.from_pretrained``) like any released model.
"""

from __future__ import annotations

import json
from pathlib import Path

from herd.tokenizer.base import Tokenizer, TokenizerError
from herd.tokenizer.hf_engine import HFTokenizer
from herd.tokenizer.sentencepiece_engine import SentencePieceTokenizer


def save_tokenizer(tokenizer: Tokenizer, folder: str | Path) -> list[Path]:
    """Write ``tokenizer`` into ``folder``; the files written.

    SentencePiece models are written as their ``tokenizer.model`` proto,
    ``tokenizers`` models as ``tokenizer.json``; both get a
    ``tokenizer_config.json`` naming BOS/EOS and carrying the chat template.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(tokenizer, SentencePieceTokenizer):
        model = folder / "tokenizer.model"
        model.write_bytes(tokenizer.model_proto)
    elif isinstance(tokenizer, HFTokenizer):
        model = folder / "tokenizer.json"
        model.write_text(tokenizer.backend.to_str(pretty=True), encoding="utf-8")
    else:
        raise TokenizerError(f"{tokenizer.source}: saving a {type(tokenizer).__name__} is not supported")
    config: dict[str, object] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "clean_up_tokenization_spaces": False,
    }
    for key, token_id in (("bos_token", tokenizer.bos_id), ("eos_token", tokenizer.eos_id)):
        if token_id is not None:
            config[key] = tokenizer.id_to_piece(token_id)
    if isinstance(tokenizer, SentencePieceTokenizer):
        config |= {"tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "legacy": True}
    if tokenizer.chat_template:
        config["chat_template"] = tokenizer.chat_template
    config_path = folder / "tokenizer_config.json"
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return [model, config_path]
