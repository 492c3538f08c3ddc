"""``load_tokenizer``: open any tokenizer herd knows from a file or a model directory.

Detection, in order:

* a GGUF file (by its magic bytes): the vocabulary in its metadata;
* a JSON file: a Hugging Face ``tokenizer.json``;
* a ``tokenizer.model`` in tiktoken's text format (Llama 3) or SentencePiece's
  protobuf format (Llama 1/2, Code Llama);
* a directory: its ``tokenizer.model`` (the reference engine is preferred),
  else its ``tokenizer.json``, else its single ``.gguf`` file; a
  ``tokenizer_config.json`` (or ``chat_template.jinja``) next to it supplies
  the chat template and the BOS/EOS names, and a tiktoken model takes its
  special tokens from herd's ``special_tokens.json``, else from the config's
  ``added_tokens_decoder``, else the Llama 3.1 table (docs/spec.md §2).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from herd.io.gguf import GGUF_MAGIC
from herd.tokenizer.base import Tokenizer, TokenizerError
from herd.tokenizer.gguf_vocab import read_gguf_tokenizer
from herd.tokenizer.hf_engine import HFTokenizer
from herd.tokenizer.sentencepiece_engine import SentencePieceTokenizer
from herd.tokenizer.tiktoken_engine import (
    BEGIN_OF_TEXT,
    END_OF_TEXT,
    SPECIALS_FILE,
    TiktokenTokenizer,
    is_tiktoken_file,
    read_specials_table,
)


def load_tokenizer(path: str | Path) -> Tokenizer:
    """The tokenizer at ``path``: a tokenizer file, a GGUF file or a model directory."""
    path = Path(path)
    if path.is_dir():
        return _load_dir(path)
    if not path.exists():
        raise TokenizerError(f"{path}: no such tokenizer file or model directory")
    return _load_file(path, {}, path.parent / SPECIALS_FILE)


def _head(path: Path, n: int = 64) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError as exc:
        raise TokenizerError(f"{path}: cannot read ({exc.strerror})") from None


def _load_file(path: Path, config: dict[str, Any], specials_file: Path) -> Tokenizer:
    head = _head(path)
    if not head:
        raise TokenizerError(f"{path}: the file is empty")
    template = _chat_template(config, path.parent)
    if head.startswith(GGUF_MAGIC):
        return read_gguf_tokenizer(path)
    if head.lstrip().startswith(b"{"):
        return HFTokenizer.from_file(
            path,
            bos_token=_token_name(config.get("bos_token")),
            eos_token=_token_name(config.get("eos_token")),
            chat_template=template,
        )
    if is_tiktoken_file(path):
        specials, bos, eos = _tiktoken_specials(config, specials_file)
        return TiktokenTokenizer.from_file(
            path, specials, bos_token=bos, eos_token=eos, chat_template=template
        )
    try:
        return SentencePieceTokenizer.from_file(path, chat_template=template)
    except TokenizerError:
        raise TokenizerError(
            f"{path}: not a tokenizer herd can read (expected a SentencePiece or tiktoken tokenizer.model, "
            "a tokenizer.json or a GGUF file)"
        ) from None


def _load_dir(path: Path) -> Tokenizer:
    config = _read_config(path / "tokenizer_config.json")
    for name in ("tokenizer.model", "tokenizer.json"):
        if (path / name).is_file():
            return _load_file(path / name, config, path / SPECIALS_FILE)
    ggufs = sorted(path.glob("*.gguf"))
    if len(ggufs) == 1:
        return read_gguf_tokenizer(ggufs[0])
    found = f"{len(ggufs)} .gguf files" if ggufs else "no tokenizer files"
    raise TokenizerError(
        f"{path}: cannot find the tokenizer ({found}; expected tokenizer.model, tokenizer.json or one .gguf file)"
    )


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TokenizerError(f"{path}: not a valid tokenizer_config.json ({exc})") from None
    if not isinstance(config, dict):
        raise TokenizerError(f"{path}: expected a JSON object")
    return config


def _token_name(value: Any) -> str | None:
    """A BOS/EOS entry of ``tokenizer_config.json``: a string or an ``{"content": ...}`` object."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _chat_template(config: dict[str, Any], folder: Path) -> str | None:
    """The default chat template from the config (a string or a list of named templates) or ``chat_template.jinja``."""
    template = config.get("chat_template")
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    if isinstance(template, str):
        return template
    jinja = folder / "chat_template.jinja"
    return jinja.read_text(encoding="utf-8") if jinja.is_file() else None


def _tiktoken_specials(
    config: dict[str, Any], specials_file: Path
) -> tuple[dict[str, int] | None, str | None, str | None]:
    """Special tokens of a tiktoken model: herd's table, the HF config's added tokens, or Llama 3.1's."""
    if specials_file.is_file():
        return read_specials_table(specials_file)
    bos = _token_name(config.get("bos_token")) or BEGIN_OF_TEXT
    eos = _token_name(config.get("eos_token")) or END_OF_TEXT
    added = config.get("added_tokens_decoder")
    if isinstance(added, dict):
        specials = {
            entry["content"]: int(token_id)
            for token_id, entry in added.items()
            if isinstance(entry, dict) and entry.get("special")
        }
        return specials, bos, eos
    return None, bos, eos
