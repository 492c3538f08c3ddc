"""GitHub file rules (Llama 1 §2.1): permissive licences, source extensions, line shape, no headers.

Llama 1 kept Apache, BSD and MIT projects, filtered files "with heuristics
based on the line length or proportion of alphanumeric characters", removed
boilerplate such as headers with regular expressions, and deduplicated files
exactly. The thresholds are RedPajama's (docs/spec.md §4): maximum line length 1000,
mean line length 100, alphanumeric fraction 0.25.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from herd.data.document import Document
from herd.data.step import Filter, Step

PERMISSIVE_LICENSES = frozenset(("MIT", "Apache-2.0", "BSD-2-Clause", "BSD-3-Clause"))
SOURCE_EXTENSIONS = frozenset(
    [
        ".asm",
        ".bat",
        ".c",
        ".cc",
        ".cpp",
        ".cs",
        ".css",
        ".cxx",
        ".el",
        ".erl",
        ".ex",
        ".exs",
        ".f",
        ".f90",
        ".go",
        ".h",
        ".hpp",
        ".hs",
        ".html",
        ".java",
        ".jl",
        ".js",
        ".jsx",
        ".kt",
        ".lisp",
        ".lua",
        ".m",
        ".md",
        ".ml",
        ".php",
        ".pl",
        ".pm",
        ".ps1",
        ".py",
        ".r",
        ".rb",
        ".rs",
        ".rst",
        ".scala",
        ".sh",
        ".sql",
        ".swift",
        ".tex",
        ".ts",
        ".tsx",
        ".vue",
        ".zig",
    ]
)

_LICENSE_MARKERS = (
    ("Apache-2.0", re.compile(r"Apache License,?\s+Version 2\.0", re.I)),
    (
        "MIT",
        re.compile(r"Permission is hereby granted, free of charge, to any person obtaining a copy", re.I),
    ),
    (
        "BSD-3-Clause",
        re.compile(r"Neither the name of .{0,200}? nor the names of its\s+contributors", re.I | re.S),
    ),
    ("BSD-2-Clause", re.compile(r"Redistributions in binary form must reproduce the above copyright", re.I)),
)


def detect_license(text: str) -> str | None:
    """The SPDX id of a licence file's text when it is Apache-2.0, MIT, BSD-3-Clause or BSD-2-Clause."""
    for spdx, pattern in _LICENSE_MARKERS:
        if pattern.search(text):
            return spdx
    return None


class GitHubFilter(Filter):
    """Keeps permissively licensed source files with sane line lengths and enough alphanumerics.

    The licence is read from ``metadata["license"]`` (set by the GitHub
    reader); documents without one are dropped as ``license``.
    """

    name = "github"

    def __init__(
        self,
        licenses: frozenset[str] = PERMISSIVE_LICENSES,
        extensions: frozenset[str] = SOURCE_EXTENSIONS,
        max_line_length: int = 1000,
        max_mean_line_length: float = 100.0,
        min_alnum_fraction: float = 0.25,
    ) -> None:
        super().__init__()
        self.licenses = frozenset(licenses)
        self.extensions = frozenset(extensions)
        self.max_line_length = max_line_length
        self.max_mean_line_length = max_mean_line_length
        self.min_alnum_fraction = min_alnum_fraction

    def check(self, doc: Document) -> str | None:
        if doc.metadata.get("license") not in self.licenses:
            return "license"
        path = str(doc.metadata.get("path", doc.id))
        if PurePosixPath(path).suffix.lower() not in self.extensions:
            return "extension"
        lengths = [len(line) for line in doc.text.splitlines()] or [0]
        if max(lengths) > self.max_line_length:
            return "max_line_length"
        if sum(lengths) / len(lengths) > self.max_mean_line_length:
            return "mean_line_length"
        if sum(c.isalnum() for c in doc.text) / max(1, len(doc.text)) < self.min_alnum_fraction:
            return "alnum_fraction"
        return None


_COMMENT_LINE = re.compile(r"^\s*(#|//|--|;|%|\*|/\*|\*/|<!--|-->|\"\"\"|''')")
_COPYRIGHT = re.compile(r"copyright|\(c\)|©|licen[cs]ed|spdx-license-identifier|all rights reserved", re.I)


class CopyrightHeaderRemoval(Step):
    """Strips a leading comment block that mentions copyright or a licence (Llama 1 §2.1 "headers").

    Only the first block of comment lines (and blank lines between them) is
    considered, and only removed when it names a copyright or licence; a
    docstring or shebang that does not is left alone.
    """

    name = "copyright_header"

    def process(self, doc: Document) -> Document | str:
        lines = doc.text.splitlines(keepends=True)
        start = 1 if lines and lines[0].startswith("#!") else 0
        end = start
        while end < len(lines) and (_COMMENT_LINE.match(lines[end]) or not lines[end].strip()):
            end += 1
        if end > start and _COPYRIGHT.search("".join(lines[start:end])):
            doc.text = "".join(lines[:start] + lines[end:])
        return doc if doc.text.strip() else "empty_after_header_removal"
