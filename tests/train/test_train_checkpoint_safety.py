"""Checkpoints from elsewhere: nothing in them runs code; damaged shards and failed saves are named.

A planted payload is a pickle whose unpickling creates a marker file (what an
attacker's code would do first); each test first proves the payload is live,
then that resuming refuses it by name and the marker never appears.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import io
import json
import os
import pickle
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.distributed.checkpoint.filesystem import FileSystem

from conftest import tiny_config_dict, write_toml
from herd.cli import main
from herd.errors import CheckpointError
from herd.train import checkpointing
from herd.train.config import config_from_dict
from herd.train.loop import pretrain

STEP_4 = "checkpoints/step_00000004"
SHARD = "__0_0.distcp"


class _Plant:
    """Unpickling this touches ``marker``: any code could run in its place."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        return Path.touch, (self.marker,)


def _live_payload(marker: Path) -> bytes:
    """A pickle of a plant, checked to create ``marker`` when unpickled (then the marker is removed)."""
    payload = pickle.dumps(_Plant(marker))
    pickle.loads(payload)
    assert marker.exists()
    marker.unlink()
    return payload


def _resume(dataset_dir: Path, out: Path) -> None:
    pretrain(config_from_dict(tiny_config_dict(dataset_dir, out, train={"steps": 8})), resume=True)


def _rewrite_metadata(checkpoint: Path, change: Callable[[Any], None]) -> None:
    """Edit a checkpoint's DCP metadata (this test wrote it, so plain pickle may read it)."""
    path = checkpoint / ".metadata"
    metadata = pickle.loads(path.read_bytes())
    change(metadata)
    path.write_bytes(pickle.dumps(metadata))


def _storage(metadata: Any, fqn: str) -> Any:
    return next(index for index in metadata.storage_data if index.fqn == fqn)


def test_planted_pickle_as_metadata_is_refused(dataset_dir: Path, run_copy: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    (run_copy / STEP_4 / ".metadata").write_bytes(_live_payload(marker))
    with pytest.raises(
        CheckpointError, match=r"step_00000004/\.metadata: refused checkpoint metadata.*Path\.touch"
    ):
        _resume(dataset_dir, run_copy)
    assert not marker.exists()


def test_payload_inside_real_metadata_is_refused(dataset_dir: Path, run_copy: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    _live_payload(marker)

    def plant(metadata: Any) -> None:
        metadata.planner_data = _Plant(marker)

    _rewrite_metadata(run_copy / STEP_4, plant)
    with pytest.raises(CheckpointError, match=r"\.metadata: refused"):
        _resume(dataset_dir, run_copy)
    assert not marker.exists()


def _point_at(checkpoint: Path, fqn: str, payload: bytes) -> None:
    """Append ``payload`` to the shard and make the metadata read ``fqn``'s value from it."""
    shard = checkpoint / SHARD
    offset = shard.stat().st_size
    shard.write_bytes(shard.read_bytes() + payload)

    def repoint(metadata: Any) -> None:
        index = _storage(metadata, fqn)
        metadata.storage_data[index] = dataclasses.replace(
            metadata.storage_data[index], offset=offset, length=len(payload)
        )

    _rewrite_metadata(checkpoint, repoint)


def _torch_saved(value: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def test_planted_value_in_a_shard_is_refused(dataset_dir: Path, run_copy: Path, tmp_path: Path) -> None:
    """DCP's own planner would torch.load(weights_only=False) an optimizer hyperparameter's bytes."""
    marker = tmp_path / "pwned"
    payload = _torch_saved(_Plant(marker))
    torch.load(io.BytesIO(payload), weights_only=False)  # live
    assert marker.exists()
    marker.unlink()
    _point_at(run_copy / STEP_4, "optim.param_groups.0.lr", payload)
    with pytest.raises(CheckpointError, match=rf"{SHARD}: refused a value that is not plain data"):
        _resume(dataset_dir, run_copy)
    assert not marker.exists()


def test_a_value_of_the_wrong_type_is_named(dataset_dir: Path, run_copy: Path) -> None:
    _point_at(run_copy / STEP_4, "optim.param_groups.0.lr", _torch_saved("fast"))
    with pytest.raises(
        CheckpointError, match=rf"{SHARD}: optim.param_groups.0.lr holds a str, expected a float"
    ):
        _resume(dataset_dir, run_copy)


def test_metadata_naming_a_file_outside_the_checkpoint_is_refused(dataset_dir: Path, run_copy: Path) -> None:
    outside = run_copy / "outside.distcp"
    shutil.copyfile(run_copy / STEP_4 / SHARD, outside)

    def escape(metadata: Any) -> None:
        for index, info in metadata.storage_data.items():
            metadata.storage_data[index] = dataclasses.replace(info, relative_path="../../outside.distcp")

    _rewrite_metadata(run_copy / STEP_4, escape)
    with pytest.raises(CheckpointError, match=r"'\.\./\.\./outside\.distcp' leaves"):
        _resume(dataset_dir, run_copy)


def test_planted_pickle_as_rng_state_is_refused(dataset_dir: Path, run_copy: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = _live_payload(marker)
    checkpoint = run_copy / STEP_4
    (checkpoint / "rng-0.json").write_bytes(payload)
    with pytest.raises(CheckpointError, match=r"rng-0\.json: corrupt RNG state"):
        _resume(dataset_dir, run_copy)
    # The pickle format of earlier herd versions is not read either.
    (checkpoint / "rng-0.json").unlink()
    (checkpoint / "rng-0.pt").write_bytes(payload)
    with pytest.raises(CheckpointError, match=r"rng-0\.pt: RNG state pickled by an earlier herd"):
        _resume(dataset_dir, run_copy)
    assert not marker.exists()


def test_cli_resume_from_a_planted_checkpoint_is_one_line(
    dataset_dir: Path, run_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "pwned"
    (run_copy / STEP_4 / ".metadata").write_bytes(_live_payload(marker))
    config = write_toml(tmp_path / "c.toml", tiny_config_dict(dataset_dir, run_copy, train={"steps": 4}))
    assert main(["pretrain", str(config), "--resume"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert err.startswith("herd: error: ") and "step_00000004/.metadata: refused" in err
    assert "weights_only" not in err
    assert not marker.exists()


# ---- damaged shards ------------------------------------------------------------------------------


def _truncate(checkpoint: Path) -> None:
    shard = checkpoint / SHARD
    shard.write_bytes(shard.read_bytes()[:-100])


def _remove(checkpoint: Path) -> None:
    (checkpoint / SHARD).unlink()


def _garble_metadata(checkpoint: Path) -> None:
    metadata = checkpoint / ".metadata"
    metadata.write_bytes(metadata.read_bytes()[: metadata.stat().st_size // 2])


def _corrupt_trainer_state(checkpoint: Path) -> None:
    state = json.loads((checkpoint / "trainer.json").read_text())
    state["step"] = "four"
    (checkpoint / "trainer.json").write_text(json.dumps(state))


def _break_a_record(checkpoint: Path) -> None:
    """Zero the zip directory at the end of the first record (a torch.save archive) of the shard."""
    metadata = pickle.loads((checkpoint / ".metadata").read_bytes())
    first = min(metadata.storage_data.values(), key=lambda info: info.offset)
    shard = checkpoint / SHARD
    data = bytearray(shard.read_bytes())
    end = first.offset + first.length
    data[end - 22 : end] = bytes(22)
    shard.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (_truncate, rf"step_00000004/{SHARD}: truncated checkpoint shard: \d+ bytes"),
        (_remove, rf"step_00000004/{SHARD}: checkpoint shard file missing"),
        (_garble_metadata, r"step_00000004/\.metadata: corrupt checkpoint metadata"),
        (_break_a_record, rf"step_00000004/{SHARD}: unreadable checkpoint shard"),
        (
            _corrupt_trainer_state,
            r"trainer\.json: corrupt trainer state \(step: expected int >= 0, got 'four'\)",
        ),
    ],
    ids=["truncated", "missing", "garbled-metadata", "broken-record", "trainer-state"],
)
def test_damaged_checkpoint_names_the_file(
    dataset_dir: Path, run_copy: Path, damage: Callable[[Path], None], match: str
) -> None:
    """DCP keeps no checksums, so a bit flip inside tensor bytes is not detectable (see herd.train.dcp_io)."""
    damage(run_copy / STEP_4)
    with pytest.raises(CheckpointError, match=match):
        _resume(dataset_dir, run_copy)


# ---- failed saves ----------------------------------------------------------------------------------


class _FullDisk:
    """A write stream that takes ``room`` bytes, then fails as a full disk does."""

    def __init__(self, stream: Any, room: int) -> None:
        self.stream, self.room = stream, room

    def write(self, data: Any) -> int:
        size = memoryview(data).nbytes
        if size > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= size
        return self.stream.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def test_disk_full_in_the_middle_of_a_save(
    dataset_dir: Path, run_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = {p.name: p.read_bytes() for p in (run_copy / STEP_4).iterdir()}
    original = FileSystem.create_stream

    @contextlib.contextmanager
    def filling(self: FileSystem, path: Any, mode: str) -> Iterator[Any]:
        with original(self, path, mode) as stream:
            yield _FullDisk(stream, 4096) if "w" in mode and str(path).endswith(".distcp") else stream

    monkeypatch.setattr(FileSystem, "create_stream", filling)
    with pytest.raises(
        CheckpointError, match=r"No space left on device; the previous checkpoint .*step_00000004 is intact"
    ):
        _resume(dataset_dir, run_copy)
    assert {p.name: p.read_bytes() for p in (run_copy / STEP_4).iterdir()} == before
    assert [p.name for p in (run_copy / "checkpoints").iterdir()] == ["step_00000004"]  # no temporary


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs (needs root); skipped where it cannot be mounted."""
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True, check=False
    )
    if result.returncode:
        pytest.skip(f"cannot mount a tmpfs: {result.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_real_full_disk(dataset_dir: Path, finished_run: Path, small_disk: Path) -> None:
    out = Path(shutil.copytree(finished_run, small_disk / "run"))
    filler = small_disk / "filler"
    filler.write_bytes(bytes(shutil.disk_usage(small_disk).free - 100_000))
    with pytest.raises(
        CheckpointError, match=r"step_00000008 failed: No space left on device.*step_00000004 is intact"
    ):
        _resume(dataset_dir, out)
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step_00000004"]
    filler.unlink()
    _resume(dataset_dir, out)
    assert checkpointing.latest_checkpoint(out).name == "step_00000008"
