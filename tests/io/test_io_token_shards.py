"""The herd-tokens-v1 format: the writer and the reader agree, and the manifest is validated key by key."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from herd.errors import InputError
from herd.io.token_shards import (
    FORMAT,
    MANIFEST,
    DataError,
    ShardWriter,
    TokenDataset,
    token_dtype,
    write_dataset,
    write_manifest,
)

DOCS = [[5, 6, 1], [7, 8, 9, 70000, 1], [], [11, 1], [12, 13, 14, 1]]


def _documents(tokens: np.ndarray, starts: np.ndarray) -> list[list[int]]:
    return [tokens[a:b].tolist() for a, b in itertools.pairwise(starts)]


def test_writer_and_reader_round_trip(tmp_path: Path) -> None:
    """Documents come back whole and in order, split into shards at document boundaries, with their sizes."""
    dtype = token_dtype(70001)
    writer = ShardWriter(tmp_path, "tokens/web/train", dtype, tokens_per_shard=6)
    for doc in DOCS:
        writer.add(doc, num_bytes=10 * len(doc))
    writer.flush()
    manifest = {"format": FORMAT, "dtype": dtype, "vocab_size": 70001, "recipe": "x"}
    manifest["splits"] = {"train": {"web": {"weight": 2.0, "shards": writer.entries}}}
    assert write_manifest(tmp_path, manifest) == tmp_path / MANIFEST

    assert dtype == "uint32" and token_dtype(2**16) == "uint16"
    assert [e["tokens"] for e in writer.entries] == [
        "tokens/web/train-00000.bin",
        "tokens/web/train-00001.bin",
    ]
    assert [e["max_token_id"] for e in writer.entries] == [70000, 14]
    dataset = TokenDataset.open(tmp_path, model_vocab_size=70001)
    (web,) = dataset.splits["train"]
    assert (web.name, web.weight, dataset.vocab_size) == ("web", 2.0, 70001)
    assert [d for s in web.shards for d in _documents(np.asarray(s.tokens), s.starts)] == DOCS
    assert [s.num_tokens for s in web.shards] == [8, 6]
    assert web.num_bytes == 10 * sum(map(len, DOCS))
    assert web.windows(3).tolist() == [[0, 0], [0, 3], [1, 0]]  # 4-token windows inside one shard
    assert len(dataset.fingerprint) == 64


def test_write_dataset_writes_one_shard_per_source(tmp_path: Path) -> None:
    write_dataset(
        tmp_path,
        {"train": {"a": [[0, 3, 1], [0, 4, 4, 1]], "b": [[0, 1]]}, "val": {"a": [[0, 2, 1]]}},
        vocab_size=8,
        weights={"a": 3.0},
        num_bytes={"train": {"a": 40}},
    )
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert manifest["splits"]["train"]["a"] == {
        "weight": 3.0,
        "shards": [
            {
                "tokens": "a/train-00000.bin",
                "index": "a/train-00000.idx.npy",
                "num_tokens": 7,
                "num_documents": 2,
                "num_bytes": 40,
                "max_token_id": 4,
            }
        ],
    }
    dataset = TokenDataset.open(tmp_path)
    assert [s.name for s in dataset.splits["train"]] == ["a", "b"] and dataset.splits["train"][
        1
    ].weight == 1.0
    assert np.asarray(dataset.splits["val"][0].shards[0].tokens).tolist() == [0, 2, 1]


def test_later_shards_of_an_interrupted_write_are_removed(tmp_path: Path) -> None:
    first = ShardWriter(tmp_path, "t/train", "uint16", tokens_per_shard=2)
    for doc in DOCS[:4]:
        first.add([t % 100 for t in doc], 0)
    first.flush()
    again = ShardWriter(tmp_path, "t/train", "uint16", tokens_per_shard=100)
    again.add([1, 2], 0)
    again.flush()
    again.remove_later_shards()
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == ["train-00000.bin", "train-00000.idx.npy"]


def test_the_dataset_s_largest_token_id(tmp_path: Path) -> None:
    """Over every split and source: the manifest's max_token_id, else each shard's largest token."""
    write_dataset(
        tmp_path, {"train": {"a": [[0, 9, 1]], "b": [[0, 3]]}, "val": {"a": [[0, 12, 1]]}}, vocab_size=16
    )
    assert TokenDataset.open(tmp_path).max_token_id() == 12
    _edit(tmp_path, lambda m: m["splits"]["val"]["a"]["shards"][0].update(max_token_id=14))
    assert TokenDataset.open(tmp_path).max_token_id() == 14  # the manifest is trusted: no token is read
    _edit(tmp_path, lambda m: m["splits"]["val"]["a"]["shards"][0].pop("max_token_id"))
    assert TokenDataset.open(tmp_path).max_token_id() == 12


def test_the_manifest_names_its_tokenizer(tmp_path: Path) -> None:
    """``tokenizer`` is a directory inside the dataset; without the key there is none."""
    write_dataset(tmp_path, {"train": {"a": [[0, 2, 1]]}}, vocab_size=4)
    assert TokenDataset.open(tmp_path).tokenizer_dir is None
    (tmp_path / "tok" / "v1").mkdir(parents=True)
    _edit(tmp_path, lambda m: m.update(tokenizer="tok/v1"))
    assert TokenDataset.open(tmp_path).tokenizer_dir == tmp_path / "tok" / "v1"


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("../tok", r"manifest\.json 'tokenizer': path '\.\./tok' leaves"),
        ("/etc", r"manifest\.json 'tokenizer': path '/etc' is absolute"),
        (7, r"manifest\.json: tokenizer must be a directory name inside the dataset, got 7"),
        ("missing", r"manifest\.json: tokenizer 'missing' names no directory \(.*missing is missing\)"),
    ],
    ids=["escapes", "absolute", "not-a-name", "missing"],
)
def test_a_bad_tokenizer_entry_is_named(tmp_path: Path, name: object, match: str) -> None:
    data = tmp_path / "data"
    write_dataset(data, {"train": {"a": [[0, 2, 1]]}}, vocab_size=4)
    (tmp_path / "tok").mkdir()  # what "../tok" would reach
    _edit(data, lambda m: m.update(tokenizer=name))
    with pytest.raises(DataError, match=match):
        TokenDataset.open(data)


def test_a_documents_only_manifest_says_how_to_make_shards(tmp_path: Path) -> None:
    """A data build without a tokenizer writes a manifest without splits: one line saying what to run."""
    write_manifest(tmp_path, {"format": FORMAT, "recipe": "demo", "sources": {}, "steps": {}})
    with pytest.raises(DataError) as info:
        TokenDataset.open(tmp_path)
    assert str(info.value) == (
        f"{tmp_path}: holds no token shards (documents only); make them with "
        f"`herd data build RECIPE -o {tmp_path} --tokenizer PATH`"
    )


def test_max_token_id_checks_the_vocabulary_without_reading_the_shard(tmp_path: Path) -> None:
    """The recorded id answers the vocabulary check; a manifest from before it existed is read in full."""
    write_dataset(tmp_path, {"train": {"a": [[0, 9, 1]]}}, vocab_size=10)
    with pytest.raises(DataError, match=r"train-00000\.bin: token id 9 is outside the model's vocabulary"):
        TokenDataset.open(tmp_path, model_vocab_size=9)
    _edit(tmp_path, lambda m: _shard(m).update(max_token_id=1))  # what the reader trusts: no token is read
    TokenDataset.open(tmp_path, model_vocab_size=9)
    _edit(tmp_path, lambda m: _shard(m).pop("max_token_id"))
    with pytest.raises(DataError, match=r"token id 9 is outside the model's vocabulary \(vocab_size 9"):
        TokenDataset.open(tmp_path, model_vocab_size=9)


def _edit(path: Path, change: Callable[[dict], object]) -> None:
    manifest = json.loads((path / MANIFEST).read_text())
    change(manifest)
    (path / MANIFEST).write_text(json.dumps(manifest))


def _shard(manifest: dict) -> dict:
    return manifest["splits"]["train"]["a"]["shards"][0]


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda m: m.update(format="herd-tokens-v0"), r"format 'herd-tokens-v0', expected 'herd-tokens-v1'"),
        (lambda m: m.update(dtype="int8"), r"dtype 'int8', expected uint16 or uint32"),
        (lambda m: m["splits"].pop("train"), r"no train split"),
        (lambda m: _shard(m).update(max_token_id=-1), r"'max_token_id' must be an integer >= 0, got -1"),
        (lambda m: _shard(m).update(num_bytes=1.5), r"'num_bytes' must be an integer >= 0, got 1.5"),
        (lambda m: _shard(m).update(index="../a.idx.npy"), r"train/a shard 0 'index': path .* leaves"),
        (lambda m: _shard(m).update(num_documents=2), r"corrupt document index: expected 3 ascending"),
    ],
    ids=["format", "dtype", "train", "max-id", "bytes", "outside", "documents"],
)
def test_manifest_is_validated_key_by_key(
    tmp_path: Path, change: Callable[[dict], object], match: str
) -> None:
    write_dataset(tmp_path, {"train": {"a": [[0, 2, 1]]}}, vocab_size=4)
    _edit(tmp_path, change)
    with pytest.raises(DataError, match=match) as info:
        TokenDataset.open(tmp_path)
    assert isinstance(info.value, InputError)


def test_old_locations_are_deprecated_aliases(tmp_path: Path) -> None:
    import herd.data.recipe.tokenize as tokenize
    import herd.io.token_shards as token_shards
    import herd.train.dataset as dataset

    for name in ("DTYPES", "FORMAT", "MANIFEST", "Shard", "TokenDataset", "write_dataset"):
        with pytest.warns(DeprecationWarning, match=f"herd.io.token_shards.{name}"):
            assert getattr(dataset, name) is getattr(token_shards, name)
    with pytest.warns(DeprecationWarning, match="herd.io.token_shards.SHARD_SUFFIXES"):
        assert tokenize.SHARD_SUFFIXES == (".bin", ".idx.npy")
    with pytest.raises(AttributeError):
        dataset.no_such_name  # noqa: B018
