"""LaTeX cleaning for ArXiv sources (Llama 1 §2.1).

Llama 1 removed everything before the first section and the bibliography,
removed comments, and inline-expanded user macros (``\\newcommand``, ``\\def``).
Two bugs of public reproductions are avoided: the comment pattern keeps the
character before ``%`` (a ``[^\\\\]%`` pattern deletes it), and escaped ``\\%``
is not a comment; macros with arguments (``[n]``, optional defaults, ``#1``)
are expanded, not only argument-less ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_COMMENT = re.compile(r"(?<!\\)((?:\\\\)*)%[^\n]*")
_NEWCOMMAND = re.compile(r"\\(?:re)?(?:newcommand|providecommand)\*?\s*")
_DEF = re.compile(r"\\def\s*(\\[A-Za-z@]+)((?:#\d)*)\s*(?=\{)")
_SECTION = re.compile(r"\\(?:part|chapter|section|subsection|subsubsection|paragraph)\*?\s*[\[{]")
_BIBLIOGRAPHY = re.compile(r"\\begin\{thebibliography\}.*?(?:\\end\{thebibliography\}|$)", re.S)
_BIB_COMMANDS = re.compile(r"\\(?:bibliography|bibliographystyle|printbibliography)\b(?:\{[^}]*\})?")
_END_DOCUMENT = re.compile(r"\\end\{document\}.*", re.S)
_BLANKS = re.compile(r"\n\s*\n(\s*\n)+")
MAX_EXPANSION_ROUNDS = 10


def strip_comments(tex: str) -> str:
    """``tex`` without ``%`` comments; the character before ``%`` and escaped ``\\%`` are kept."""
    return _COMMENT.sub(r"\1", tex)


def _group(tex: str, start: int) -> tuple[str, int] | None:
    """The balanced ``{...}`` group at ``start`` (after spaces): (contents, end index), or ``None``."""
    i = start
    while i < len(tex) and tex[i] in " \t\n":
        i += 1
    if i >= len(tex) or tex[i] != "{":
        return None
    depth = 0
    for j in range(i, len(tex)):
        if tex[j] == "\\":
            continue
        if tex[j] == "{" and tex[j - 1] != "\\":
            depth += 1
        elif tex[j] == "}" and tex[j - 1] != "\\":
            depth -= 1
            if depth == 0:
                return tex[i + 1 : j], j + 1
    return None


def _argument(tex: str, start: int) -> tuple[str, int] | None:
    """One macro argument at ``start``: a brace group or a single (control) token."""
    if (group := _group(tex, start)) is not None:
        return group
    i = start
    while i < len(tex) and tex[i] in " \t\n":
        i += 1
    if i >= len(tex):
        return None
    if m := re.match(r"\\[A-Za-z@]+|\\.|.", tex[i:], re.S):
        return m.group(), i + m.end()
    return None


@dataclass(frozen=True)
class Macro:
    """A user macro: ``nargs`` arguments, the first optional with ``default`` when given."""

    name: str
    nargs: int
    body: str
    default: str | None = None


def extract_macros(tex: str) -> tuple[dict[str, Macro], str]:
    """The ``\\newcommand``/``\\def`` macros of ``tex`` and ``tex`` with their definitions removed."""
    macros: dict[str, Macro] = {}
    out: list[str] = []
    pos = 0
    for m in re.finditer(r"\\(?:re)?(?:newcommand|providecommand)\*?|\\def(?![A-Za-z])", tex):
        if m.start() < pos:
            continue
        parsed = _parse_definition(tex, m.start())
        if parsed is None:
            continue
        macro, end = parsed
        macros[macro.name] = macro
        out.append(tex[pos : m.start()])
        pos = end
    out.append(tex[pos:])
    return macros, "".join(out)


def _parse_definition(tex: str, start: int) -> tuple[Macro, int] | None:
    if m := _DEF.match(tex, start):
        body = _group(tex, m.end())
        if body is None:
            return None
        return Macro(m.group(1), len(m.group(2)) // 2, body[0]), body[1]
    m = _NEWCOMMAND.match(tex, start)
    if m is None:
        return None
    i = m.end()
    if (braced := _group(tex, i)) is not None:
        name, i = braced[0].strip(), braced[1]
    elif nm := re.match(r"\s*(\\[A-Za-z@]+)", tex[i:]):
        name, i = nm.group(1), i + nm.end()
    else:
        return None
    nargs, default = 0, None
    if nm := re.match(r"\s*\[(\d)\]", tex[i:]):
        nargs, i = int(nm.group(1)), i + nm.end()
        if dm := re.match(r"\s*\[([^\]]*)\]", tex[i:]):
            default, i = dm.group(1), i + dm.end()
    body = _group(tex, i)
    if body is None or not re.fullmatch(r"\\[A-Za-z@]+", name):
        return None
    return Macro(name, nargs, body[0], default), body[1]


def _substitute(body: str, args: list[str]) -> str:
    """``body`` with ``#1``..``#9`` replaced by ``args`` (missing ones by nothing).

    A space is kept between a control word and an argument starting with a
    letter (``\\langle#1`` with ``a`` gives ``\\langle a``, not ``\\langlea``).
    """

    def arg(m: re.Match[str]) -> str:
        n = int(m.group(1))
        value = args[n - 1] if n <= len(args) else ""
        if value[:1].isalpha() and re.search(r"\\[A-Za-z@]+$", body[: m.start()]):
            return " " + value
        return value

    return re.sub(r"#(\d)", arg, body)


def expand_macros(tex: str, macros: dict[str, Macro]) -> str:
    """``tex`` with every use of ``macros`` replaced by its body, arguments substituted (nested too)."""
    if not macros:
        return tex
    names = "|".join(re.escape(n) for n in sorted(macros, key=len, reverse=True))
    use = re.compile(rf"({names})(?![A-Za-z@])")
    for _ in range(MAX_EXPANSION_ROUNDS):
        out: list[str] = []
        pos = 0
        changed = False
        for m in use.finditer(tex):
            if m.start() < pos:
                continue
            macro = macros[m.group(1)]
            args: list[str] = []
            i = m.end()
            if macro.default is not None:
                if om := re.match(r"\s*\[([^\]]*)\]", tex[i:]):
                    args.append(om.group(1))
                    i += om.end()
                else:
                    args.append(macro.default)
            while len(args) < macro.nargs and (arg := _argument(tex, i)) is not None:
                args.append(arg[0])
                i = arg[1]
            if len(args) < macro.nargs:
                continue
            body = _substitute(macro.body, args)
            out.append(tex[pos : m.start()])
            out.append(body)
            pos = i
            changed = True
        out.append(tex[pos:])
        tex = "".join(out)
        if not changed:
            break
    return tex


def clean_latex(tex: str) -> str:
    """An ArXiv paper's body: comments stripped, macros expanded, preamble and bibliography removed.

    Returns an empty string when the source has no section (nothing Llama 1 would keep).
    """
    tex = strip_comments(tex)
    macros, tex = extract_macros(tex)
    first = _SECTION.search(tex)
    if first is None:
        return ""
    tex = tex[first.start() :]
    tex = _END_DOCUMENT.sub("", tex)
    tex = _BIBLIOGRAPHY.sub("", tex)
    tex = _BIB_COMMANDS.sub("", tex)
    tex = expand_macros(tex, macros)
    return _BLANKS.sub("\n\n", tex).strip()
