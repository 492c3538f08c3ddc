"""``save_tokenizer``: every herd tokenizer written as directory files loads back with the same ids."""

from __future__ import annotations

import os
from pathlib import Path

import gguf
import pytest

from herd.errors import HerdError
from herd.infer.byte_tokenizer import ByteTokenizer
from herd.tokenizer import TiktokenTokenizer, Tokenizer, load_tokenizer, write_gguf_tokenizer
from herd.tokenizer.save import save_tokenizer

TEMPLATE = "{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>{{ m['content'] }}<|eot_id|>{% endfor %}"


def _through_gguf(tokenizer: Tokenizer, path: Path) -> Tokenizer:
    writer = gguf.GGUFWriter(str(path), "llama")
    write_gguf_tokenizer(writer, tokenizer)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return load_tokenizer(path)


def _assert_same(saved: Tokenizer, original: Tokenizer, corpus: list[str]) -> None:
    """Same ids (plain, framed, with special strings allowed), specials, BOS/EOS and chat template."""
    texts = corpus[:40] + corpus[-17:]
    assert saved.encode_batch(texts) == original.encode_batch(texts)
    assert saved.encode_batch(texts, allow_special=True) == original.encode_batch(texts, allow_special=True)
    framing = {"bos": original.bos_id is not None, "eos": original.eos_id is not None}
    assert saved.encode(texts[0], **framing) == original.encode(texts[0], **framing)
    assert saved.special_tokens == original.special_tokens
    assert (saved.bos_id, saved.eos_id, saved.vocab_size) == (
        original.bos_id,
        original.eos_id,
        original.vocab_size,
    )
    assert saved.chat_template == original.chat_template
    assert type(saved) is type(original)


def test_sentencepiece_from_gguf_saves_as_tokenizer_model(
    llama2: Tokenizer, corpus: list[str], tmp_path: Path
) -> None:
    from_gguf = _through_gguf(llama2, tmp_path / "v.gguf")
    written = save_tokenizer(from_gguf, tmp_path / "dir")
    assert [p.name for p in written] == ["tokenizer.model", "tokenizer_config.json"]
    saved = load_tokenizer(tmp_path / "dir")
    _assert_same(saved, from_gguf, corpus)
    assert saved.encode_batch(corpus[:50], bos=True) == llama2.encode_batch(corpus[:50], bos=True)


def test_byte_level_saves_as_tokenizer_json(smollm2_gguf: Path, corpus: list[str], tmp_path: Path) -> None:
    original = load_tokenizer(smollm2_gguf)
    assert original.chat_template
    written = save_tokenizer(original, tmp_path / "dir")
    assert [p.name for p in written] == ["tokenizer.json", "tokenizer_config.json"]
    _assert_same(load_tokenizer(tmp_path / "dir"), original, corpus)


def test_official_llama3_saves_in_herds_tiktoken_layout(
    llama3: TiktokenTokenizer, corpus: list[str], tmp_path: Path
) -> None:
    original = TiktokenTokenizer(llama3.ranks, llama3.special_tokens, source="llama3", chat_template=TEMPLATE)
    written = save_tokenizer(original, tmp_path / "dir")
    assert [p.name for p in written] == ["tokenizer.model", "special_tokens.json", "tokenizer_config.json"]
    saved = load_tokenizer(tmp_path / "dir")
    _assert_same(saved, original, corpus)
    assert saved.encode("<|eot_id|>hi", allow_special=True) == [llama3.special_id("<|eot_id|>"), 6151]
    # the ranks file is byte-identical to Meta's: same format, same order
    assert (tmp_path / "dir" / "tokenizer.model").read_bytes() == Path(llama3.source).read_bytes()


def test_trained_llama3_style_keeps_renamed_specials_and_missing_bos(
    llama3_trained_dir: Path, corpus: list[str], tmp_path: Path
) -> None:
    trained = load_tokenizer(llama3_trained_dir)
    specials = trained.special_tokens | {"<|my_tool|>": trained.vocab_size}
    original = TiktokenTokenizer(
        trained.ranks,
        specials,
        source="trained",
        bos_token=None,
        eos_token="<|eot_id|>",
        chat_template=TEMPLATE,
    )
    save_tokenizer(original, tmp_path / "dir")
    saved = load_tokenizer(tmp_path / "dir")
    _assert_same(saved, original, corpus)
    assert saved.bos_id is None and saved.eos_id == trained.special_id("<|eot_id|>")
    assert saved.encode("<|my_tool|>", allow_special=True) == [trained.vocab_size]


def test_saving_replaces_files_atomically_with_plain_permissions(
    llama3: TiktokenTokenizer, tmp_path: Path
) -> None:
    folder = tmp_path / "dir"
    folder.mkdir()
    (folder / "tokenizer.model").write_text("stale")
    old = os.umask(0o022)
    try:
        written = save_tokenizer(llama3, folder)
    finally:
        os.umask(old)
    assert load_tokenizer(folder).encode("hello world") == llama3.encode("hello world")
    assert {p.stat().st_mode & 0o777 for p in written} == {0o644}
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in written)  # no staging leftovers


def test_unsupported_engine_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(HerdError, match="saving a ByteTokenizer is not supported"):
        save_tokenizer(ByteTokenizer(), tmp_path)


def test_a_file_in_place_of_the_folder_is_a_clear_error(llama3: TiktokenTokenizer, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(HerdError, match="exists and is not a directory"):
        save_tokenizer(llama3, tmp_path / "f")


def test_a_tokenizer_json_is_not_saved_where_a_tokenizer_model_would_shadow_it(
    smollm2_gguf: Path, llama3: TiktokenTokenizer, tmp_path: Path
) -> None:
    save_tokenizer(llama3, tmp_path)
    with pytest.raises(HerdError, match=r"holds a tokenizer\.model, which load_tokenizer would read instead"):
        save_tokenizer(load_tokenizer(smollm2_gguf), tmp_path)
    assert load_tokenizer(tmp_path).encode("hello world") == llama3.encode("hello world")
