"""Rebuild herd's bundled data samples, each in its source's native format.

Run ``python data/samples/build.py [--rust-docs DIR]``; see README.md for each
sample's origin and licence. Output is deterministic (fixed timestamps and
record ids), so rebuilding gives the same bytes.
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import io
import shutil
import tarfile
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUST_DOCS = Path.home() / ".rustup/toolchains/stable-x86_64-unknown-linux-gnu/share/doc/rust/html/book"
BOOK_URL = "https://doc.rust-lang.org/book/"
CODE_PACKAGE = "mwparserfromhell"
CODE_FILES = ("__init__.py", "definitions.py", "string_mixin.py", "utils.py", "wikicode.py")


def _warc_record(kind: str, url: str, date: str, block: bytes, content_type: str) -> bytes:
    record_id = uuid.uuid5(uuid.NAMESPACE_URL, f"{kind}:{url}:{date}")
    head = (
        f"WARC/1.0\r\nWARC-Type: {kind}\r\nWARC-Target-URI: {url}\r\nWARC-Date: {date}\r\n"
        f"WARC-Record-ID: <urn:uuid:{record_id}>\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(block)}\r\n\r\n"
    )
    return head.encode() + block + b"\r\n\r\n"


def _gzip_member(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def build_commoncrawl(rust_docs: Path, out: Path) -> None:
    """Rust book chapters as WARC responses (one gzip member per record), plus their WET conversions."""
    from herd.data.sources.html import html_to_text

    pages = sorted(rust_docs.glob("ch*.html"))
    if not pages:
        raise SystemExit(f"{rust_docs}: no ch*.html pages (pass --rust-docs)")
    warc, wet = [], []
    for i, page in enumerate(pages):
        html = page.read_bytes()
        url = BOOK_URL + page.name
        dates = ["2024-03-01T00:00:00Z"] + (["2025-01-15T00:00:00Z"] if i % 20 == 0 else [])
        for date in dates:  # some pages fetched twice: URL dedup keeps the later fetch
            http = b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
            http += f"Content-Length: {len(html)}\r\n\r\n".encode() + html
            warc.append(
                _gzip_member(_warc_record("response", url, date, http, "application/http; msgtype=response"))
            )
            text = html_to_text(html.decode("utf-8")).encode("utf-8")
            wet.append(_gzip_member(_warc_record("conversion", url, date, text, "text/plain")))
    out.mkdir(parents=True, exist_ok=True)
    (out / "rust-book.warc.gz").write_bytes(b"".join(warc))
    (out / "rust-book.warc.wet.gz").write_bytes(b"".join(wet))


WIKI = """<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.11/" xml:lang="en">
  <siteinfo><sitename>Herdpedia</sitename><dbname>enwiki</dbname></siteinfo>
  <page>
    <title>Llama</title><ns>0</ns><id>1</id>
    <revision><id>11</id><text xml:space="preserve">{{Short description|Domesticated South American camelid}}
{{Infobox animal|name=Llama|status=Domesticated}}
The '''llama''' (''Lama glama'') is a domesticated [[South America]]n [[camelid]], kept by Andean cultures as a [[pack animal|pack and meat animal]] since before the Inca.&lt;ref&gt;Herd authors, ''Notes on llamas'', 2024.&lt;/ref&gt;
&lt;!-- editors: keep this article short --&gt;

== Description ==
A grown llama stands 1.7 to 1.8 m tall at the top of the head and weighs 130 to 200 kg. Llamas are social animals and live with others as a '''herd'''. Their wool is soft and contains only a small amount of lanolin.

{| class="wikitable"
! Feature !! Value
|-
| Height || 1.8 m
|}

== Behaviour ==
Llamas that are well socialised and trained to halter and lead are friendly and pleasant to be around. They communicate with ear postures, body language and a humming sound.

[[File:Llama.jpg|thumb|A llama in the Andes]]
[[Category:Camelids]]</text></revision>
  </page>
  <page>
    <title>Alpaca</title><ns>0</ns><id>2</id>
    <revision><id>21</id><text xml:space="preserve">The '''alpaca''' is a species of South American camelid, similar to and often confused with the [[llama]]. Alpacas are considerably smaller than llamas and were not bred to be working animals, but were bred specifically for their fibre &amp; wool.&lt;ref name="fibre"/&gt;

== Fibre ==
Alpaca fibre is used for making knitted and woven items, much as sheep's wool is. These items include blankets, sweaters, hats, gloves, scarves and a wide variety of textiles.</text></revision>
  </page>
  <page>
    <title>Lama glama</title><ns>0</ns><id>3</id><redirect title="Llama"/>
    <revision><id>31</id><text xml:space="preserve">#REDIRECT [[Llama]]</text></revision>
  </page>
  <page>
    <title>Talk:Llama</title><ns>1</ns><id>4</id>
    <revision><id>41</id><text xml:space="preserve">Should the article mention guard llamas?</text></revision>
  </page>
</mediawiki>
"""


def build_wikipedia(out: Path) -> None:
    """A hand-written MediaWiki export (own text), bz2-compressed like the real dumps."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "enwiki-sample-pages-articles.xml.bz2").write_bytes(bz2.compress(WIKI.encode("utf-8")))


def build_github(out: Path) -> None:
    """A few files of mwparserfromhell (MIT) with its licence, as a repository tree."""
    import importlib.metadata
    import importlib.util

    spec = importlib.util.find_spec(CODE_PACKAGE)
    if spec is None or spec.origin is None:
        raise SystemExit(f"{CODE_PACKAGE} is not installed (pip install mwparserfromhell)")
    package = Path(spec.origin).parent
    repo = out / CODE_PACKAGE
    shutil.rmtree(repo, ignore_errors=True)
    (repo / "src").mkdir(parents=True)
    license_file = next(f for f in importlib.metadata.files(CODE_PACKAGE) or [] if "LICENSE" in f.name)
    (repo / "LICENSE").write_text(license_file.read_text())
    for name in CODE_FILES:
        shutil.copyfile(package / name, repo / "src" / name)


GUTENBERG = """The Project Gutenberg eBook of {title}

This eBook is for the use of anyone anywhere in the United States and most other parts of the world
at no cost and with almost no restrictions whatsoever.

Title: {title}

Language: English

*** START OF THE PROJECT GUTENBERG EBOOK {upper} ***

{body}

*** END OF THE PROJECT GUTENBERG EBOOK {upper} ***

Updated editions will replace the previous one. Creating the works from print editions not
protected by U.S. copyright law means that no one owns a United States copyright in these works.
"""

DECLARATION = """IN CONGRESS, July 4, 1776.

The unanimous Declaration of the thirteen united States of America,

When in the Course of human events, it becomes necessary for one people to dissolve the political bands
which have connected them with another, and to assume among the powers of the earth, the separate and
equal station to which the Laws of Nature and of Nature's God entitle them, a decent respect to the
opinions of mankind requires that they should declare the causes which impel them to the separation.

We hold these truths to be self-evident, that all men are created equal, that they are endowed by their
Creator with certain unalienable Rights, that among these are Life, Liberty and the pursuit of Happiness.
That to secure these rights, Governments are instituted among Men, deriving their just powers from the
consent of the governed, That whenever any Form of Government becomes destructive of these ends, it is
the Right of the People to alter or to abolish it, and to institute new Government, laying its
foundation on such principles and organizing its powers in such form, as to them shall seem most likely
to effect their Safety and Happiness."""

HERDING = """Chapter I. The High Pasture

Every spring the herders of the valley drove their llamas up the old stone path to the high pasture.
The animals walked in a long line, each carrying a small load of salt, wool and dried maize, and the
youngest herder walked at the back to call to any llama that stopped to look at the view.

At the top the grass was short and sweet. The llamas hummed to one another while the herders built the
fold from loose stones, and in the evening the whole valley lay blue and quiet below them.

Chapter II. The Storm

On the third night a storm came over the ridge. The herders gathered the animals inside the fold and
sat with their backs to the wall, listening to the rain. In the morning every llama was safe, and the
oldest herder said that the mountain had only wanted to remind them that it was there."""


def build_books(out: Path) -> None:
    """Two public-domain books in Gutenberg format and a near-duplicate second edition of one."""
    out.mkdir(parents=True, exist_ok=True)
    books = {
        "declaration.txt": ("The Declaration of Independence", DECLARATION),
        "declaration-2nd-edition.txt": ("The Declaration of Independence (2nd edition)", DECLARATION + "\n"),
        "high-pasture.txt": ("The High Pasture", HERDING),
    }
    for name, (title, body) in books.items():
        (out / name).write_text(GUTENBERG.format(title=title, upper=title.upper(), body=body))


PAPER = r"""\documentclass{article}
\usepackage{amsmath}
% Macros used throughout the paper.
\newcommand{\model}{\textsc{Herd}}
\newcommand{\loss}[2]{\mathcal{L}_{#1}(#2)}
\newcommand{\norm}[1][2]{\|x\|_{#1}}
\def\eps{\varepsilon}
\def\pair#1#2{\langle #1, #2 \rangle}

\title{Notes on Herding Tokens}
\author{The herd authors}
\begin{document}
\maketitle
\begin{abstract}
We describe how \model{} prepares pretraining data.
\end{abstract}

\section{Introduction}
Language models are trained on 50\% web text % the rest is curated
and we minimise $\loss{\theta}{x}$ with a step size $\eps$.% no space before this comment
The inner product $\pair{a}{b}$ and the norm $\norm$ or $\norm[1]$ appear often.

\section{Method}
Documents are deduplicated with MinHash~\cite{broder1997}.
%\section{Removed section}

\bibliographystyle{plain}
\begin{thebibliography}{9}
\bibitem{broder1997} A. Broder. On the resemblance and containment of documents. 1997.
\end{thebibliography}
\end{document}
"""


def build_arxiv(out: Path) -> None:
    """An own LaTeX paper source as an ArXiv-style .tar.gz (fixed mtimes)."""
    out.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        data = PAPER.encode("utf-8")
        info = tarfile.TarInfo("main.tex")
        info.size, info.mtime = len(data), 0
        tar.addfile(info, io.BytesIO(data))
    (out / "2401.00001.tar.gz").write_bytes(buffer.getvalue())


POSTS = """<?xml version="1.0" encoding="utf-8"?>
<posts>
  <row Id="1" PostTypeId="1" Score="12" Title="How long should llama wool be washed?" Body="&lt;p&gt;I have raw &lt;b&gt;llama&lt;/b&gt; fibre. How long should I soak it?&lt;/p&gt;" />
  <row Id="2" PostTypeId="2" ParentId="1" Score="9" Body="&lt;p&gt;Twenty minutes in warm water is enough.&lt;/p&gt;" />
  <row Id="3" PostTypeId="2" ParentId="1" Score="10" Body="&lt;p&gt;Soak it for &lt;code&gt;30&lt;/code&gt; minutes, then rinse twice.&lt;/p&gt;" />
  <row Id="4" PostTypeId="2" ParentId="1" Score="-1" Body="&lt;p&gt;Never wash it.&lt;/p&gt;" />
  <row Id="5" PostTypeId="2" ParentId="1" Score="0" Body="&lt;p&gt;Use a mesh bag &amp;amp; cold water.&lt;/p&gt;" />
  <row Id="6" PostTypeId="1" Score="3" Title="Can alpacas and llamas share a field?" Body="&lt;p&gt;Is it safe to keep them together?&lt;/p&gt;" />
  <row Id="7" PostTypeId="2" ParentId="6" Score="4" Body="&lt;p&gt;Yes, they are close relatives and get along well.&lt;/p&gt;" />
</posts>
"""


def build_stackexchange(out: Path) -> None:
    """An own-content ``Posts.xml`` in the StackExchange dump schema (scores 10 vs 9 test numeric order)."""
    site = out / "llamas.stackexchange.com"
    site.mkdir(parents=True, exist_ok=True)
    (site / "Posts.xml").write_text(POSTS)


def build_models(wikipedia: Path, out: Path) -> None:
    """CCNet's perplexity model in miniature: a 5-gram Kneser-Ney ARPA estimated on the Wikipedia sample."""
    from herd.data.quality.ngram_lm import estimate_kneser_ney, sentences
    from herd.data.sources.wikipedia import WikipediaReader

    docs = WikipediaReader().read_files(sorted(wikipedia.glob("*.xml.bz2")))
    model = estimate_kneser_ney((s for doc in docs for s in sentences(doc.text)), order=5)
    out.mkdir(parents=True, exist_ok=True)
    model.write_arpa(out / "enwiki-sample.5gram.arpa")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rust-docs", type=Path, default=RUST_DOCS, help="the Rust book's HTML directory")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    build_commoncrawl(args.rust_docs, args.out / "commoncrawl")
    build_wikipedia(args.out / "wikipedia")
    build_github(args.out / "github")
    build_books(args.out / "books")
    build_arxiv(args.out / "arxiv")
    build_stackexchange(args.out / "stackexchange")
    build_models(args.out / "wikipedia", args.out / "models")


if __name__ == "__main__":
    main()
