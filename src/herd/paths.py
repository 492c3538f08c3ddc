"""Paths named inside files: they never leave the directory they belong to.

An index file's shard names, a manifest's shard paths and an archive's members
are written by whoever made the file. Read as-is, ``../../home/user/.ssh/id_rsa``
or an absolute path would make herd read (or, for an archive, write) outside
the checkpoint or dataset. :func:`contained` refuses such a name, naming the
file it came from, when it escapes its directory.

The check is on the name itself, not on where symbolic links on disk lead: a
link is put there by whoever owns the directory (the Hugging Face hub cache
stores every shard as ``snapshots/REV/NAME -> ../../blobs/HASH``), while the
name comes from a file that anyone may have written.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from herd.errors import HerdError


def contained(root: Path | str, name: str, source: Path | str) -> Path:
    """``root / name``, refused unless it stays inside ``root``.

    ``source`` is the file that named ``name`` (for the message). Absolute
    names and ``..`` components that climb out are refused.
    """
    if not isinstance(name, str) or not name or "\x00" in name:
        raise HerdError(f"{source}: invalid path {name!r} (expected a relative file name)")
    if os.path.isabs(name) or PurePosixPath(name).is_absolute() or (len(name) > 1 and name[1] == ":"):
        raise HerdError(f"{source}: path {name!r} is absolute; only names inside {root} are allowed")
    parts = PurePosixPath(name.replace("\\", "/")).parts
    depth = 0
    for part in parts:
        depth += -1 if part == ".." else 0 if part == "." else 1
        if depth < 0:
            raise HerdError(f"{source}: path {name!r} leaves {root}; only names inside it are allowed")
    return Path(root) / name
