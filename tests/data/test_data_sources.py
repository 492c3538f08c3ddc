"""Source readers on the bundled samples and on malformed input (docs/data.md)."""

from __future__ import annotations

import bz2
import gzip
from pathlib import Path

import pytest

from conftest import SAMPLES, warc_record
from herd.data.pipeline import expand_inputs
from herd.data.sources.arxiv import ArxivReader
from herd.data.sources.books import GutenbergReader, strip_gutenberg
from herd.data.sources.github import GitHubReader
from herd.data.sources.html import html_to_text, strip_markdown
from herd.data.sources.latex import clean_latex, expand_macros, extract_macros, strip_comments
from herd.data.sources.stackexchange import StackExchangeReader, largest_sites, site_name
from herd.data.sources.warc import WarcReader, WetReader
from herd.data.sources.wikipedia import WikipediaReader, clean_wikitext

WARC = SAMPLES / "commoncrawl" / "rust-book.warc.gz"


def test_warc_sample() -> None:
    reader = WarcReader()
    docs = list(reader.read_files([WARC]))
    assert len(docs) == 131 and not reader.stats.dropped
    chapter = next(d for d in docs if d.metadata["url"].endswith("ch03-01-variables-and-mutability.html"))
    assert "fn main() {\n    let x = 5;" in chapter.text  # code keeps its lines and indentation
    assert chapter.metadata["date"] == "2024-03-01T00:00:00Z"
    wet = list(WetReader().read_files([SAMPLES / "commoncrawl" / "rust-book.warc.wet.gz"]))
    assert [d.metadata["url"] for d in wet] == [d.metadata["url"] for d in docs]


def test_truncated_warc_record(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    good = warc_record("http://a/", b"<p>first page is fine.</p>")
    cut = warc_record("http://b/", b"<p>" + b"x" * 200 + b"</p>", declared=5000)
    path = tmp_path / "t.warc"
    path.write_bytes(good + cut)
    reader = WarcReader()
    docs = list(reader.read_files([path]))
    assert [d.text for d in docs] == ["first page is fine."]
    assert reader.stats.dropped == {"truncated_record": 1}
    assert "t.warc@" in caplog.text


def test_corrupt_warc_gzip_goes_on(tmp_path: Path) -> None:
    (tmp_path / "a.warc.gz").write_bytes(b"\x1f\x8b\x08\x00garbage" * 10)
    (tmp_path / "b.warc.gz").write_bytes(gzip.compress(warc_record("http://b/", b"<p>still read.</p>")))
    reader = WarcReader()
    docs = list(reader.read_files(sorted(tmp_path.iterdir())))
    assert [d.text for d in docs] == ["still read."]
    assert sum(reader.stats.dropped.values()) >= 1


def test_html_keeps_alt_code_math_and_strips_markdown() -> None:
    html = (
        "<html><body><article><h1>Title</h1><p>A **bold** claim and an <img alt='a llama grazing'> photo.</p>"
        "<pre><code>def f(x):\n    return x**2\n</code></pre>"
        "<p>Energy <math alttext='E = mc^2'><mi>E</mi></math> holds.</p></article></body></html>"
    )
    text = html_to_text(html)
    assert "a llama grazing" in text
    assert "def f(x):\n    return x**2" in text
    assert "$E = mc^2$" in text
    assert "A bold claim" in text
    assert strip_markdown("## Heading\n__under__ x") == "Heading\nunder x"


WIKITEXT = """{{Infobox|name=X}}'''Bold''' text with [[Target page|a link]] and [[Plain]].<ref>cite</ref><!-- hidden -->
{| class="wikitable"
| cell
|}
== Section ==
More ''italic'' text.[[Category:Things]] [[File:X.png|thumb|caption]]"""


def test_clean_wikitext() -> None:
    assert clean_wikitext(WIKITEXT) == "Bold text with a link and Plain.\n\nSection\nMore italic text."


def test_wikipedia_sample_and_languages() -> None:
    reader = WikipediaReader()
    docs = list(reader.read_files([SAMPLES / "wikipedia" / "enwiki-sample-pages-articles.xml.bz2"]))
    assert [d.metadata["title"] for d in docs] == ["Llama", "Alpaca"]  # no redirect, no talk page
    assert "fibre & wool" in docs[1].text and docs[0].metadata["language"] == "en"
    only_de = WikipediaReader(languages=frozenset({"de"}))
    assert list(only_de.read_files([SAMPLES / "wikipedia" / "enwiki-sample-pages-articles.xml.bz2"])) == []
    assert only_de.stats.dropped == {"language": 1}  # the whole dump, once


def test_wikipedia_other_language_dump_skipped_at_its_root(tmp_path: Path) -> None:
    """A dump in an unwanted language is left after its root element, unparsed: no per-page work or logs."""
    (tmp_path / "jawiki-1-pages-articles.xml").write_text(
        '<mediawiki xml:lang="ja"><page><title>A &bogus; entity</title></page></mediawiki>'
    )
    reader = WikipediaReader()
    assert list(reader.read_files([tmp_path / "jawiki-1-pages-articles.xml"])) == []
    assert reader.stats.dropped == {"language": 1}  # not invalid_xml: the page was never parsed


def test_wikipedia_corrupt_bz2_and_bad_xml(tmp_path: Path) -> None:
    data = bz2.compress(
        (SAMPLES / "wikipedia" / "x").with_name("enwiki-sample-pages-articles.xml.bz2").read_bytes()
    )
    (tmp_path / "enwiki-1.xml.bz2").write_bytes(data[:40])
    (tmp_path / "enwiki-2.xml").write_text(
        "<mediawiki><page><title>A &bogus; entity</title></page></mediawiki>"
    )
    reader = WikipediaReader()
    assert list(reader.read_files(sorted(tmp_path.iterdir()))) == []
    assert reader.stats.dropped == {"truncated_file": 1, "invalid_xml": 1}


def test_gutenberg_header_and_footer() -> None:
    text = "Header\n*** START OF THE PROJECT GUTENBERG EBOOK X ***\nBody line.\n*** END OF THE PROJECT GUTENBERG EBOOK X ***\nLicence"
    assert strip_gutenberg(text) == "Body line."
    assert strip_gutenberg("No markers here.") == "No markers here."
    docs = list(GutenbergReader().read_files(expand_inputs([SAMPLES / "books"])))
    assert docs[1].metadata["title"] == "The Declaration of Independence"
    assert docs[1].text.startswith("IN CONGRESS") and "Project Gutenberg" not in docs[1].text


def test_latex_comments_keep_preceding_character() -> None:
    assert strip_comments("50\\% done% note\nx%y") == "50\\% done\nx"  # "[^\\]%" would eat "e" and "x"
    assert strip_comments("line\\\\% comment after a line break") == "line\\\\"


def test_latex_macros_with_arguments() -> None:
    source = r"\newcommand{\R}{\mathbb{R}}\newcommand\sq[1]{#1^2}\newcommand{\nrm}[2][2]{\|#2\|_{#1}}\def\ip#1#2{\langle#1,#2\rangle}"
    macros, rest = extract_macros(source + "body")
    assert rest == "body"
    assert expand_macros(r"$\sq{x} \in \R, \Rx, \nrm{v}, \nrm[1]{w}, \ip{a}{\sq b}$", macros) == (
        r"$x^2 \in \mathbb{R}, \Rx, \|v\|_{2}, \|w\|_{1}, \langle a,b^2\rangle$"
    )


def test_latex_preamble_and_bibliography_removed() -> None:
    tex = r"\documentclass{a}\begin{document}Abstract\section{Intro}Text.\begin{thebibliography}{9}\bibitem{x} X.\end{thebibliography}\end{document}"
    assert clean_latex(tex) == r"\section{Intro}Text."
    assert clean_latex(r"\begin{document}no sections\end{document}") == ""


def test_arxiv_sample_and_bad_archive(tmp_path: Path) -> None:
    reader = ArxivReader()
    (tmp_path / "bad.tar.gz").write_bytes(b"not a tar")
    docs = list(reader.read_files([SAMPLES / "arxiv" / "2401.00001.tar.gz", tmp_path / "bad.tar.gz"]))
    text = docs[0].text
    assert text.startswith(r"\section{Introduction}") and "thebibliography" not in text
    assert r"$\mathcal{L}_{\theta}(x)$" in text and r"\langle a, b \rangle" in text and "\\%" in text
    assert "Removed section" not in text and "(x)$ with a step size $\\varepsilon$." in text
    assert reader.stats.dropped == {"corrupt_file": 1}


def test_stackexchange_numeric_score_order() -> None:
    posts = SAMPLES / "stackexchange" / "llamas.stackexchange.com" / "Posts.xml"
    docs = list(StackExchangeReader().read_files([posts]))
    answers = [a.split("\n")[0] for a in docs[0].text.split("\n\nA: ")[1:]]
    # scores 10, 9, 0, -1: string order would put "9" before "10" and "-1" before "0"
    assert answers == ["Soak it for 30 minutes, then rinse twice.", "Twenty minutes in warm water is enough.",
                       "Use a mesh bag & cold water.", "Never wash it."]  # fmt: skip
    assert docs[0].text.startswith("Q: How long should llama wool be washed?\nI have raw llama fibre.")
    assert site_name(posts) == "llamas"


def test_stackexchange_bad_rows(tmp_path: Path) -> None:
    posts = tmp_path / "x" / "Posts.xml"
    posts.parent.mkdir()
    posts.write_text(
        '<posts><row Id="1" PostTypeId="1" Title="T" Body="q?"/><row Id="2" PostTypeId="2" ParentId="1" '
        'Score="ten" Body="a"/><row Id="3" PostTypeId="2" ParentId="99" Score="1" Body="b"/><row'
    )
    reader = StackExchangeReader()
    assert [d.text for d in reader.read_files([posts])] == ["Q: T\nq?"]
    assert reader.stats.dropped == {"invalid_score": 1, "orphan_answer": 1, "invalid_xml": 1}
    small = tmp_path / "y" / "Posts.xml"
    small.parent.mkdir()
    small.write_text("<posts/>")
    assert largest_sites([small, posts], n=1) == [posts]


def test_github_tree_and_jsonl(tmp_path: Path, write_jsonl) -> None:  # type: ignore[no-untyped-def]
    docs = list(GitHubReader().read_files(expand_inputs([SAMPLES / "github"])))
    assert {d.metadata["license"] for d in docs} == {"MIT"} and len(docs) == 5
    (tmp_path / "blob.bin").write_bytes(b"\x00\x01\x02")
    path = write_jsonl(
        "files.jsonl", [{"content": "print(1)\n", "path": "a.py", "repo": "r", "license": "MIT"}]
    )
    reader = GitHubReader()
    got = list(reader.read_files([tmp_path / "blob.bin", path]))
    assert [(d.id, d.text) for d in got] == [("r/a.py", "print(1)\n")]
    assert reader.stats.dropped == {"binary": 1}
