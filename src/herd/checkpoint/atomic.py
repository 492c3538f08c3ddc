"""Atomic output: write under a temporary name beside the destination, rename at the end.

A checkpoint is staged as ``.NAME.herd-HOST-PID.XXXXXXXX.tmp`` next to the
destination ``NAME`` and renamed into place only when complete, so a failed
or interrupted conversion never leaves a partial checkpoint at the
destination. Only a destination :func:`~herd.checkpoint.destination.replace_problem`
allows (one herd wrote, of the same format) is ever replaced, and only once
the new one is complete.

The host name and process id in the staging name are how a later run
recognises the leftovers of a killed one (SIGKILL, power loss): before
writing to a destination, :func:`clean_leftovers` removes the staging
entries for that destination whose process, on this host, is gone. Entries
of a live process, of another host or without herd's pattern are never
touched.

A failed write removes its staging entry. Libraries report a full or
read-only disk in their own ways (safetensors' ``SafetensorError``, torch's
``RuntimeError``, numpy's ``OSError`` without an errno); when a write fails
with anything but a :class:`HerdError`, :func:`_write_error` asks the file
system directly (a 1 MiB probe, written and synced) and reports what it
says as an ``OSError`` naming the destination.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from herd.checkpoint.destination import is_empty_dir, replace_problem, write_marker
from herd.errors import HerdError

_HOST = re.sub(r"\W", "_", socket.gethostname(), flags=re.ASCII) or "localhost"
_PROBE_BYTES = 1 << 20


def staging_prefix(dst: Path, pid: int | None = None) -> str:
    """The name prefix of process ``pid``'s (default: this one's) staging entries for ``dst``."""
    return f".{dst.name}.herd-{_HOST}-{os.getpid() if pid is None else pid}."


def _process_gone(pid: int) -> bool:
    """Whether no process ``pid`` exists on this host (never claimed on Windows, where os.kill would kill)."""
    if os.name == "nt" or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, owned by someone else
        return False
    return False


def clean_leftovers(dst: Path) -> None:
    """Remove the staging entries a killed herd process left for ``dst``; restore a checkpoint it moved aside.

    A ``.old`` entry is the previous checkpoint, moved aside in the instant
    before the new one was renamed into place: it goes back to ``dst`` if
    the process died between the two renames, else it is deleted.
    """
    dst = Path(dst)
    if not dst.parent.is_dir():
        return
    pattern = re.compile(rf"\.{re.escape(dst.name)}\.herd-{_HOST}-(\d+)\.(\w+\.tmp|old)")
    for entry in sorted(dst.parent.iterdir()):
        match = pattern.fullmatch(entry.name)
        if match is None or not _process_gone(int(match.group(1))):
            continue
        if match.group(2) == "old" and not os.path.lexists(dst):
            entry.rename(dst)
            _note(f"restored {dst} from {entry.name}, left by an interrupted conversion")
        else:
            _remove(entry)
            _note(f"removed {entry}, left by an interrupted conversion (process {match.group(1)})")


def _note(message: str) -> None:
    print(f"herd: warning: {message}", file=sys.stderr)


def _remove(path: Path) -> None:
    """Delete a staging file or directory of ours (not following a symbolic link)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _refuse(dst: Path, fmt: str) -> None:
    problem = replace_problem(dst, fmt)
    if problem is not None:
        raise HerdError(f"{dst}: {problem}; herd does not overwrite it")


@contextmanager
def _staged(dst: Path, fmt: str, make: str) -> Iterator[Path]:
    """The common part of :func:`atomic_dir` and :func:`atomic_file`: checks, staging entry, failure cleanup."""
    clean_leftovers(dst)
    _refuse(dst, fmt)
    dst.parent.mkdir(parents=True, exist_ok=True)
    options = {"prefix": staging_prefix(dst), "suffix": ".tmp", "dir": dst.parent}
    try:
        if make == "dir":
            tmp = Path(tempfile.mkdtemp(**options))
        else:
            fd, name = tempfile.mkstemp(**options)
            os.close(fd)
            tmp = Path(name)
    except OSError as exc:  # named after dst, not the hidden staging name (a read-only or full disk)
        raise OSError(exc.errno, exc.strerror, str(dst)) from None
    try:
        # mkdtemp/mkstemp make 0700/0600; the result should be as if made by mkdir/open
        tmp.chmod((0o777 if make == "dir" else 0o666) & ~_umask())
        yield tmp
    except Exception as exc:
        error = _write_error(exc, dst, tmp)
        if error is None:
            raise
        raise error from exc
    finally:
        if os.path.lexists(tmp):
            _remove(tmp)


@contextmanager
def atomic_dir(dst: Path, fmt: str) -> Iterator[Path]:
    """Yield a temporary directory that becomes the ``fmt`` checkpoint directory ``dst`` when the block succeeds.

    The directory is marked as herd's (:func:`~herd.checkpoint.destination.write_marker`).
    An existing ``dst`` must be one herd may replace; it is moved aside only
    after the new directory is complete, and deleted once the new one is in place.
    """
    dst = Path(dst)
    with _staged(dst, fmt, "dir") as tmp:
        yield tmp
        write_marker(tmp, fmt)
        _refuse(dst, fmt)  # again: something may have appeared at dst while we wrote
        if not os.path.lexists(dst) or is_empty_dir(dst):
            os.rename(tmp, dst)  # POSIX rename replaces an empty directory atomically
            return
        aside = dst.with_name(staging_prefix(dst) + "old")
        os.rename(dst, aside)
        try:
            os.rename(tmp, dst)
        except BaseException:
            os.rename(aside, dst)
            raise
        shutil.rmtree(aside, ignore_errors=True)  # if this fails, the next run removes it


@contextmanager
def atomic_file(dst: Path, fmt: str) -> Iterator[Path]:
    """Yield a temporary file path that replaces ``dst`` (absent, or a ``fmt`` file) when the block succeeds."""
    dst = Path(dst)
    with _staged(dst, fmt, "file") as tmp:
        yield tmp
        _refuse(dst, fmt)
        os.replace(tmp, dst)


def _write_error(exc: Exception, dst: Path, tmp: Path) -> OSError | None:
    """The file-system error behind a failed write to ``dst``, naming ``dst``; None if it was something else.

    An ``OSError`` with an errno is that error (renamed to ``dst`` when it
    named no file or the staging entry). Any other failure but a
    :class:`HerdError` may be a library's rendering of a full or read-only
    disk: a probe written beside ``dst`` tells.
    """
    if isinstance(exc, HerdError):
        return None
    if isinstance(exc, OSError) and exc.errno is not None:
        named = exc.filename is not None and not str(exc.filename).startswith(str(tmp))
        return None if named else OSError(exc.errno, exc.strerror, str(dst))
    probe = _probe(dst)
    return None if probe is None else OSError(probe.errno, probe.strerror, str(dst))


def _probe(dst: Path) -> OSError | None:
    """Write and sync :data:`_PROBE_BYTES` beside ``dst``: the ``OSError`` the file system gives, or None."""
    try:
        fd, name = tempfile.mkstemp(prefix=staging_prefix(dst), suffix=".tmp", dir=dst.parent)
    except OSError as exc:
        return exc
    try:
        view = memoryview(bytes(_PROBE_BYTES))
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except OSError as exc:
        return exc
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(name)
    return None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
