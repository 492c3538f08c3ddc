"""HTML → text as Llama 3 §3.1.1 describes: main content, image alt text, code and math kept, no markdown.

Extraction is resiliparse's main-content ``extract_plain_text`` with
formatting preserved (so ``<pre>`` code keeps its line breaks and indentation)
and alt texts on. MathML and MathJax are replaced beforehand by their LaTeX
(``alttext`` / script body) between ``$`` signs, so formulas survive as
source. Markdown markers in the output (``#`` headings, ``**``/``__``
emphasis) are removed, as Llama 3 found them harmful for models trained
mostly on web data.
"""

from __future__ import annotations

import html as htmllib
import re

_MATHML = re.compile(r"<math\b[^>]*?\balttext\s*=\s*([\"'])(.*?)\1[^>]*>.*?</math>", re.S | re.I)
_MATHJAX = re.compile(r"<script\b[^>]*type\s*=\s*[\"']math/tex[^\"']*[\"'][^>]*>(.*?)</script>", re.S | re.I)
_MD_HEADING = re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+", re.M)
_MD_EMPHASIS = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")


def _math(latex: str) -> str:
    return f"<span>${htmllib.unescape(latex).strip()}$</span>"


def strip_markdown(text: str) -> str:
    """``text`` without markdown heading markers and ``**``/``__`` emphasis markers."""
    return _MD_EMPHASIS.sub(r"\2", _MD_HEADING.sub("", text))


def html_to_text(html: str, main_content: bool = True) -> str:
    """The readable text of an HTML page (see module docstring)."""
    from resiliparse.extract.html2text import extract_plain_text

    html = _MATHML.sub(lambda m: _math(m.group(2)), html)
    html = _MATHJAX.sub(lambda m: _math(m.group(1)), html)
    text = extract_plain_text(
        html, main_content=main_content, alt_texts=True, preserve_formatting=True, list_bullets=True
    )
    return strip_markdown(text).strip()
