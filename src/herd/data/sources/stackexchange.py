"""StackExchange ``Posts.xml`` → one document per question with its answers (Llama 1 §2.1).

Llama 1 kept the 28 largest sites, removed HTML and sorted answers by score,
highest first. Scores are compared as integers: sorting the strings (as
RedPajama did) puts "9" above "10" and "-1" above "0". Ties keep the post order.
Sites are chosen by size with :func:`largest_sites`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from herd.data.document import Document
from herd.data.io.reader import Reader
from herd.data.sources.html import html_to_text
from herd.io.compression import open_read


def largest_sites(posts_files: Sequence[str | Path], n: int = 28) -> list[Path]:
    """The ``n`` largest sites' ``Posts.xml`` files by size, largest first."""
    return sorted(map(Path, posts_files), key=lambda p: (-p.stat().st_size, str(p)))[:n]


def site_name(path: Path) -> str:
    """A site's name from its dump folder (``cooking.stackexchange.com/Posts.xml`` → ``cooking``)."""
    folder = path.parent.name if path.name.lower().startswith("posts") else path.stem
    return folder.split(".")[0]


@dataclass
class _Question:
    id: str
    title: str
    body: str
    answers: list[tuple[int, int, str]] = field(default_factory=list)


class StackExchangeReader(Reader):
    """Reads a site's posts and yields ``Q: title\\nbody\\n\\nA: answer...`` documents."""

    name = "stackexchange"

    def __init__(self, **kwargs: int) -> None:
        super().__init__(source="stackexchange", **kwargs)

    def read(self, path: Path) -> Iterator[Document]:
        questions: dict[str, _Question] = {}
        orphans: list[tuple[str, int]] = []
        with open_read(path) as stream:
            try:
                for row_number, (_, row) in enumerate(ET.iterparse(stream)):
                    self.offset = row_number
                    if row.tag == "row":
                        self._add(row.attrib, row_number, questions, orphans, path)
                    row.clear()
            except ET.ParseError as exc:
                self.bad(path, self.offset, "invalid_xml", str(exc))
        for parent, _ in orphans:
            if parent not in questions:
                self.bad(path, 0, "orphan_answer", parent)
        site = site_name(path)
        for q in questions.values():
            answers = sorted(q.answers, key=lambda a: (-a[0], a[1]))
            text = "\n\n".join([f"Q: {q.title}\n{q.body}", *(f"A: {a[2]}" for a in answers)])
            doc = Document(text=text, id=f"{site}/{q.id}", metadata={"site": site, "answers": len(answers)})
            if (kept := self.emit(doc, path)) is not None:
                yield kept

    def _add(
        self,
        attrs: dict[str, str],
        order: int,
        questions: dict[str, _Question],
        orphans: list[tuple[str, int]],
        path: Path,
    ) -> None:
        kind = attrs.get("PostTypeId")
        body = html_to_text(attrs.get("Body", ""), main_content=False)
        if kind == "1":
            questions[attrs.get("Id", str(order))] = _Question(
                attrs.get("Id", ""), attrs.get("Title", ""), body
            )
        elif kind == "2":
            parent = attrs.get("ParentId", "")
            try:
                score = int(attrs.get("Score", "0"))
            except ValueError:
                self.bad(path, order, "invalid_score", attrs.get("Score", ""))
                return
            if parent in questions:
                questions[parent].answers.append((score, order, body))
            else:
                orphans.append((parent, order))
