"""``herd convert`` never destroys what herd did not write, and never leaves a partial or stray file.

Each test states a user-visible rule and checks it on disk: which bytes are
still there, which entries the directory holds, what the one error line says.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import gguf
import pytest
import torch

from herd.checkpoint import hf, meta
from herd.checkpoint.base import CheckpointInfo
from herd.checkpoint.destination import MARKER_NAME
from herd.checkpoint.hf import write_hf
from herd.checkpoint.load import load_model, model_tensors
from herd.checkpoint.meta import write_meta
from herd.cli import main
from herd.errors import HerdError
from herd.io.atomic import staging_prefix
from herd.model.build import build_model
from herd.model.transformer import Transformer

CliRun = Callable[[list[str]], tuple[int, str]]
# The tiny source models carry no tokenizer; a GGUF without one must be asked for explicitly.
NO_VOCAB = {"hf": [], "meta": [], "gguf": ["--no-vocab"]}


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every entry under ``root`` (hidden ones included) with its bytes; directories map to None."""
    if root.is_file():
        return {".": root.read_bytes()}
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))
    }


def hidden(folder: Path) -> list[str]:
    """Entries of ``folder`` whose names start with a dot (where herd's staging entries would be)."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def same_weights(path: Path, model: Transformer) -> bool:
    loaded = dict(model_tensors(load_model(path)))
    return all(torch.equal(loaded[name], t) for name, t in model_tensors(model))


# ---- the source and its directories are never a destination -----------------------------------


@pytest.mark.parametrize("force", [[], ["--force"]], ids=["plain", "force"])
def test_converting_into_the_directory_of_the_source_keeps_it(
    tiny_gguf: Path, tmp_path: Path, herd_cli: CliRun, force: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reported data loss: ``herd convert m/model.gguf m --to hf`` deleted the GGUF and exited 0."""
    (tmp_path / "m").mkdir()
    shutil.copy(tiny_gguf, tmp_path / "m" / "model.gguf")
    before = snapshot(tmp_path)
    monkeypatch.chdir(tmp_path)
    code, err = herd_cli(["convert", "m/model.gguf", "m", "--to", "hf", *force])
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("herd: error: m: ") and "source" in err
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("dst", "fmt"),
    [("hf", "meta"), ("hf/sub", "meta"), ("hf/sub/deeper", "hf"), (".", "hf"), ("hf/config.json", "gguf")],
    ids=["is-source", "inside", "deep-inside", "parent", "file-inside"],
)
def test_destination_that_is_inside_or_contains_the_source_is_refused(
    tiny_hf: Path, tmp_path: Path, herd_cli: CliRun, dst: str, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(tiny_hf, tmp_path / "hf")
    before = snapshot(tmp_path)
    monkeypatch.chdir(tmp_path)
    code, err = herd_cli(["convert", "hf", dst, "--to", fmt, "--force"])
    assert code == 2 and len(err.splitlines()) == 1 and "source" in err
    assert snapshot(tmp_path) == before


# ---- what an existing destination may be --------------------------------------------------------


def _user_dir(dst: Path, sources: dict[str, Path]) -> None:
    dst.mkdir()
    (dst / "notes.txt").write_text("a week of work")
    (dst / "data").mkdir()
    (dst / "data" / "table.csv").write_text("1,2\n")


def _herd_output(fmt: str) -> Callable[[Path, dict[str, Path]], None]:
    def make(dst: Path, sources: dict[str, Path]) -> None:
        shutil.copytree(sources[fmt], dst)

    return make


def _herd_output_plus_user_file(dst: Path, sources: dict[str, Path]) -> None:
    shutil.copytree(sources["hf"], dst)
    (dst / "README.md").write_text("my notes on this model")


def _file(content: bytes) -> Callable[[Path, dict[str, Path]], None]:
    def make(dst: Path, sources: dict[str, Path]) -> None:
        dst.write_bytes(content)

    return make


def _gguf_file(dst: Path, sources: dict[str, Path]) -> None:
    shutil.copy(sources["gguf"], dst)


def _link_to_herd_output(dst: Path, sources: dict[str, Path]) -> None:
    shutil.copytree(sources["hf"], dst.with_name("real"))
    dst.symlink_to(dst.with_name("real"))


DESTINATIONS = {
    # name: (make the existing destination, --to, exit without --force, exit with --force)
    "absent": (None, "hf", 0, 0),
    "empty-dir": (lambda dst, _: dst.mkdir(), "hf", 0, 0),
    "user-dir": (_user_dir, "hf", 2, 2),
    "user-dir-to-meta": (_user_dir, "meta", 2, 2),
    "herd-hf-output": (_herd_output("hf"), "hf", 2, 0),
    "herd-meta-output": (_herd_output("meta"), "meta", 2, 0),
    "herd-meta-output-to-hf": (_herd_output("meta"), "hf", 2, 2),
    "herd-output-plus-user-file": (_herd_output_plus_user_file, "hf", 2, 2),
    "user-file-to-hf": (_file(b"my thesis"), "hf", 2, 2),
    "user-file-to-gguf": (_file(b"my thesis"), "gguf", 2, 2),
    "gguf-file": (_gguf_file, "gguf", 2, 0),
    "symlink": (_link_to_herd_output, "hf", 2, 2),
}


@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
@pytest.mark.parametrize("case", list(DESTINATIONS))
def test_existing_destination_rules(
    case: str,
    force: bool,
    tiny_hf: Path,
    tiny_meta2: Path,
    tiny_gguf: Path,
    tiny_model: Transformer,
    tmp_path: Path,
    herd_cli: CliRun,
) -> None:
    """Only a herd output of the target format (or a GGUF file) is replaced, and only with --force."""
    make, fmt, plain_code, force_code = DESTINATIONS[case]
    source_model = build_model(tiny_model.config, seed=99)  # different weights from the fixtures' model
    src = write_hf(tmp_path / "src", CheckpointInfo(tiny_model.config), model_tensors(source_model))
    dst = tmp_path / "out" / ("model.gguf" if fmt == "gguf" else "model")
    dst.parent.mkdir()
    if make is not None:
        make(dst, {"hf": tiny_hf, "meta": tiny_meta2, "gguf": tiny_gguf})
    before = snapshot(tmp_path / "out")
    code, err = herd_cli(
        ["convert", str(src), str(dst), "--to", fmt, *NO_VOCAB[fmt], *(["--force"] if force else [])]
    )
    assert code == (force_code if force else plain_code), err
    if code == 0:
        assert same_weights(dst, source_model)
    else:
        assert len(err.splitlines()) == 1 and str(dst) in err
        assert snapshot(tmp_path / "out") == before
    assert hidden(dst.parent) == []


def test_writers_replace_their_own_output_and_nothing_else(tiny_model: Transformer, tmp_path: Path) -> None:
    """The library writers (a training run exports with write_hf) replace only a herd checkpoint of their format."""
    info = CheckpointInfo(tiny_model.config)
    dst = write_hf(tmp_path / "hf", info, model_tensors(tiny_model))
    other = build_model(tiny_model.config, seed=2)
    write_hf(dst, info, model_tensors(other))  # a resumed run exporting again
    assert same_weights(dst, other)
    (dst / "notes.txt").write_text("mine")
    with pytest.raises(HerdError, match=r"holds notes\.txt"):
        write_hf(dst, info, model_tensors(tiny_model))
    assert (dst / "notes.txt").read_text() == "mine" and same_weights(dst, other)
    with pytest.raises(HerdError, match="holds a herd hf checkpoint, not meta"):
        write_meta(tmp_path / "hf", info, model_tensors(tiny_model))
    assert hidden(tmp_path) == []


# ---- leftovers of killed conversions ------------------------------------------------------------

_KILLED_CHILD = """
import os, signal, sys
from herd.cli import main
{patch}
main(sys.argv[1:])
"""
_KILL_AFTER_FIRST_SHARD = """
from herd.checkpoint import hf
real = hf.save_file
def save_then_die(*args, **kwargs):
    real(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)
hf.save_file = save_then_die
"""
_KILL_BETWEEN_RENAMES = """
real = os.rename
def rename(src, dst):
    if str(src).endswith(".tmp"):  # the complete new checkpoint, about to take the old one's place
        os.kill(os.getpid(), signal.SIGKILL)
    real(src, dst)
os.rename = rename
"""


def run_killed(patch: str, argv: list[str]) -> None:
    """Run ``herd ARGV`` in a child process that SIGKILLs itself at the point ``patch`` sets."""
    code = textwrap.dedent(_KILLED_CHILD).format(patch=patch)
    child = subprocess.run([sys.executable, "-c", code, *argv, "--quiet"], capture_output=True, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()


def test_leftover_of_a_killed_conversion_is_removed_by_the_next_run(
    tiny_hf: Path, tiny_model: Transformer, tmp_path: Path, herd_cli: CliRun
) -> None:
    out = tmp_path / "out"
    run_killed(_KILL_AFTER_FIRST_SHARD, ["convert", str(tiny_hf), str(out), "--to", "hf"])
    [leftover] = hidden(tmp_path)
    assert leftover.startswith(".out.") and leftover.endswith(".tmp") and not out.exists()
    assert sum(f.stat().st_size for f in (tmp_path / leftover).iterdir()) > 500_000  # the weights written
    code, err = herd_cli(["convert", str(tiny_hf), str(out), "--to", "hf"])
    assert code == 0 and leftover in err  # one warning line says what was removed
    assert hidden(tmp_path) == [] and same_weights(out, tiny_model)


@pytest.fixture
def live_pid() -> Iterator[int]:
    """The id of a process that is alive for the whole test."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    yield process.pid
    process.kill()
    process.wait()


def test_staging_entry_of_a_live_process_is_left_alone(
    tiny_hf: Path, tmp_path: Path, herd_cli: CliRun, live_pid: int
) -> None:
    out = tmp_path / "out"
    running = tmp_path / (staging_prefix(out, live_pid) + "abcd1234.tmp")
    running.mkdir()
    (running / "part-00000").write_bytes(b"being written")
    look_alike = tmp_path / ".out.someone-else.tmp"  # not herd's pattern
    look_alike.write_text("not ours")
    code, err = herd_cli(["convert", str(tiny_hf), str(out), "--to", "hf"])
    assert code == 0 and err == ""
    assert hidden(tmp_path) == sorted([running.name, look_alike.name])
    assert (running / "part-00000").read_bytes() == b"being written"


def test_kill_between_the_renames_of_a_replacement_restores_the_previous_checkpoint(
    tiny_hf: Path, tiny_model: Transformer, tmp_path: Path, herd_cli: CliRun
) -> None:
    out = tmp_path / "out"
    shutil.copytree(tiny_hf, out)
    before = snapshot(out)
    config = tiny_model.config
    other = write_hf(tmp_path / "other", CheckpointInfo(config), model_tensors(build_model(config, seed=1)))
    run_killed(_KILL_BETWEEN_RENAMES, ["convert", str(other), str(out), "--to", "hf", "--force"])
    assert not out.exists() and len(hidden(tmp_path)) == 2  # the old one aside, the new one staged
    code, err = herd_cli(["convert", str(other), str(out), "--to", "hf"])  # no --force: restore, then refuse
    assert code == 2 and "restored" in err and "--force" in err
    assert snapshot(out) == before and hidden(tmp_path) == []


# ---- a full or read-only disk -------------------------------------------------------------------

WRITERS = {
    # format: (object, attribute) of the call that writes the bulk of the data
    "hf": (hf, "save_file"),
    "meta": (meta.torch, "save"),
    "gguf": (gguf.GGUFWriter, "write_tensor_data"),
}


@pytest.mark.parametrize("existing", [False, True], ids=["new", "replacing"])
@pytest.mark.parametrize("fmt", list(WRITERS))
def test_disk_full_mid_write_leaves_nothing(
    fmt: str,
    existing: bool,
    tiny_hf: Path,
    tiny_meta2: Path,
    tiny_gguf: Path,
    tmp_path: Path,
    herd_cli: CliRun,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ENOSPC after the first chunk is on disk: one line naming DST, no staging entry, DST as before."""
    dst = tmp_path / ("out.gguf" if fmt == "gguf" else "out")
    if existing:
        source = {"hf": tiny_hf, "meta": tiny_meta2, "gguf": tiny_gguf}[fmt]
        (shutil.copy if fmt == "gguf" else shutil.copytree)(source, dst)
    before = snapshot(tmp_path)
    owner, name = WRITERS[fmt]
    real = getattr(owner, name)

    def write_then_fail(*args: object, **kwargs: object) -> None:
        real(*args, **kwargs)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(owner, name, write_then_fail)
    code, err = herd_cli(["convert", str(tiny_hf), str(dst), "--to", fmt, *NO_VOCAB[fmt], "--force"])
    assert (code, err) == (2, f"herd: error: {dst}: no space left on the device")
    assert snapshot(tmp_path) == before


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Mount tmpfs file systems with the given options (we run as root in CI); skip where we cannot."""
    mounted: list[Path] = []

    def mount(options: str) -> Path:
        point = tmp_path / f"mnt{len(mounted)}"
        point.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounted.append(point)
        return point

    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    yield mount
    for point in mounted:
        subprocess.run(["umount", str(point)], check=True)


@pytest.mark.parametrize("fmt", ["hf", "meta", "gguf"])
def test_really_full_disk(
    fmt: str, tiny_hf: Path, herd_cli: CliRun, small_tmpfs: Callable[[str], Path]
) -> None:
    """A 256 KiB tmpfs cannot hold the ~800 KB model: each writer's own error becomes one ENOSPC line."""
    disk = small_tmpfs("size=256k")
    dst = disk / ("out.gguf" if fmt == "gguf" else "out")
    code, err = herd_cli(["convert", str(tiny_hf), str(dst), "--to", fmt, *NO_VOCAB[fmt]])
    assert (code, err) == (2, f"herd: error: {dst}: no space left on the device")
    assert os.listdir(disk) == []


def test_really_read_only_disk(tiny_hf: Path, herd_cli: CliRun, small_tmpfs: Callable[[str], Path]) -> None:
    disk = small_tmpfs("ro,size=1m")
    code, err = herd_cli(["convert", str(tiny_hf), str(disk / "out"), "--to", "hf"])
    assert (code, err) == (2, f"herd: error: {disk / 'out'}: the file system is read-only")
    assert os.listdir(disk) == []


def test_shards_flag_is_checked_before_any_work(
    tiny_hf: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["convert", str(tiny_hf), str(tmp_path / "o"), "--to", "meta", "--shards", "0"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--shards" in err and "at least 1" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fmt", ["hf", "meta"])
def test_marker_lists_exactly_what_herd_wrote(fmt: str, tiny_hf: Path, tiny_meta2: Path) -> None:
    """The marker is how a later --force recognises herd's output: it lists every file and no other."""
    folder = {"hf": tiny_hf, "meta": tiny_meta2}[fmt]
    marker = json.loads((folder / MARKER_NAME).read_text())
    assert marker["format"] == fmt
    assert sorted(marker["files"]) == sorted(p.name for p in folder.iterdir() if p.name != MARKER_NAME)
    assert len(marker["files"]) == (2 if fmt == "hf" else 3)  # config + weights; params + 2 shards


@pytest.mark.parametrize("umask", [0o022, 0o027])
@pytest.mark.parametrize("fmt", ["hf", "meta", "gguf"])
def test_output_is_readable_like_any_file_the_user_writes(
    fmt: str, umask: int, tiny_hf: Path, tiny_tokenizer: Path, tmp_path: Path, herd_cli: CliRun
) -> None:
    """Weights, configs, marker and tokenizer files get open()'s 0666 and mkdir's 0777 less the umask, never
    the 0600/0700 of a private temporary (022 gives 0644 files and 0755 directories)."""
    src = tmp_path / "src"
    shutil.copytree(tiny_hf, src)
    shutil.copyfile(tiny_tokenizer / "tokenizer.model", src / "tokenizer.model")
    dst = tmp_path / ("out.gguf" if fmt == "gguf" else "out")
    old = os.umask(umask)
    try:
        code, err = herd_cli(["convert", str(src), str(dst), "--to", fmt])
    finally:
        os.umask(old)
    assert (code, err) == (0, "")
    written = [dst, *dst.rglob("*")]
    expected_files = {"hf": 5, "meta": 5, "gguf": 1}[fmt]  # dir, config, weights, marker, tokenizer.model
    assert len(written) == expected_files and (fmt == "gguf" or (dst / "tokenizer.model").is_file())
    for path in written:
        expected = (0o777 if path.is_dir() else 0o666) & ~umask
        assert path.stat().st_mode & 0o777 == expected, path.name
