"""Which destinations a conversion may write to: herd never destroys what it did not create.

herd marks every checkpoint directory it writes (hf, meta) with a small JSON
file, :data:`MARKER_NAME`, holding the format and the names of the files it
wrote. A destination may be replaced only if it is

- absent, or an empty directory;
- for hf/meta, a directory whose marker names that format and which holds
  nothing but the files the marker lists (a file the user added since, a
  subdirectory or a symbolic link makes it the user's again);
- for gguf, a regular file that is a GGUF file (it starts with ``GGUF``).

Anything else (a user's directory, a checkpoint of another format, a
symbolic link) is refused, whatever the flags. ``herd convert`` in addition
asks for ``--force`` before replacing anything that exists, and always
refuses a destination that is the source, a directory containing it, or a
path inside it.

A checkpoint is written in a staging entry beside the destination and renamed
into place only when complete (:func:`staged_checkpoint`, on
:mod:`herd.io.atomic`), so a failed or interrupted conversion never leaves a
partial checkpoint there and a replaced one is moved aside only once the new
one is whole. The staging entries a killed conversion left are removed, and a
checkpoint it moved aside put back, by the next write to that destination
(:func:`clean_leftovers`).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from herd.errors import HerdError
from herd.io.atomic import atomic_dir, atomic_file, is_empty_dir, remove_stale_temporaries

MARKER_NAME = ".herd-checkpoint.json"
#: Every checkpoint format herd reads and writes; the first two are directories, gguf a file.
FORMATS = ("hf", "meta", "gguf")
DIR_FORMATS = ("hf", "meta")


def write_marker(folder: Path, fmt: str) -> None:
    """Record in ``folder`` that herd wrote it as a ``fmt`` checkpoint, listing the files it holds now."""
    from herd import __version__

    files = sorted(p.name for p in folder.iterdir())
    marker = {"format": fmt, "files": files, "written_by": f"herd {__version__}"}
    (folder / MARKER_NAME).write_text(json.dumps(marker, indent=2) + "\n")


def replace_problem(dst: Path, fmt: str) -> str | None:
    """Why a ``fmt`` checkpoint must not replace ``dst``; None when it may (see the module docstring)."""
    if not os.path.lexists(dst):
        return None
    if dst.is_symlink():
        return "is a symbolic link; give the path it points to"
    if fmt not in DIR_FORMATS:
        # gguf is the one file format; writing it imports the gguf package anyway
        from herd.io.gguf import is_gguf

        if dst.is_dir():
            return f"is a directory; --to {fmt} writes a file"
        return None if is_gguf(dst) else "exists and is not a GGUF file"
    if not dst.is_dir():
        return f"is a file; --to {fmt} writes a directory"
    if is_empty_dir(dst):
        return None
    return _marker_problem(dst, fmt)


def _marker_problem(dst: Path, fmt: str) -> str | None:
    """Why the non-empty directory ``dst`` is not a ``fmt`` checkpoint written by herd; None if it is."""
    mine = "is not empty and is not a checkpoint herd wrote"
    try:
        marker = json.loads((dst / MARKER_NAME).read_text())
    except FileNotFoundError:
        return f"{mine} (no {MARKER_NAME})"
    except (OSError, ValueError):
        return f"{mine} ({MARKER_NAME} is unreadable)"
    if not isinstance(marker, dict) or not isinstance(marker.get("files"), list):
        return f"{mine} ({MARKER_NAME} is not herd's)"
    if marker.get("format") != fmt:
        return f"holds a herd {marker.get('format')} checkpoint, not {fmt}"
    written = set(marker["files"]) | {MARKER_NAME}
    for entry in sorted(dst.iterdir()):
        if entry.name not in written or entry.is_symlink() or not entry.is_file():
            return f"holds {entry.name}, which herd did not write there"
    return None


def check_destination(src: Path, dst: Path, fmt: str, *, force: bool) -> None:
    """Refuse, before any work, a destination that ``herd convert SRC DST --to fmt`` must not write.

    Always refused: DST is SRC, a directory containing SRC or a path inside
    SRC (writing would destroy or recurse into the input), and whatever
    :func:`replace_problem` refuses. Without ``force``, anything that exists
    but an empty directory.
    """
    source, target = src.resolve(), dst.resolve()
    hard_link = src.exists() and dst.exists() and os.path.samefile(src, dst)
    if target == source or target in source.parents or hard_link:
        raise HerdError(f"{dst}: the destination is the source {src} or contains it; choose another path")
    if source in target.parents:
        raise HerdError(f"{dst}: the destination is inside the source {src}; choose another path")
    problem = replace_problem(dst, fmt)
    if problem is not None:
        raise HerdError(f"{dst}: {problem}; herd does not overwrite it (choose a new path)")
    if not force and os.path.lexists(dst) and not is_empty_dir(dst):
        raise HerdError(f"{dst}: already exists (a {fmt} checkpoint); pass --force to replace it")


def clean_leftovers(dst: Path) -> None:
    """Remove the staging entries a killed herd process left for ``dst``; restore a checkpoint it moved aside.

    Only entries of dead processes on this host are touched (see
    :func:`herd.io.atomic.remove_stale_temporaries`); each is reported as one
    warning line on stderr.
    """
    dst = Path(dst)
    for leftover in remove_stale_temporaries(dst.parent, names=lambda name: name == dst.name):
        if leftover.restored:
            message = f"restored {dst} from {leftover.path.name}, left by an interrupted conversion"
        else:
            message = f"removed {leftover.path}, left by an interrupted conversion (process {leftover.pid})"
        print(f"herd: warning: {message}", file=sys.stderr)


def _refuse(dst: Path, fmt: str) -> None:
    """Raise a :class:`HerdError` when a ``fmt`` checkpoint may not replace ``dst`` (:func:`replace_problem`)."""
    problem = replace_problem(dst, fmt)
    if problem is not None:
        raise HerdError(f"{dst}: {problem}; herd does not overwrite it")


@contextmanager
def staged_checkpoint(dst: Path, fmt: str) -> Iterator[Path]:
    """Yield where to write a ``fmt`` checkpoint that becomes ``dst`` when the block succeeds.

    A staging directory for hf/meta, a staging file for gguf. Leftovers of a
    killed conversion into ``dst`` are cleaned first; ``dst`` must be one
    :func:`replace_problem` allows, checked before writing and again just
    before the rename (something may have appeared there meanwhile). A
    directory is marked as herd's (:func:`write_marker`) once complete.
    """
    dst = Path(dst)
    clean_leftovers(dst)
    _refuse(dst, fmt)
    directory = fmt in DIR_FORMATS
    with atomic_dir(dst) if directory else atomic_file(dst) as tmp:
        yield tmp
        if directory:
            write_marker(tmp, fmt)
        _refuse(dst, fmt)
