"""herd.io.atomic: output appears whole or not at all, and one cleaner finds every kind of leftover."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from herd.errors import HerdError
from herd.io import atomic
from herd.io.atomic import (
    atomic_dir,
    atomic_file,
    remove_stale_temporaries,
    shared_staging_path,
    staging_prefix,
    write_atomically,
)


def entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def dead_pid() -> int:
    """The id of a process that has ended."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.fixture
def live_pid() -> Iterator[int]:
    """The id of a process that is alive for the whole test."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    yield process.pid
    process.kill()
    process.wait()


def test_a_file_appears_whole_with_the_permissions_open_gives(tmp_path: Path) -> None:
    dst = tmp_path / "sub" / "out.json"
    with atomic_file(dst) as tmp:
        assert tmp.name.startswith(staging_prefix(dst)) and tmp.name.endswith(".tmp")
        tmp.write_text("new\n")
        assert not dst.exists()
    assert dst.read_text() == "new\n" and entries(dst.parent) == ["out.json"]
    mask = os.umask(0)
    os.umask(mask)
    assert dst.stat().st_mode & 0o777 == 0o666 & ~mask


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def private_copy(path: Path, data: bytes) -> None:
    """Write ``path`` as libraries that go through their own private temporary do (safetensors: 0600)."""
    fd, name = tempfile.mkstemp(dir=path.parent)
    os.write(fd, data)
    os.close(fd)
    os.replace(name, path)


def test_current_umask_reads_without_changing_it(umask_022: None) -> None:
    assert atomic.current_umask() == 0o022
    os.umask(0o027)
    assert atomic.current_umask() == 0o027
    assert os.umask(0o022) == 0o027


def test_a_file_a_library_wrote_privately_is_readable_like_any_file(tmp_path: Path, umask_022: None) -> None:
    dst = tmp_path / "model.safetensors"
    with atomic_file(dst) as tmp:
        private_copy(tmp, b"weights")
        assert tmp.stat().st_mode & 0o777 == 0o600
    assert dst.read_bytes() == b"weights" and dst.stat().st_mode & 0o777 == 0o644


def test_every_entry_of_a_directory_is_readable_like_any_file(tmp_path: Path, umask_022: None) -> None:
    dst = tmp_path / "ckpt"
    with atomic_dir(dst) as tmp:
        (tmp / "sub").mkdir(mode=0o700)
        private_copy(tmp / "sub" / "shard.bin", b"x")
        (tmp / "config.json").write_text("{}")
        (tmp / "tool").write_text("#!/bin/sh\n")
        (tmp / "tool").chmod(0o700)
        outside = tmp_path / "secret"
        outside.write_text("not herd's")
        outside.chmod(0o600)
        (tmp / "link").symlink_to(outside)
    modes = {p.name: p.lstat().st_mode & 0o777 for p in [dst, *dst.rglob("*")] if not p.is_symlink()}
    assert modes == {"ckpt": 0o755, "sub": 0o755, "shard.bin": 0o644, "config.json": 0o644, "tool": 0o744}
    assert outside.stat().st_mode & 0o777 == 0o600  # a link's target is not herd's output


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    dst = tmp_path / "out.json"
    dst.write_text("old\n")
    with pytest.raises(HerdError, match="bad input"), atomic_file(dst) as tmp:
        tmp.write_text("half")
        raise HerdError("bad input")
    assert dst.read_text() == "old\n" and entries(tmp_path) == ["out.json"]


def test_an_interrupt_removes_the_temporary(tmp_path: Path) -> None:
    dst = tmp_path / "out.bin"

    def interrupted(f: object) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomically(dst, interrupted)
    assert entries(tmp_path) == []


def test_a_full_disk_is_one_error_naming_the_destination(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An OSError without a file name, or a library's own error when the disk refuses a probe, becomes the
    file system's OSError naming dst; the temporary is gone."""
    dst = tmp_path / "out.bin"

    def no_space(f: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OSError) as caught:
        write_atomically(dst, no_space)
    assert (caught.value.errno, caught.value.filename) == (errno.ENOSPC, str(dst))
    monkeypatch.setattr(atomic, "probe_write", lambda dst: OSError(errno.EROFS, os.strerror(errno.EROFS)))
    with pytest.raises(OSError) as caught, atomic_file(dst):
        raise RuntimeError("[enforce fail at inline_container.cc] unexpected pos")
    assert (caught.value.errno, caught.value.filename) == (errno.EROFS, str(dst))
    assert isinstance(caught.value.__cause__, RuntimeError) and entries(tmp_path) == []
    monkeypatch.setattr(atomic, "probe_write", lambda dst: None)  # the disk is fine: the error is the bug's
    with pytest.raises(RuntimeError, match="a bug"), atomic_file(dst):
        raise RuntimeError("a bug")


def test_a_directory_replaces_a_full_one_only_when_complete(tmp_path: Path) -> None:
    dst = tmp_path / "ckpt"
    dst.mkdir()
    (dst / "old.bin").write_text("old")
    with pytest.raises(ValueError), atomic_dir(dst) as tmp:
        (tmp / "new.bin").write_text("half")
        raise ValueError("failed")
    assert entries(dst) == ["old.bin"] and entries(tmp_path) == ["ckpt"]
    with atomic_dir(dst) as tmp:
        (tmp / "new.bin").write_text("new")
    assert entries(dst) == ["new.bin"] and entries(tmp_path) == ["ckpt"]


def test_a_shared_staging_directory_has_a_fixed_name_and_replaces_a_stale_one(tmp_path: Path) -> None:
    dst = tmp_path / "step_00000004"
    stale = shared_staging_path(dst)
    stale.mkdir()
    (stale / "half.distcp").write_text("a killed job's")
    staging = atomic_dir(dst, shared=True)
    assert staging.create() == stale == tmp_path / ".step_00000004.tmp" and entries(stale) == []
    (stale / "whole.distcp").write_text("this job's")
    staging.commit()
    assert entries(tmp_path) == ["step_00000004"] and entries(dst) == ["whole.distcp"]


def test_leftovers_of_a_dead_process_are_removed_and_a_moved_aside_directory_put_back(
    tmp_path: Path, dead_pid: int, live_pid: int
) -> None:
    dst = tmp_path / "out"
    aside = tmp_path / (staging_prefix(dst, dead_pid) + "old")
    aside.mkdir()
    (aside / "weights").write_text("the previous checkpoint")
    (tmp_path / (staging_prefix(dst, dead_pid) + "abcd1234.tmp")).mkdir()
    running = tmp_path / (staging_prefix(dst, live_pid) + "efgh5678.tmp")
    running.write_text("being written")
    elsewhere = tmp_path / f".out.herd-otherhost-{dead_pid}.ijkl9012.tmp"
    elsewhere.write_text("another host's process: nothing here says whether it lives")
    unowned = tmp_path / ".out.tmp"
    unowned.write_text("no owner")
    done = remove_stale_temporaries(tmp_path)
    assert [(d.path.name, d.destination, d.pid, d.restored) for d in done] == [
        (f".out.herd-{atomic._HOST}-{dead_pid}.abcd1234.tmp", dst, dead_pid, False),
        (aside.name, dst, dead_pid, True),
    ]
    assert (dst / "weights").read_text() == "the previous checkpoint"
    assert entries(tmp_path) == sorted(["out", running.name, elsewhere.name, unowned.name])


def test_an_exclusive_cleaning_removes_every_temporary_of_the_scheme(tmp_path: Path, live_pid: int) -> None:
    """A caller that holds the folder (a data build under its lock) removes owner-less temporaries and
    those of other processes too, in subdirectories with ``recursive``; a user's look-alikes stay."""
    nested = tmp_path / "documents" / "web"
    nested.mkdir(parents=True)
    stale = [
        nested / ".00000.jsonl.gz.tmp",
        nested / (staging_prefix(nested / "00001.jsonl.gz", live_pid) + "abcd1234.tmp"),
        tmp_path / ".manifest.json.tmp",
    ]
    for path in stale:
        path.write_text("half")
    kept = [tmp_path / "notes.tmp", nested / "..tmp"]
    for path in kept:
        path.write_text("not herd's")
    assert remove_stale_temporaries(tmp_path / "documents") == []
    done = remove_stale_temporaries(tmp_path, recursive=True, exclusive=True)
    assert sorted(d.path for d in done) == sorted(stale) and not any(p.exists() for p in stale)
    assert all(p.exists() for p in kept)


def test_names_limit_the_cleaning_to_some_destinations(tmp_path: Path) -> None:
    """A moved-aside copy whose destination exists again is deleted, not put back."""
    (tmp_path / "step_00000002").mkdir()
    for name in (".step_00000001.old", ".step_00000002.old", ".notes.txt.tmp"):
        (tmp_path / name).mkdir()
    done = remove_stale_temporaries(tmp_path, names=lambda name: name.startswith("step_"), exclusive=True)
    assert [(d.path.name, d.restored) for d in done] == [
        (".step_00000001.old", True),
        (".step_00000002.old", False),
    ]
    assert entries(tmp_path) == [".notes.txt.tmp", "step_00000001", "step_00000002"]
