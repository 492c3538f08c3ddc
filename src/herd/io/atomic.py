"""Atomic output: a file or directory herd writes appears whole under its name, or not at all.

The new content of ``DST`` is written under a staging name beside it and
renamed into place once complete, so a failed, interrupted or killed write
never leaves a partial ``DST`` that a later run (a resumed data build, a
resumed training run, ``herd convert --force``) would take for a finished one.
A file replaces ``DST`` in one rename; a directory that replaces a non-empty
one moves the old one aside only after the new one is complete, and puts it
back if the second rename fails.

Every temporary herd makes has one naming scheme, so one cleaner finds every kind:

``.NAME.herd-HOST-PID.XXXXXXXX.tmp``
    the staging entry of process ``PID`` on ``HOST`` for ``NAME``;
``.NAME.herd-HOST-PID.old``
    the previous ``NAME``, moved aside by that process for the instant
    between the two renames that replace a directory;
``.NAME.tmp``, ``.NAME.old``
    the same without an owner: the staging directory that every process of a
    distributed job writes into (they must agree on its name without asking
    each other, see ``atomic_dir(shared=True)``), and what herd wrote before
    temporaries recorded their owner.

The owner is how a later run recognises the leftovers of a killed one
(SIGKILL, power loss): :func:`remove_stale_temporaries` removes the entries
whose process, on this host, is gone, and puts a moved-aside ``.old`` back
when its ``NAME`` is missing. Entries of a live process, of another host,
without an owner or without herd's pattern are left alone, unless the caller
holds the folder exclusively (a data build under its lock, a training run
before it starts), when every entry of the scheme is stale.

Output is readable like any file the user writes: a staging file is created
with ``open``'s mode and a staging directory with ``mkdir``'s (0666 and 0777
less the umask), and before the rename every entry in it is given at least
those permissions (:func:`widen_to_open_modes`), because some libraries write
through a private temporary of their own (safetensors' files are 0600).

A failed write removes its staging entry. Libraries report a full or
read-only disk in their own ways (safetensors' ``SafetensorError``, torch's
``RuntimeError``, numpy's ``OSError`` without an errno, a compiler's exit
status); when a write fails with anything but a :class:`HerdError`, the file
system is asked directly (:func:`probe_write`: 1 MiB written and synced) and
what it says is raised as an ``OSError`` naming ``DST``.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import socket
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, NoReturn

from herd.errors import HerdError

_HOST = re.sub(r"\W", "_", socket.gethostname(), flags=re.ASCII) or "localhost"
_OWNED = re.compile(r"\.(?P<name>.+)\.herd-(?P<host>\w+)-(?P<pid>\d+)\.(?:\w+\.(?P<tmp>tmp)|old)", re.ASCII)
_UNOWNED = re.compile(r"\.(?P<name>.+)\.(?:(?P<tmp>tmp)|old)")
_PROBE_BYTES = 1 << 20


def _umask_at_import() -> int:
    mask = os.umask(0o077)  # the only portable way to read the umask is to set it, then put it back
    os.umask(mask)
    return mask


_IMPORT_UMASK = _umask_at_import()


def current_umask() -> int:
    """The process's umask, read without changing it where the system tells (``/proc/self/status``,
    Linux 4.7+); elsewhere the umask at import, since setting it to read it would race with any
    thread creating a file meanwhile."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return _IMPORT_UMASK


def widen_to_open_modes(path: Path) -> None:
    """Give ``path``, and everything under it when it is a directory, at least the permissions that
    ``open`` (0666) and ``mkdir`` (0777) give a new entry under the current umask.

    Bits an entry already has are kept (an executable stays executable) and
    symbolic links are not followed.
    """
    umask = current_umask()
    entries = [path]
    if path.is_dir() and not path.is_symlink():
        for root, dirs, files in os.walk(path):
            entries += [Path(root, name) for name in dirs + files]
    for entry in entries:
        info = entry.lstat()
        if stat.S_ISLNK(info.st_mode):
            continue
        wanted = (0o777 if stat.S_ISDIR(info.st_mode) else 0o666) & ~umask
        mode = stat.S_IMODE(info.st_mode)
        if mode | wanted != mode:
            os.chmod(entry, mode | wanted)


def staging_prefix(dst: Path, pid: int | None = None) -> str:
    """The name prefix of process ``pid``'s (default: this one's) staging entries for ``dst``."""
    return f".{dst.name}.herd-{_HOST}-{os.getpid() if pid is None else pid}."


def shared_staging_path(dst: Path) -> Path:
    """The staging directory of ``dst`` that every process of a job writes into (see :func:`atomic_dir`)."""
    return dst.with_name(f".{dst.name}.tmp")


def is_empty_dir(path: Path) -> bool:
    """Whether ``path`` is a real (not symlinked) directory with no entries."""
    return path.is_dir() and not path.is_symlink() and next(path.iterdir(), None) is None


class Staging:
    """A staging entry beside ``dst`` that becomes ``dst`` on :meth:`commit` or disappears on :meth:`discard`.

    Made by :func:`atomic_file` and :func:`atomic_dir`; nothing is on disk
    until :meth:`create`. Its name is chosen first, so that an interruption
    at any point after (a signal included) can still remove what was made.
    As a context manager it creates the entry and gives its path, commits when
    the block succeeds and discards otherwise; a failure that hides a full or
    read-only disk is raised as the file system's ``OSError`` naming ``dst``
    (see the module).
    """

    def __init__(self, dst: Path | str, *, directory: bool, shared: bool = False) -> None:
        self.dst = Path(dst)
        self.directory = directory
        self.shared = shared
        self.path = shared_staging_path(self.dst) if shared else self._owned_name()

    def _owned_name(self) -> Path:
        return self.dst.with_name(f"{staging_prefix(self.dst)}{secrets.token_hex(4)}.tmp")

    def create(self) -> Path:
        """Make the staging entry (and ``dst``'s parent directories) as mkdir or open would; its path."""
        self.dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            if self.shared and os.path.lexists(self.path):
                _remove(self.path)  # a killed job's: no one's now
            self._make()
        except OSError as exc:  # named after dst, not the hidden staging name (a read-only or full disk)
            self.discard()
            raise OSError(exc.errno, exc.strerror, str(self.dst)) from None
        except BaseException:
            self.discard()
            raise
        return self.path

    def _make(self) -> None:
        """Make the entry at :attr:`path` with mkdir's or open's mode (less the umask)."""
        while True:
            try:
                if self.directory:
                    os.mkdir(self.path)
                else:
                    os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
                return
            except FileExistsError:
                if self.shared:
                    raise
                self.path = self._owned_name()  # another entry drew the same name: draw again

    def commit(self) -> None:
        """Rename the complete staging entry to ``dst`` (readable as :func:`widen_to_open_modes` makes it);
        on failure it is removed and ``dst`` is as before."""
        try:
            widen_to_open_modes(self.path)
            if self.directory:
                _replace_dir(self.path, self.dst)
            else:
                os.replace(self.path, self.dst)
        except BaseException as exc:
            self.abort(exc)

    def discard(self) -> None:
        """Remove the staging entry (the write failed or was abandoned): ``dst`` is left as it was."""
        if os.path.lexists(self.path):
            _remove(self.path)

    def abort(self, exc: BaseException) -> NoReturn:
        """Discard the staging entry after ``exc`` ended the write, then raise the file system's error
        behind ``exc`` (see the module), or ``exc`` itself.

        The error is found before the entry is removed: the space it holds is
        what makes a full disk full.
        """
        error = _write_error(exc, self.dst, self.path) if isinstance(exc, Exception) else None
        self.discard()
        if error is None:
            raise exc
        raise error from exc

    def __enter__(self) -> Path:
        return self.create()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            self.commit()
        else:
            self.abort(exc)


def atomic_file(dst: Path | str) -> Staging:
    """A staging file for ``dst``: ``with atomic_file(dst) as tmp:`` write ``tmp``; it replaces ``dst``
    when the block succeeds."""
    return Staging(dst, directory=False)


def atomic_dir(dst: Path | str, *, shared: bool = False) -> Staging:
    """A staging directory for ``dst``: fill it, and it takes ``dst``'s place when the block succeeds.

    An existing non-empty ``dst`` is moved aside only once the new directory
    is complete, and deleted once the new one is in place. ``shared``: the
    staging directory has the fixed name :func:`shared_staging_path` (any left
    there is replaced), so that every process of a distributed job can write
    into it; one process creates and commits it, and no other job may write ``dst``.
    """
    return Staging(dst, directory=True, shared=shared)


def write_atomically(dst: Path | str, write: Callable[[BinaryIO], None]) -> None:
    """Create ``dst`` with ``write(file)`` under its staging name, then rename it into place."""
    with atomic_file(dst) as tmp, open(tmp, "wb") as f:
        write(f)


def _replace_dir(tmp: Path, dst: Path) -> None:
    """Rename the complete directory ``tmp`` to ``dst``, moving an existing ``dst`` aside for the instant."""
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
    with contextlib.suppress(OSError):  # if this fails, the next run's cleaning removes it
        _remove(aside)


@dataclass(frozen=True)
class Leftover:
    """A temporary a killed writer left at ``path`` for ``destination``, and what became of it.

    ``pid``: the process that made it, when its name records one.
    ``restored``: it was ``destination``'s previous version, moved aside in
    the instant between two renames, and was put back there; else it was deleted.
    """

    path: Path
    destination: Path
    pid: int | None
    restored: bool


def _parse(name: str) -> tuple[str, str | None, int | None, bool] | None:
    """A temporary's destination name, owner host and pid (None without an owner) and whether it is a
    staging entry (else a moved-aside ``.old``); None for a name outside the scheme."""
    owned = _OWNED.fullmatch(name)
    if owned is not None:
        return owned["name"], owned["host"], int(owned["pid"]), owned["tmp"] is not None
    unowned = _UNOWNED.fullmatch(name)
    if unowned is not None:
        return unowned["name"], None, None, unowned["tmp"] is not None
    return None


def remove_stale_temporaries(
    folder: Path,
    *,
    names: Callable[[str], bool] | None = None,
    recursive: bool = False,
    exclusive: bool = False,
) -> list[Leftover]:
    """Remove the temporaries killed writers left in ``folder`` and put moved-aside directories back.

    An entry is stale when its owner, a process on this host, is gone;
    ``exclusive``: the caller knows no other process writes in ``folder``, so
    every entry of the naming scheme is (those without an owner included; see
    the module). ``names``: only the temporaries of destinations whose name it
    accepts. ``recursive``: in subdirectories too (not following symbolic
    links). Returns what was removed or restored.
    """
    found: list[Leftover] = []
    if not folder.is_dir():
        return found
    for entry in sorted(folder.iterdir()):
        parsed = _parse(entry.name)
        if parsed is None or (names is not None and not names(parsed[0])):
            if recursive and entry.is_dir() and not entry.is_symlink():
                found += remove_stale_temporaries(entry, names=names, recursive=True, exclusive=exclusive)
            continue
        name, host, pid, staging = parsed
        if not exclusive and (pid is None or host != _HOST or not _process_gone(pid)):
            continue
        destination = entry.with_name(name)
        restored = not staging and not os.path.lexists(destination)
        if restored:
            entry.rename(destination)
        else:
            _remove(entry)
        found.append(Leftover(entry, destination, pid, restored))
    return found


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


def _remove(path: Path) -> None:
    """Delete a staging file or directory (not following a symbolic link)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


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
    probe = probe_write(dst)
    return None if probe is None else OSError(probe.errno, probe.strerror, str(dst))


def probe_write(dst: Path) -> OSError | None:
    """Write and sync 1 MiB beside ``dst``: the ``OSError`` the file system gives (full, read-only), or None."""
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
