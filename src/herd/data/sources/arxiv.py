"""ArXiv LaTeX sources: ``.tar``/``.tar.gz``/``.tgz`` archives, gzipped or plain ``.tex`` files (Llama 1 §2.1).

An archive's ``.tex`` members are concatenated, the one with
``\\begin{document}`` first, so macros defined in any of them expand
everywhere; the text is cleaned by :func:`herd.data.sources.latex.clean_latex`.
A plain ``.tex`` file (e.g. in a paper folder) is one document. Sources without
a section are dropped as ``no_section``. Archives are read as streams, never
unpacked; a member named with an absolute path or ``..`` (which unpacking
would write outside the paper's folder) is left out and counted as
``unsafe_member``. A truncated or corrupt archive is ``truncated_file`` or
``corrupt_file`` and gives no document.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from pathlib import Path

from herd.data.document import Document
from herd.data.errors import DataInputError
from herd.data.io.reader import Reader
from herd.data.sources.latex import clean_latex
from herd.errors import HerdError
from herd.io.compression import TRUNCATED, DamagedFileError, open_read
from herd.paths import contained

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz")


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _tex_members(path: Path) -> tuple[list[str], list[str]]:
    """The texts of a tar archive's ``.tex`` files (the one with ``\\begin{document}`` first) and the
    names of the members left out as unsafe.

    The archive is read as a stream; nothing is extracted to disk. A member
    whose name is absolute or climbs out with ``..`` would land outside the
    paper's folder if the archive were unpacked: such an archive is crafted,
    and the member is left out.
    """
    texts, unsafe = [], []
    folder = path.with_name(f"{path.name}.d")  # where unpacking would put the members (never created)
    with open_read(path) as stream:
        try:
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for member in tar:
                    if not (member.isfile() and member.name.endswith(".tex")):
                        continue
                    try:
                        contained(folder, member.name, path)
                    except HerdError:
                        unsafe.append(member.name)
                        continue
                    texts.append(_decode(tar.extractfile(member).read()))  # type: ignore[union-attr]
            stream.read()  # tar stops at its end marker; a compressed stream cut after it still fails here
        except tarfile.ReadError as exc:
            if "unexpected end of data" in str(exc):
                raise DamagedFileError(path, TRUNCATED, stream.tell(), f"tar: {exc}") from None
            raise DataInputError(f"{path}: not a readable tar archive ({exc})") from None
        except tarfile.TarError as exc:
            raise DataInputError(f"{path}: not a readable tar archive ({exc})") from None
    return sorted(texts, key=lambda t: "\\begin{document}" not in t), unsafe


class ArxivReader(Reader):
    """One document per paper source (see module docstring)."""

    name = "arxiv"

    def __init__(self, **kwargs: int) -> None:
        super().__init__(source="arxiv", **kwargs)

    def read(self, path: Path) -> Iterator[Document]:
        name = path.name
        if name.endswith(ARCHIVE_SUFFIXES):
            texts, unsafe = _tex_members(path)
            for member in unsafe:
                self.bad(path, 0, "unsafe_member", member)
            tex = "\n".join(texts)
        elif name.endswith((".gz", ".tex")):
            with open_read(path) as stream:
                tex = _decode(stream.read())
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
