"""GitHub code: repository trees on disk, or JSONL of files (Llama 1 §2.1).

For a file in a tree, the licence is detected from the nearest ``LICENSE*``,
``LICENCE*`` or ``COPYING*`` file in it or its parent directories
(:func:`herd.data.filters.github.detect_license`); JSONL records carry
``content`` (or ``text``), ``path``, ``repo`` and optionally ``license``.
Binary files (NUL bytes or invalid UTF-8) are dropped as ``binary``. The
:class:`~herd.data.filters.github.GitHubFilter` then applies the licence,
extension and line rules.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from herd.data.document import Document
from herd.data.filters.github import detect_license
from herd.data.io.jsonl import JsonlReader
from herd.data.io.reader import Reader

LICENSE_NAMES = ("license", "licence", "copying")


@lru_cache(maxsize=4096)
def _license_of_dir(directory: Path) -> tuple[str | None, Path | None]:
    """(SPDX id, repository root) from the closest licence file at or above ``directory``."""
    for folder in (directory, *directory.parents):
        for candidate in sorted(folder.iterdir()) if folder.is_dir() else ():
            if candidate.is_file() and candidate.name.lower().startswith(LICENSE_NAMES):
                return detect_license(candidate.read_text("utf-8", errors="replace")), folder
    return None, None


class GitHubReader(Reader):
    """One document per source file of a tree or per JSONL record; licence in ``metadata["license"]``."""

    name = "github"

    def __init__(self, **kwargs: int) -> None:
        super().__init__(source="github", **kwargs)
        self._jsonl = JsonlReader(source="github", text_key="content", **kwargs)
        self._jsonl.stats = self.stats

    def read(self, path: Path) -> Iterator[Document]:
        if path.name.endswith((".jsonl", ".jsonl.gz", ".jsonl.zst")):
            yield from self._read_jsonl(path)
            return
        if path.name.lower().startswith(LICENSE_NAMES):
            return
        raw = path.read_bytes()
        if len(raw) > self.max_record_bytes:
            self.bad(path, 0, "record_too_long")
            return
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = "\0"
        if "\0" in text:
            self.bad(path, 0, "binary")
            return
        license_, root = _license_of_dir(path.resolve().parent)
        relative = path.resolve().relative_to(root).as_posix() if root else path.name
        repo = root.name if root else ""
        doc = Document(
            text=text, id=f"{repo}/{relative}", metadata={"path": relative, "repo": repo, "license": license_}
        )
        if (kept := self.emit(doc, path)) is not None:
            yield kept

    def _read_jsonl(self, path: Path) -> Iterator[Document]:
        for doc in self._jsonl.read(path):
            doc.metadata.setdefault("license", None)
            doc.id = f"{doc.metadata.get('repo', '')}/{doc.metadata.get('path', doc.id)}"
            yield doc
