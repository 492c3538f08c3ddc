"""``herd convert --tokenizer / --no-vocab``: the tokenizer travels with the model, checked by llama.cpp.

A GGUF written with ``--tokenizer`` (a SentencePiece or tiktoken directory, or
the vocabulary of another GGUF file) loads in llama.cpp (llama-cpp-python),
which tokenizes like herd; a GGUF without any vocabulary is refused unless
``--no-vocab``; hf/meta outputs get the new tokenizer's files in place of the
source's; contradictory or ignored flags are one-line errors.
"""

from __future__ import annotations

import json
import sysconfig
from collections.abc import Callable
from pathlib import Path

import llama_cpp
import pytest

import herd
from herd.checkpoint.base import CheckpointInfo
from herd.checkpoint.gguf import GGUFReader
from herd.checkpoint.hf import write_hf
from herd.checkpoint.load import model_tensors
from herd.cli import main
from herd.io.gguf import GGUFFile
from herd.model.build import build_model
from herd.model.config import ModelConfig
from herd.tokenizer import Tokenizer, load_tokenizer
from herd.tokenizer.train import train_tokenizer

CliRun = Callable[[list[str]], tuple[int, str]]
TEXTS = [
    "def f(x):\n    return {'a': [1, 2, 3]}  # comment",
    "The quick brown fox jumps over the lazy dog. It's 12:30, isn't it?",
    "  leading spaces\n\n\ttabs and numbers 1234567 — ünïcödé 日本語 🙂",
]


def tiny(vocab_size: int) -> ModelConfig:
    """A one-layer model small enough to write in milliseconds, with ``vocab_size`` embedding rows."""
    return ModelConfig(dim=32, n_layers=1, n_heads=2, n_kv_heads=1, vocab_size=vocab_size, hidden_dim=64)


def hf_without_tokenizer(folder: Path, vocab_size: int) -> Path:
    config = tiny(vocab_size)
    return write_hf(folder, CheckpointInfo(config), model_tensors(build_model(config, seed=1)))


def llama_cpp_ids(gguf: Path, text: str) -> list[int]:
    """llama.cpp's ids of ``text`` (no BOS) with a full load of the model, as a user would run it."""
    llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=32, n_threads=1, verbose=False)
    try:
        return llm.tokenize(text.encode(), add_bos=False, special=False)
    finally:
        llm.close()


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return [
        d for name in ("json/decoder.py", "textwrap.py") for d in (stdlib / name).read_text().split("\n\n")
    ]


@pytest.fixture(scope="module", params=["llama2", "llama3"])
def trained(
    request: pytest.FixtureRequest, corpus: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A tiny trained tokenizer directory of each style (SentencePiece; tiktoken with 16 specials)."""
    out = tmp_path_factory.mktemp(request.param)
    size = {"llama2": 400, "llama3": 500}[request.param]
    train_tokenizer(iter(corpus), out, style=request.param, vocab_size=size, num_special=16, heldout=0)
    return out


def test_gguf_with_tokenizer_loads_in_llama_cpp_and_tokenizes_like_herd(
    trained: Path, tmp_path: Path, herd_cli: CliRun
) -> None:
    tokenizer = load_tokenizer(trained)
    src = hf_without_tokenizer(tmp_path / "hf", tokenizer.vocab_size)
    gguf = tmp_path / "m.gguf"
    assert herd_cli(["convert", str(src), str(gguf), "--to", "gguf", "--tokenizer", str(trained)]) == (0, "")
    for text in TEXTS:
        expected = tokenizer.encode(text)
        assert llama_cpp_ids(gguf, text) == expected
        assert load_tokenizer(gguf).encode(text) == expected


def test_a_model_with_more_rows_than_ids_gets_placeholders_llama_cpp_loads(
    trained: Path, tmp_path: Path, herd_cli: CliRun
) -> None:
    """Rows rounded up to a multiple of 64: the vocabulary is padded as llama.cpp's converter pads it
    (``[PAD{id}]``, unused, score -10000 for SentencePiece), llama.cpp loads the model and tokenizes like
    herd, and herd reads back the tokenizer it wrote."""
    tokenizer = load_tokenizer(trained)
    rows = (tokenizer.vocab_size // 64 + 1) * 64
    src = hf_without_tokenizer(tmp_path / "hf", rows)
    gguf = tmp_path / "m.gguf"
    assert herd_cli(["convert", str(src), str(gguf), "--to", "gguf", "--tokenizer", str(trained)]) == (0, "")
    with GGUFFile(gguf) as file:
        meta = file.metadata_values()
    padding = range(tokenizer.vocab_size, rows)
    assert meta["tokenizer.ggml.tokens"][tokenizer.vocab_size :] == [f"[PAD{i}]" for i in padding]
    assert set(meta["tokenizer.ggml.token_type"][tokenizer.vocab_size :]) == {5}  # unused
    if "tokenizer.ggml.scores" in meta:
        assert set(meta["tokenizer.ggml.scores"][tokenizer.vocab_size :]) == {-10000.0}
    llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=32, n_threads=1, verbose=False)
    try:
        assert llm.n_vocab() == rows
        for text in TEXTS:
            assert llm.tokenize(text.encode(), add_bos=False, special=False) == tokenizer.encode(text)
    finally:
        llm.close()
    read_back = load_tokenizer(gguf)
    assert read_back.vocab_size == tokenizer.vocab_size
    assert [read_back.encode(t) for t in TEXTS] == [tokenizer.encode(t) for t in TEXTS]


def test_tokenizer_can_be_another_gguf_file(smollm2_gguf: Path, tmp_path: Path, herd_cli: CliRun) -> None:
    """The SmolLM2 GGUF's byte-level vocabulary, chat template and BOS setting (false: llama.cpp adds no
    BOS) travel into a new model's GGUF."""
    src = hf_without_tokenizer(tmp_path / "hf", 49152)
    gguf = tmp_path / "m.gguf"
    assert herd_cli(["convert", str(src), str(gguf), "--to", "gguf", "--tokenizer", str(smollm2_gguf)]) == (
        0,
        "",
    )
    text = "<|im_start|>user\nHello, GGUF world! 123<|im_end|>"
    original = llama_cpp.Llama(model_path=str(smollm2_gguf), vocab_only=True, verbose=False)
    written = llama_cpp.Llama(model_path=str(gguf), vocab_only=True, verbose=False)
    ids = original.tokenize(text.encode(), add_bos=False, special=True)
    assert written.tokenize(text.encode(), add_bos=False, special=True) == ids
    for key in ("tokenizer.chat_template", "tokenizer.ggml.add_bos_token"):
        assert written.metadata[key] == original.metadata[key]
    assert original.metadata["tokenizer.ggml.add_bos_token"] == "false"


def test_tokenizer_replaces_a_gguf_sources_vocabulary(
    trained: Path, tmp_path: Path, herd_cli: CliRun
) -> None:
    tokenizer = load_tokenizer(trained)
    src = hf_without_tokenizer(tmp_path / "hf", tokenizer.vocab_size)
    first, second = tmp_path / "first.gguf", tmp_path / "second.gguf"
    assert herd_cli(["convert", str(src), str(first), "--to", "gguf", "--no-vocab"])[0] == 0
    assert herd_cli(["convert", str(first), str(second), "--to", "gguf", "--tokenizer", str(trained)])[0] == 0
    assert llama_cpp_ids(second, TEXTS[1]) == tokenizer.encode(TEXTS[1])


def test_gguf_without_vocabulary_is_refused_unless_asked_for(tmp_path: Path, herd_cli: CliRun) -> None:
    src = hf_without_tokenizer(tmp_path / "hf", 300)
    gguf = tmp_path / "m.gguf"
    code, err = herd_cli(["convert", str(src), str(gguf), "--to", "gguf"])
    assert code == 2 and len(err.splitlines()) == 1
    assert (
        f"herd: error: {src}: no tokenizer to embed" in err
        and "--tokenizer PATH" in err
        and "--no-vocab" in err
    )
    assert not gguf.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["hf"]
    assert herd_cli(["convert", str(src), str(gguf), "--to", "gguf", "--no-vocab"]) == (0, "")
    with GGUFReader(gguf) as reader:
        assert reader.info.extras["gguf_tokenizer"] == {}
    assert herd.load_model(gguf).config.vocab_size == 300
    with pytest.raises(ValueError, match="Failed to load model"):
        llama_cpp.Llama(model_path=str(gguf), vocab_only=True, verbose=False)


def test_no_vocab_drops_a_gguf_sources_vocabulary(trained: Path, tmp_path: Path, herd_cli: CliRun) -> None:
    src = hf_without_tokenizer(tmp_path / "hf", load_tokenizer(trained).vocab_size)
    first, second = tmp_path / "first.gguf", tmp_path / "second.gguf"
    assert herd_cli(["convert", str(src), str(first), "--to", "gguf", "--tokenizer", str(trained)])[0] == 0
    assert herd_cli(["convert", str(first), str(second), "--to", "gguf", "--no-vocab"]) == (0, "")
    with GGUFReader(first) as with_vocab, GGUFReader(second) as without:
        assert with_vocab.info.extras["gguf_tokenizer"] and without.info.extras["gguf_tokenizer"] == {}


def test_hf_output_gets_the_new_tokenizer_in_place_of_the_sources(
    llama3_tokenizer_dir: Path, tmp_path: Path, herd_cli: CliRun
) -> None:
    """The source's own tokenizer files are dropped, its generation config kept; a directory is copied as is."""
    src = hf_without_tokenizer(tmp_path / "hf", 128257)  # Llama 3.2's tokenizer adds <|image|> to the 128,256
    (src / "tokenizer.model").write_text("the source's tokenizer")
    (src / "special_tokens.json").write_text("{}")
    (src / "generation_config.json").write_text(json.dumps({"temperature": 0.6}))
    dst = tmp_path / "out"
    assert (
        herd_cli(["convert", str(src), str(dst), "--to", "hf", "--tokenizer", str(llama3_tokenizer_dir)])[0]
        == 0
    )
    for name in ("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        origin = src if name == "generation_config.json" else llama3_tokenizer_dir
        assert (dst / name).read_bytes() == (origin / name).read_bytes()
    assert not (dst / "special_tokens.json").exists()
    assert load_tokenizer(dst).encode(TEXTS[2]) == load_tokenizer(llama3_tokenizer_dir).encode(TEXTS[2])


def test_a_single_tokenizer_file_is_saved_in_herds_layout(
    trained: Path, tmp_path: Path, herd_cli: CliRun
) -> None:
    """``--tokenizer tok/tokenizer.model`` (a file) is written with save_tokenizer into the meta output."""
    tokenizer: Tokenizer = load_tokenizer(trained / "tokenizer.model")
    src = hf_without_tokenizer(tmp_path / "hf", tokenizer.vocab_size)
    dst = tmp_path / "meta"
    assert (
        herd_cli(
            ["convert", str(src), str(dst), "--to", "meta", "--tokenizer", str(trained / "tokenizer.model")]
        )[0]
        == 0
    )
    assert (dst / "tokenizer_config.json").is_file()
    saved = load_tokenizer(dst)
    assert [saved.encode(t) for t in TEXTS] == [tokenizer.encode(t) for t in TEXTS]


def test_tokenizer_with_more_ids_than_the_model_has_rows_is_refused(
    trained: Path, tmp_path: Path, herd_cli: CliRun
) -> None:
    src = hf_without_tokenizer(tmp_path / "hf", 300)
    for to, dst in (("gguf", "m.gguf"), ("hf", "out")):
        code, err = herd_cli(
            ["convert", str(src), str(tmp_path / dst), "--to", to, "--tokenizer", str(trained)]
        )
        assert code == 2 and len(err.splitlines()) == 1 and "only 300 rows" in err
        assert not (tmp_path / dst).exists()


def test_a_missing_tokenizer_path_is_one_line(tmp_path: Path, herd_cli: CliRun) -> None:
    src = hf_without_tokenizer(tmp_path / "hf", 300)
    code, err = herd_cli(
        ["convert", str(src), str(tmp_path / "m.gguf"), "--to", "gguf", "--tokenizer", "nope"]
    )
    assert (code, err) == (2, "herd: error: nope: no such tokenizer file or model directory")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--to", "gguf", "--shards", "2"], "--shards 2: only --to meta is written in model-parallel shards"),
        (["--to", "gguf", "--shards", "1"], "--shards 1: only --to meta"),
        (["--to", "hf", "--shards", "2"], "not --to hf"),
        (["--to", "hf", "--no-vocab"], "--no-vocab: only --to gguf embeds a vocabulary, not --to hf"),
    ],
)
def test_flags_the_target_would_ignore_are_refused(
    flags: list[str], message: str, tiny_hf: Path, tmp_path: Path, herd_cli: CliRun
) -> None:
    code, err = herd_cli(["convert", str(tiny_hf), str(tmp_path / "out"), *flags])
    assert code == 2 and len(err.splitlines()) == 1 and message in err
    assert list(tmp_path.iterdir()) == []


def test_tokenizer_and_no_vocab_exclude_each_other(
    tiny_hf: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(
            [
                "convert",
                str(tiny_hf),
                str(tmp_path / "m.gguf"),
                "--to",
                "gguf",
                "--no-vocab",
                "--tokenizer",
                "t",
            ]
        )
    assert exit_.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
