"""Paths named inside files: they never leave the directory they belong to.

An index file's shard names, a manifest's shard paths and an archive's members
are written by whoever made the file. Read as-is, ``../../home/user/.ssh/id_rsa``
or an absolute path would make herd read (or, for an archive, write) outside
the checkpoint or dataset. :func:`contained` resolves such a name against its
directory and refuses it, naming the file it came from, when it escapes.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from herd.errors import HerdError


def contained(root: Path | str, name: str, source: Path | str) -> Path:
    """``root / name``, refused unless it stays inside ``root``.

    ``source`` is the file that named ``name`` (for the message). Absolute
    names, ``..`` components that climb out and symbolic links that point
    outside are all refused.
    """
    if not isinstance(name, str) or not name or "\x00" in name:
        raise HerdError(f"{source}: invalid path {name!r} (expected a relative file name)")
    if os.path.isabs(name) or PurePosixPath(name).is_absolute() or (len(name) > 1 and name[1] == ":"):
        raise HerdError(f"{source}: path {name!r} is absolute; only names inside {root} are allowed")
    base = Path(root).resolve()
    target = (base / name).resolve()
    if target != base and base not in target.parents:
        raise HerdError(f"{source}: path {name!r} leaves {root}; only names inside it are allowed")
    return Path(root) / name
