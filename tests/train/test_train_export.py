"""The pretraining hand-over: data made with a tokenizer gives a model directory that loads and generates with it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import tiny_config_dict, write_toml
from herd.checkpoint.base import SIDE_FILES
from herd.cli import main
from herd.io.token_shards import MANIFEST, write_dataset
from herd.tokenizer import load_tokenizer
from herd.tokenizer.save import save_tokenizer
from herd.tokenizer.train import train_tokenizer

TEXTS = [
    f"The quick brown fox {i} jumps over the lazy dog, and the dog sleeps {i % 7} hours." for i in range(300)
]


@pytest.fixture(scope="module")
def tokenized_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Token shards of TEXTS made by a tiny Llama-3-style tokenizer (556 ids), which the manifest names."""
    root = tmp_path_factory.mktemp("tokenized")
    trained = train_tokenizer(iter(TEXTS), root / "trained", style="llama3", vocab_size=300, heldout=0)
    tokenizer = trained.tokenizer
    data = root / "data"
    docs = [tokenizer.encode(text, bos=True, eos=True) for text in TEXTS]
    write_dataset(data, {"train": {"web": docs}}, vocab_size=tokenizer.vocab_size)
    save_tokenizer(tokenizer, data / "tokenizer")  # what `herd data build --tokenizer` writes
    manifest = json.loads((data / MANIFEST).read_text())
    (data / MANIFEST).write_text(json.dumps(manifest | {"tokenizer": "tokenizer"}))
    return data


def _config(tmp_path: Path, data: Path) -> Path:
    """A two-step run that exports, with model.vocab_size left to the data."""
    raw = tiny_config_dict(data, tmp_path / "run", train={"steps": 2}, checkpoint={"export_hf": True})
    raw["model"].pop("vocab_size")
    return write_toml(tmp_path / "c.toml", raw)


def test_the_export_carries_the_data_s_tokenizer(
    tokenized_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`herd generate OUT/hf` works on the export as it is: the weights' vocabulary and the tokenizer agree."""
    assert main(["pretrain", str(_config(tmp_path, tokenized_data)), "--quiet"]) == 0
    hf = tmp_path / "run" / "hf"
    assert f"{hf}, with the tokenizer from {tokenized_data / 'tokenizer'}" in capsys.readouterr().out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["hf_tokenizer"] == str(tokenized_data / "tokenizer")
    assert json.loads((hf / "config.json").read_text())["vocab_size"] == 556
    original, exported = load_tokenizer(tokenized_data / "tokenizer"), load_tokenizer(hf)
    assert exported.vocab_size == original.vocab_size == 556
    assert exported.encode_batch(TEXTS[:20]) == original.encode_batch(TEXTS[:20])
    assert main(["generate", str(hf), "--prompt", "The quick", "--max-new-tokens", "3", "--greedy"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() and "[length: 3 tokens" in err  # three tokens decoded to text


def test_an_export_without_a_tokenizer_says_so(
    dataset_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A manifest that names no tokenizer: the weights alone, and the summary tells what is missing."""
    assert main(["pretrain", str(_config(tmp_path, dataset_dir)), "--quiet"]) == 0
    hf = tmp_path / "run" / "hf"
    out = capsys.readouterr().out
    assert (
        f"{hf}, no tokenizer (the dataset's manifest names none): copy its files in before generating" in out
    )
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["hf_tokenizer"] is None
    assert not [name for name in SIDE_FILES if (hf / name).exists()]
