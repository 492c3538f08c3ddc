"""``save_tokenizer``: a GGUF's vocabulary written as directory files loads back with the same ids."""

from __future__ import annotations

from pathlib import Path

import gguf
import pytest

from herd.errors import HerdError
from herd.tokenizer import Tokenizer, load_tokenizer, write_gguf_tokenizer
from herd.tokenizer.save import save_tokenizer


def _through_gguf(tokenizer: Tokenizer, path: Path) -> Tokenizer:
    writer = gguf.GGUFWriter(str(path), "llama")
    write_gguf_tokenizer(writer, tokenizer)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return load_tokenizer(path)


def test_sentencepiece_from_gguf_saves_as_tokenizer_model(
    llama2: Tokenizer, corpus: list[str], tmp_path: Path
) -> None:
    from_gguf = _through_gguf(llama2, tmp_path / "v.gguf")
    written = save_tokenizer(from_gguf, tmp_path / "dir")
    assert [p.name for p in written] == ["tokenizer.model", "tokenizer_config.json"]
    saved = load_tokenizer(tmp_path / "dir")
    for text in corpus[:50]:
        assert saved.encode(text, bos=True) == llama2.encode(text, bos=True)
    assert (saved.bos_id, saved.eos_id) == (llama2.bos_id, llama2.eos_id)


def test_byte_level_saves_as_tokenizer_json(smollm2_gguf: Path, corpus: list[str], tmp_path: Path) -> None:
    original = load_tokenizer(smollm2_gguf)
    save_tokenizer(original, tmp_path / "dir")
    saved = load_tokenizer(tmp_path / "dir")
    for text in corpus[:50]:
        assert saved.encode(text) == original.encode(text)
    assert saved.chat_template == original.chat_template
    assert (saved.bos_id, saved.eos_id) == (original.bos_id, original.eos_id)


def test_unsupported_engine_is_a_clear_error(llama3: Tokenizer, tmp_path: Path) -> None:
    with pytest.raises(HerdError, match="not supported"):
        save_tokenizer(llama3, tmp_path)
