"""Token shards: format validation, document ids, mixture proportions, deterministic resumable order."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from herd.train.dataset import DataError, MixtureSampler, TokenDataset, read_windows, write_dataset


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
