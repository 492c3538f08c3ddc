"""Token shards: format validation, document ids, mixture proportions, deterministic resumable order."""

from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from conftest import tiny_config_dict, write_toml
from herd.cli import main
from herd.errors import ConfigError
from herd.io.token_shards import FORMAT, DataError, TokenDataset, write_dataset, write_manifest
from herd.train.config import VOCAB_FROM_DATA, config_from_dict
from herd.train.dataset import MixtureSampler, read_windows
from herd.train.loop import Trainer, pretrain


def _sampler(path: Path, weights: list[float], seq_len: int = 16, seed: int = 0) -> MixtureSampler:
    sources = TokenDataset.open(path).splits["train"]
    return MixtureSampler(sources, seq_len, weights, seed)


def test_windows_hold_the_shard_tokens_and_document_ids(tmp_path: Path) -> None:
    docs = [[0, 5, 6, 1], [0, 7, 8, 9, 10, 1], [0, 11, 1]]
    write_dataset(tmp_path, {"train": {"a": docs}}, vocab_size=16, dtype="uint32")
    sources = TokenDataset.open(tmp_path).splits["train"]
    batch = read_windows(sources, [(0, 0, 0), (0, 0, 4)], 4)
    flat = [t for d in docs for t in d]
    assert batch.inputs.tolist() == [flat[0:4], flat[4:8]]
    assert batch.targets.tolist() == [flat[1:5], flat[5:9]]
    assert batch.document_ids.tolist() == [[1, 1, 1, 1], [2, 2, 2, 2]]
    batch = read_windows(sources, [(0, 0, 8)], 4)
    assert batch.document_ids.tolist() == [[2, 2, 3, 3]]


def test_mixture_matches_the_weights_and_is_deterministic(dataset_dir: Path) -> None:
    sampler = _sampler(dataset_dir, [3.0, 1.0])
    picks = sampler.draw(400)
    counts = np.bincount([p[0] for p in picks], minlength=2)
    assert counts.tolist() == [300, 100]
    assert _sampler(dataset_dir, [3.0, 1.0]).draw(400) == picks
    assert _sampler(dataset_dir, [3.0, 1.0], seed=1).draw(400) != picks


def test_sampler_resumes_from_its_state(dataset_dir: Path) -> None:
    reference = _sampler(dataset_dir, [1.0, 2.0])
    expected = reference.draw(50) + reference.draw(3000)  # runs past an epoch of the small source
    first = _sampler(dataset_dir, [1.0, 2.0])
    first.draw(50)
    state = json.loads(json.dumps(first.state_dict()))
    second = _sampler(dataset_dir, [1.0, 2.0])
    second.load_state_dict(state)
    assert second.draw(3000) == expected[50:]


def test_every_window_is_seen_once_per_epoch(dataset_dir: Path) -> None:
    sampler = _sampler(dataset_dir, [1.0, 0.0])
    n = len(sampler.windows[0])
    first = sampler.draw(n)
    assert len(set(first)) == n
    assert set(sampler.draw(n)) == set(first)


def _broken(dataset_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(dataset_dir, copy)
    return copy


def test_missing_shard(dataset_dir: Path, tmp_path: Path) -> None:
    path = _broken(dataset_dir, tmp_path)
    (path / "web" / "train-00000.bin").unlink()
    with pytest.raises(DataError, match=r"train-00000.bin: shard file missing \(train/web shard 0\)"):
        TokenDataset.open(path)


def test_truncated_shard(dataset_dir: Path, tmp_path: Path) -> None:
    path = _broken(dataset_dir, tmp_path)
    shard = path / "code" / "train-00000.bin"
    shard.write_bytes(shard.read_bytes()[:-3])
    with pytest.raises(DataError, match="corrupt shard"):
        TokenDataset.open(path)


def test_corrupt_index_and_manifest(dataset_dir: Path, tmp_path: Path) -> None:
    path = _broken(dataset_dir, tmp_path)
    np.save(path / "web" / "train-00000.idx.npy", np.array([0, 5, 3], dtype=np.int64))
    with pytest.raises(DataError, match="corrupt document index"):
        TokenDataset.open(path)
    (path / "manifest.json").write_text("{not json")
    with pytest.raises(DataError, match="corrupt manifest"):
        TokenDataset.open(path)
    (path / "manifest.json").unlink()
    with pytest.raises(DataError, match="no token dataset here"):
        TokenDataset.open(path)


def test_token_ids_outside_the_models_vocabulary(tmp_path: Path) -> None:
    """An id ≥ vocab_size would index past the embedding table (a device-side assert on a GPU)."""
    write_dataset(tmp_path, {"train": {"a": [[0, 5, 6, 1]]}, "val": {"a": [[0, 15, 1]]}}, vocab_size=16)
    assert TokenDataset.open(tmp_path, model_vocab_size=16).vocab_size == 16
    with pytest.raises(
        DataError, match=r"val-00000\.bin: token id 15 is outside the model's vocabulary \(vocab_size 12"
    ):
        TokenDataset.open(tmp_path, model_vocab_size=12)


def _edit_manifest(path: Path, change: Callable[[dict], object]) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    change(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


def _shard(manifest: dict) -> dict:
    return manifest["splits"]["train"]["web"]["shards"][0]


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (
            lambda m: _shard(m).pop("num_tokens"),
            r"train/web shard 0: 'num_tokens' must be an integer >= 0, got None",
        ),
        (lambda m: _shard(m).update(num_tokens="1000"), r"'num_tokens' must be an integer >= 0, got '1000'"),
        (lambda m: _shard(m).update(num_documents=-1), r"'num_documents' must be an integer >= 0, got -1"),
        (lambda m: _shard(m).update(tokens=7), r"'tokens' must be a file name inside the dataset, got 7"),
        (
            lambda m: m["splits"]["train"]["web"].update(weight="x"),
            r"splits\.train\.web: weight must be a finite",
        ),
        (
            lambda m: m["splits"]["train"]["web"].update(shards={}),
            r"splits\.train\.web: shards must be a list",
        ),
        (lambda m: m["splits"].update(train=[]), r"manifest\.json: splits\.train: expected a table"),
        (lambda m: m.update(vocab_size="96"), r"vocab_size must be an integer >= 0, got '96'"),
        (
            lambda m: m["splits"]["train"]["web"]["shards"].__setitem__(0, "web.bin"),
            r"shard 0: expected a table",
        ),
    ],
    ids=[
        "missing-key",
        "string-count",
        "negative",
        "name-type",
        "weight",
        "shards",
        "split",
        "vocab",
        "entry",
    ],
)
def test_malformed_manifest_is_named(
    dataset_dir: Path, tmp_path: Path, change: Callable[[dict], object], match: str
) -> None:
    path = _broken(dataset_dir, tmp_path)
    _edit_manifest(path, change)
    with pytest.raises(DataError, match=match):
        TokenDataset.open(path)


@pytest.mark.parametrize("name", ["../outside.bin", "/etc/passwd", "web/../../outside.bin"])
def test_shard_paths_stay_inside_the_dataset(dataset_dir: Path, tmp_path: Path, name: str) -> None:
    path = _broken(dataset_dir, tmp_path)
    shutil.copyfile(path / "web" / "train-00000.bin", tmp_path / "outside.bin")
    _edit_manifest(path, lambda m: _shard(m).update(tokens=name))
    with pytest.raises(
        DataError, match=r"manifest\.json: train/web shard 0 'tokens': path .* (leaves|is absolute)"
    ):
        TokenDataset.open(path)


def test_the_fingerprint_follows_the_manifest_and_the_shard_sizes(dataset_dir: Path, tmp_path: Path) -> None:
    path = _broken(dataset_dir, tmp_path)
    fingerprint = TokenDataset.open(path).fingerprint
    assert TokenDataset.open(dataset_dir).fingerprint == fingerprint  # a copy elsewhere is the same data
    (path / "manifest.json").write_text((path / "manifest.json").read_text() + " ")
    assert TokenDataset.open(path).fingerprint != fingerprint
    index = path / "web" / "train-00000.idx.npy"
    before = TokenDataset.open(path).fingerprint
    np.save(index, np.load(index).astype(np.int32))  # same offsets, a different file
    assert TokenDataset.open(path).fingerprint != before


def test_pretrain_checks_token_ids_against_the_model_before_training(tmp_path: Path) -> None:
    data = write_dataset(
        tmp_path / "data", {"train": {"web": [[0, *range(2, 90), 1], [0, 96, 1]]}}, vocab_size=96
    )
    config = config_from_dict(tiny_config_dict(data, tmp_path / "run"))
    with pytest.raises(ConfigError) as info:
        pretrain(config)
    # the manifest's 96 cannot hold id 96 either, so leaving the value unset is not offered
    assert str(info.value) == (
        f"model.vocab_size 96 is too small for {data}: it holds token id 96 (vocab_size must be at least 97)"
    )
    assert not (tmp_path / "run").exists()


def _vocab_data(path: Path, vocab_size: int) -> Path:
    """A dataset whose largest token id is 89, made by a tokenizer of ``vocab_size`` ids (0: unknown)."""
    return write_dataset(path, {"train": {"web": [[0, *range(2, 90), 1]] * 8}}, vocab_size=vocab_size)


def _unset(raw: dict) -> dict:
    """``raw`` without ``model.vocab_size``: the config leaves it to the data."""
    raw["model"].pop("vocab_size")
    return raw


def test_an_unset_vocab_size_is_the_data_s(tmp_path: Path) -> None:
    """The model's embedding has the manifest's vocabulary, and the checkpoint's config records it."""
    data = _vocab_data(tmp_path / "data", 120)
    config = config_from_dict(_unset(tiny_config_dict(data, tmp_path / "run", train={"steps": 1})))
    assert config.to_dict()["model"]["vocab_size"] == VOCAB_FROM_DATA
    trainer = Trainer(config)
    try:
        assert trainer.model_config.vocab_size == 120
        assert tuple(trainer.model.tok_embeddings.weight.shape) == (120, 32)
        assert trainer.config.model["vocab_size"] == 120  # what a checkpoint's trainer state saves
    finally:
        trainer.close()


@pytest.mark.parametrize(
    ("manifest_vocab", "model_vocab", "error", "message"),
    [
        (
            120,
            64,
            ConfigError,
            "model.vocab_size 64 is too small for {data}: it holds token id 89 (vocab_size must be at "
            "least 90); leave model.vocab_size unset to take the data's 120",
        ),
        (
            120,
            100,
            ConfigError,
            "{data}: token vocabulary 120 exceeds the model's vocab_size 100; leave model.vocab_size "
            "unset to take the data's 120",
        ),
        (
            0,
            None,
            ConfigError,
            "{data}/manifest.json: records no vocab_size, so model.vocab_size must be set (to at least "
            "90, the largest token id + 1)",
        ),
        (
            50,
            None,
            DataError,
            "{data}/manifest.json: token id 89 is outside the vocabulary it records (vocab_size 50)",
        ),
    ],
    ids=["below-the-largest-id", "below-the-tokenizer", "unknown", "corrupt-manifest"],
)
def test_the_model_s_vocabulary_must_hold_the_data(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    manifest_vocab: int,
    model_vocab: int | None,
    error: type[Exception],
    message: str,
) -> None:
    """A set vocab_size is checked against the data's ids and tokenizer; an unset one needs the manifest's."""
    data = _vocab_data(tmp_path / "data", manifest_vocab)
    raw = _unset(tiny_config_dict(data, tmp_path / "run"))
    if model_vocab is not None:
        raw["model"]["vocab_size"] = model_vocab
    with pytest.raises(error) as info:
        pretrain(config_from_dict(raw))
    assert str(info.value) == message.format(data=data)
    assert main(["pretrain", str(write_toml(tmp_path / "c.toml", raw))]) == 2
    assert capsys.readouterr().err == f"herd: error: {message.format(data=data)}\n"
    assert not (tmp_path / "run").exists()


def test_a_documents_only_build_says_how_to_make_token_shards(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What `herd data build` without a tokenizer writes: documents and a manifest without splits."""
    data = tmp_path / "data"
    (data / "documents" / "web").mkdir(parents=True)
    (data / "documents" / "web" / "00000.jsonl.gz").write_bytes(gzip.compress(b'{"text": "a"}\n'))
    write_manifest(
        data, {"format": FORMAT, "recipe": "demo", "sources": {"web": {"documents": 1}}, "steps": {}}
    )
    config = write_toml(tmp_path / "c.toml", tiny_config_dict(data, tmp_path / "run"))
    assert main(["pretrain", str(config)]) == 2
    assert capsys.readouterr().err == (
        f"herd: error: {data}: holds no token shards (documents only); make them with "
        f"`herd data build RECIPE -o {data} --tokenizer PATH`\n"
    )
