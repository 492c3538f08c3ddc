"""A GGUF vocabulary whose ``tokenizer.*`` values have the wrong type is one TokenizerError naming file and key.

Each case writes a small GGUF file with ``gguf.GGUFWriter`` holding a valid
three-token SentencePiece (``llama``) vocabulary with one value spoiled.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import gguf
import pytest

from herd.tokenizer import read_gguf_tokenizer
from herd.tokenizer.base import TokenizerError

TOKENS = ["<unk>", "<s>", "</s>"]
VALID: dict[str, Callable[[gguf.GGUFWriter], None]] = {
    "tokenizer.ggml.model": lambda w: w.add_tokenizer_model("llama"),
    "tokenizer.ggml.tokens": lambda w: w.add_token_list(TOKENS),
    "tokenizer.ggml.scores": lambda w: w.add_token_scores([0.0, 0.0, 0.0]),
    "tokenizer.ggml.token_type": lambda w: w.add_token_types([2, 3, 3]),
    "tokenizer.ggml.bos_token_id": lambda w: w.add_bos_token_id(1),
    "tokenizer.ggml.eos_token_id": lambda w: w.add_eos_token_id(2),
}


def write_vocabulary(path: Path, spoiled: dict[str, Callable[[gguf.GGUFWriter], None]]) -> Path:
    """A GGUF with the valid vocabulary, except the keys in ``spoiled``, written by their functions."""
    writer = gguf.GGUFWriter(path, "llama")
    for add in (VALID | spoiled).values():
        add(writer)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_the_valid_vocabulary_reads(tmp_path: Path) -> None:
    tokenizer = read_gguf_tokenizer(write_vocabulary(tmp_path / "ok.gguf", {}))
    assert (tokenizer.vocab_size, tokenizer.bos_id, tokenizer.eos_id) == (3, 1, 2)


@pytest.mark.parametrize(
    ("key", "add", "problem"),
    [
        (
            "tokenizer.ggml.scores",
            lambda w: w.add_array("tokenizer.ggml.scores", ["0.0", "0.0", "0.0"]),
            "must be an array of numbers, got str '0.0' at index 0",
        ),
        (
            "tokenizer.ggml.tokens",
            lambda w: w.add_string("tokenizer.ggml.tokens", "<unk> <s> </s>"),
            "must be an array, got str '<unk> <s> </s>'",
        ),
        (
            "tokenizer.ggml.tokens",
            lambda w: w.add_array("tokenizer.ggml.tokens", [0, 1, 2]),
            "must be an array of strings, got int 0 at index 0",
        ),
        (
            "tokenizer.ggml.token_type",
            lambda w: w.add_array("tokenizer.ggml.token_type", [2.0, 3.0, 3.0]),
            "must be an array of integers, got float 2.0 at index 0",
        ),
        (
            "tokenizer.ggml.bos_token_id",
            lambda w: w.add_string("tokenizer.ggml.bos_token_id", "1"),
            "must be an integer from 0 to 2, got str '1'",
        ),
        (
            "tokenizer.ggml.eos_token_id",
            lambda w: w.add_eos_token_id(3),
            "must be an integer from 0 to 2, got 3",
        ),
    ],
    ids=[
        "string-scores",
        "tokens-not-an-array",
        "integer-tokens",
        "float-types",
        "string-bos",
        "eos-past-vocab",
    ],
)
def test_a_wrong_value_is_one_line_naming_file_and_key(
    tmp_path: Path, key: str, add: Callable[[gguf.GGUFWriter], None], problem: str
) -> None:
    path = write_vocabulary(tmp_path / "bad.gguf", {key: add})
    with pytest.raises(TokenizerError) as caught:
        read_gguf_tokenizer(path)
    assert str(caught.value) == f"{path}: {key} {problem}"


def test_a_missing_vocabulary_is_named(tmp_path: Path) -> None:
    path = write_vocabulary(tmp_path / "bad.gguf", {"tokenizer.ggml.tokens": lambda w: None})
    with pytest.raises(TokenizerError, match=r"missing metadata key 'tokenizer\.ggml\.tokens'"):
        read_gguf_tokenizer(path)
