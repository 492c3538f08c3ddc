"""MediaWiki XML dumps (``.xml`` or ``.xml.bz2``) → clean article text (Llama 1 §2.1).

Llama 1 used June–August 2022 dumps of 20 Latin/Cyrillic languages and
removed hyperlinks, comments and formatting boilerplate. Articles (namespace 0,
not redirects) are cleaned with mwparserfromhell: links become their text;
templates, tables, comments, ``<ref>`` and formatting are removed; file and
category links are dropped. The language is the dump's ``xml:lang`` (or the
``XXwiki`` prefix of the file name). A dump holds one language, so a dump in
another language is skipped whole at its root element, as one ``language`` drop:
a recipe whose inputs glob every language's dump (Llama 3's multilingual source
next to ``enwiki``) neither decompresses and parses all of English Wikipedia
nor logs a line per article to skip it.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

from herd.data.document import Document
from herd.data.io.reader import Reader
from herd.io.compression import open_read

LLAMA1_LANGUAGES = frozenset(
    [
        "bg",
        "ca",
        "cs",
        "da",
        "de",
        "en",
        "es",
        "fr",
        "hr",
        "hu",
        "it",
        "nl",
        "pl",
        "pt",
        "ro",
        "ru",
        "sl",
        "sr",
        "sv",
        "uk",
    ]
)
_DROP_TAGS = frozenset(("ref", "table", "gallery", "references", "math", "timeline", "imagemap", "score"))
_DROP_LINK_PREFIXES = ("file:", "image:", "category:", "media:")
_BLANKS = re.compile(r"\n{3,}")


def clean_wikitext(wikitext: str) -> str:
    """Plain text of one article's wikitext (see module docstring)."""
    import mwparserfromhell as mw

    code = mw.parse(wikitext)
    for node in code.filter(recursive=False, forcetype=(mw.nodes.Tag, mw.nodes.Wikilink)):
        if (isinstance(node, mw.nodes.Tag) and str(node.tag).lower() in _DROP_TAGS) or (
            isinstance(node, mw.nodes.Wikilink)
            and str(node.title).strip().lower().startswith(_DROP_LINK_PREFIXES)
        ):
            code.remove(node)
    text = code.strip_code(normalize=True, collapse=True)
    lines = [line.strip() for line in text.splitlines()]
    return _BLANKS.sub("\n\n", "\n".join(lines)).strip()


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


class WikipediaReader(Reader):
    """Streams ``<page>`` elements of a dump and yields cleaned articles of the chosen languages."""

    name = "wikipedia"

    def __init__(self, languages: frozenset[str] | None = LLAMA1_LANGUAGES, **kwargs: int) -> None:
        super().__init__(source="wikipedia", **kwargs)
        self.languages = languages

    def read(self, path: Path) -> Iterator[Document]:
        language = path.name.split("wiki", 1)[0] if "wiki" in path.name else ""
        with open_read(path) as stream:
            pages = 0
            root = True
            try:
                for event, elem in ET.iterparse(stream, events=("start", "end")):
                    tag = _local(elem.tag)
                    if event == "start":
                        if root:  # the language is known once the root element starts
                            root = False
                            if tag == "mediawiki":
                                language = elem.get("{http://www.w3.org/XML/1998/namespace}lang", language)
                            if self.languages is not None and language not in self.languages:
                                self.bad(path, 0, "language", f"{language or 'unknown'} dump skipped")
                                return
                        continue
                    if tag != "page":
                        continue
                    self.offset = pages
                    pages += 1
                    doc = self._page(elem, language)
                    elem.clear()
                    if doc is not None and (kept := self.emit(doc, path)) is not None:
                        yield kept
            except ET.ParseError as exc:
                self.bad(path, pages, "invalid_xml", str(exc))

    def _page(self, page: ET.Element, language: str) -> Document | None:
        fields = {_local(child.tag): child for child in page}
        title = (fields["title"].text or "") if "title" in fields else ""
        if (fields["ns"].text if "ns" in fields else "0") != "0" or "redirect" in fields:
            return None
        revision = fields.get("revision")
        text_elem = (
            next((c for c in revision if _local(c.tag) == "text"), None) if revision is not None else None
        )
        page_id = fields["id"].text if "id" in fields else title
        text = clean_wikitext(text_elem.text or "") if text_elem is not None else ""
        body = f"{title}\n\n{text}" if text else ""
        return Document(
            text=body, id=f"{language}wiki/{page_id}", metadata={"title": title, "language": language}
        )
