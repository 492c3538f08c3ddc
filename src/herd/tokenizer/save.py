"""Write a loaded tokenizer as files of a model directory, in the layout :func:`herd.load_tokenizer` reads.

Used when a checkpoint is converted from GGUF, whose vocabulary lives in its
metadata, to a directory layout, and whenever a tokenizer is to travel with a
model: the result loads back in herd with the same ids, special tokens and
chat template. SentencePiece and ``tokenizers`` models also load in
transformers (``AutoTokenizer.from_pretrained``) like any released model.
"""

from __future__ import annotations

import json
from pathlib import Path

from herd.io.atomic import atomic_file, write_atomically
from herd.tokenizer.base import Tokenizer, TokenizerError
from herd.tokenizer.hf_engine import HFTokenizer
from herd.tokenizer.sentencepiece_engine import SentencePieceTokenizer
from herd.tokenizer.tiktoken_engine import (
    SPECIALS_FILE,
    TiktokenTokenizer,
    write_specials_table,
    write_tiktoken_ranks,
)

CONFIG_FILE = "tokenizer_config.json"


def save_tokenizer(tokenizer: Tokenizer, folder: str | Path) -> list[Path]:
    """Write ``tokenizer`` into ``folder`` (created if needed); the files written, each atomically.

    * SentencePiece: its ``tokenizer.model`` proto;
    * ``tokenizers``: its ``tokenizer.json``;
    * tiktoken (Llama 3 and herd's ``llama3``-style training): the ranks as a
      tiktoken ``tokenizer.model`` and the special-token table with the BOS/EOS
      names as :data:`~herd.tokenizer.tiktoken_engine.SPECIALS_FILE`, as
      ``herd tokenizer train`` writes them.

    Each also gets a ``tokenizer_config.json`` naming BOS/EOS and carrying the chat template.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise TokenizerError(f"{folder}: exists and is not a directory; cannot save a tokenizer in it")
    folder.mkdir(parents=True, exist_ok=True)
    bos, eos = (None if i is None else tokenizer.id_to_piece(i) for i in (tokenizer.bos_id, tokenizer.eos_id))
    config: dict[str, object] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "clean_up_tokenization_spaces": False,
    }
    if isinstance(tokenizer, SentencePieceTokenizer):
        written = [_write_bytes(folder / "tokenizer.model", tokenizer.model_proto)]
        config |= {"tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "legacy": True}
    elif isinstance(tokenizer, HFTokenizer):
        if (folder / "tokenizer.model").exists():
            raise TokenizerError(
                f"{folder}: holds a tokenizer.model, which load_tokenizer would read instead of the "
                "tokenizer.json to be saved; save into another folder"
            )
        written = [
            _write_bytes(folder / "tokenizer.json", tokenizer.backend.to_str(pretty=True).encode("utf-8"))
        ]
    elif isinstance(tokenizer, TiktokenTokenizer):
        model, specials = folder / "tokenizer.model", folder / SPECIALS_FILE
        with atomic_file(model) as tmp:
            write_tiktoken_ranks(tokenizer.ranks, tmp)
        with atomic_file(specials) as tmp:
            write_specials_table(tmp, tokenizer.special_tokens, bos, eos)
        written = [model, specials]
    else:
        raise TokenizerError(f"{tokenizer.source}: saving a {type(tokenizer).__name__} is not supported")
    config |= {key: name for key, name in (("bos_token", bos), ("eos_token", eos)) if name is not None}
    if tokenizer.chat_template:
        config["chat_template"] = tokenizer.chat_template
    text = json.dumps(config, indent=2, ensure_ascii=False) + "\n"
    return [*written, _write_bytes(folder / CONFIG_FILE, text.encode("utf-8"))]


def _write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; ``path``."""
    write_atomically(path, lambda f: f.write(data))
    return path
