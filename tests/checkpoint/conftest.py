"""Fixtures of the checkpoint tests: a tiny model in each layout, and the CLI run as a user runs it."""

from __future__ import annotations

import sysconfig
from collections.abc import Callable
from pathlib import Path

import pytest

from herd.checkpoint.base import CheckpointInfo
from herd.checkpoint.gguf import write_gguf
from herd.checkpoint.hf import write_hf
from herd.checkpoint.load import model_tensors
from herd.checkpoint.meta import write_meta
from herd.cli import main
from herd.model.build import build_model
from herd.model.presets import get_preset
from herd.model.transformer import Transformer
from herd.tokenizer.train import train_tokenizer

# Two kv heads so the same model writes as 1 or 2 Meta shards.
TINY = get_preset("llama2-tiny").replace(n_kv_heads=2)


@pytest.fixture(scope="session")
def tiny_model() -> Transformer:
    return build_model(TINY, seed=5)


@pytest.fixture(scope="session")
def tiny_hf(tiny_model: Transformer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny_model`` as a single-file Hugging Face directory."""
    return write_hf(tmp_path_factory.mktemp("src") / "hf", CheckpointInfo(TINY), model_tensors(tiny_model))


@pytest.fixture(scope="session")
def tiny_hf_sharded(tiny_model: Transformer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny_model`` as a Hugging Face directory of several safetensors shards with an index."""
    dst = tmp_path_factory.mktemp("src") / "hf-sharded"
    return write_hf(dst, CheckpointInfo(TINY), model_tensors(tiny_model), max_shard_bytes=200_000)


@pytest.fixture(scope="session")
def tiny_meta2(tiny_model: Transformer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny_model`` as a 2-shard Meta directory."""
    dst = tmp_path_factory.mktemp("src") / "meta2"
    return write_meta(dst, CheckpointInfo(TINY), model_tensors(tiny_model), shards=2)


@pytest.fixture(scope="session")
def tiny_gguf(tiny_model: Transformer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny_model`` as an F32 GGUF file."""
    dst = tmp_path_factory.mktemp("src") / "tiny.gguf"
    return write_gguf(dst, CheckpointInfo(TINY), model_tensors(tiny_model))


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SentencePiece tokenizer directory whose ids fill exactly the rows of :data:`TINY`'s vocabulary."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    docs = [
        doc
        for name in ("json/decoder.py", "textwrap.py")
        for doc in (stdlib / name).read_text().split("\n\n")
    ]
    out = tmp_path_factory.mktemp("tokenizer")
    train_tokenizer(iter(docs), out, style="llama2", vocab_size=TINY.vocab_size, heldout=0)
    return out


@pytest.fixture
def herd_cli(capsys: pytest.CaptureFixture[str]) -> Callable[[list[str]], tuple[int, str]]:
    """Run ``herd ARGV``: its exit code and its stderr (checked to hold no traceback)."""

    def run(argv: list[str]) -> tuple[int, str]:
        code = main([*argv, "--quiet"] if argv[0] == "convert" else argv)
        err = capsys.readouterr().err.strip()
        assert "Traceback" not in err
        return code, err

    return run
