"""ArXiv LaTeX sources: ``.tar``/``.tar.gz``/``.tgz`` archives, gzipped or plain ``.tex`` files (Llama 1 §2.1).

An archive's ``.tex`` members are concatenated, the one with
``\\begin{document}`` first, so macros defined in any of them expand
everywhere; the text is cleaned by :func:`herd.data.sources.latex.clean_latex`.
A plain ``.tex`` file (e.g. in a paper folder) is one document. Sources without
a section are dropped as ``no_section``.
"""

from __future__ import annotations

import gzip
import tarfile
from collections.abc import Iterator
from pathlib import Path

from herd.data.document import Document
from herd.data.errors import DataInputError
from herd.data.io.reader import Reader
from herd.data.sources.latex import clean_latex

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz")


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _tex_members(path: Path) -> list[str]:
    try:
        with tarfile.open(path) as tar:
            members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(".tex")]
            texts = [_decode(tar.extractfile(m).read()) for m in members]  # type: ignore[union-attr]
    except (tarfile.TarError, EOFError) as exc:
        raise DataInputError(f"{path}: not a readable tar archive ({exc})") from None
    return sorted(texts, key=lambda t: "\\begin{document}" not in t)


class ArxivReader(Reader):
    """One document per paper source (see module docstring)."""

    name = "arxiv"

    def __init__(self, **kwargs: int) -> None:
        super().__init__(source="arxiv", **kwargs)

    def read(self, path: Path) -> Iterator[Document]:
        name = path.name
        if name.endswith(ARCHIVE_SUFFIXES):
            tex = "\n".join(_tex_members(path))
        elif name.endswith(".gz"):
            tex = _decode(gzip.decompress(path.read_bytes()))
        elif name.endswith(".tex"):
            tex = _decode(path.read_bytes())
        else:
            self.bad(path, 0, "not_latex", name)
            return
        text = clean_latex(tex)
        if not text:
            self.bad(path, 0, "no_section")
            return
        stem = name.split(".")[0]
        if (kept := self.emit(Document(text=text, id=stem, metadata={"file": name}), path)) is not None:
            yield kept
