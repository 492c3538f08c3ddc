"""Names recipes use for readers and steps, mapped to their classes, and checks of their arguments.

A recipe's step arguments reach a step's constructor as TOML values; a string
where the step counts words would only fail inside a worker, mid-build, as a
``TypeError``. :func:`check_arguments` compares every argument with the type
annotation of the constructor's parameter first (TOML arrays stand for any
sequence or set, tables for mappings, strings for paths), so a wrong value is
one error naming the recipe key before anything runs.
"""

from __future__ import annotations

import collections.abc
import inspect
import os
import types
import typing
from typing import Any, Literal

from herd.config import has_type
from herd.data.dedup.exact import ExactDedup
from herd.data.dedup.lines import BucketLineDedup, CCNetLineDedup
from herd.data.dedup.minhash import BookDedup, MinhashDedup
from herd.data.dedup.semantic import SemanticDedup
from herd.data.dedup.url import UrlDedup
from herd.data.errors import DataInputError
from herd.data.filters.c4 import C4Filter
from herd.data.filters.dirty_words import DirtyWordFilter
from herd.data.filters.github import CopyrightHeaderRemoval, GitHubFilter
from herd.data.filters.gopher import GopherQualityFilter, GopherRepetitionFilter
from herd.data.filters.kl import TokenKLFilter
from herd.data.filters.ngram_coverage import NgramCoverageFilter
from herd.data.filters.pii import PIIRedactor
from herd.data.filters.url import UrlBlocklistFilter
from herd.data.fingerprint import component_identity
from herd.data.io.jsonl import JsonlReader
from herd.data.io.parquet import ParquetReader
from herd.data.io.reader import Reader
from herd.data.quality.embedding_classifier import EmbeddingQualityFilter
from herd.data.quality.langid import LanguageIdFilter
from herd.data.quality.perplexity import PerplexityFilter
from herd.data.quality.wiki_classifier import WikiReferenceFilter
from herd.data.sources.arxiv import ArxivReader
from herd.data.sources.books import GutenbergReader
from herd.data.sources.github import GitHubReader
from herd.data.sources.stackexchange import StackExchangeReader
from herd.data.sources.warc import WarcReader, WetReader
from herd.data.sources.wikipedia import WikipediaReader
from herd.data.step import Step

READERS: dict[str, type[Reader]] = {
    "jsonl": JsonlReader,
    "parquet": ParquetReader,
    "warc": WarcReader,
    "wet": WetReader,
    "wikipedia": WikipediaReader,
    "gutenberg": GutenbergReader,
    "arxiv": ArxivReader,
    "stackexchange": StackExchangeReader,
    "github": GitHubReader,
}

STEPS: dict[str, type[Step]] = {
    cls.name: cls
    for cls in (
        C4Filter,
        GopherQualityFilter,
        GopherRepetitionFilter,
        GitHubFilter,
        CopyrightHeaderRemoval,
        PIIRedactor,
        DirtyWordFilter,
        NgramCoverageFilter,
        UrlBlocklistFilter,
        TokenKLFilter,
        CCNetLineDedup,
        BucketLineDedup,
        UrlDedup,
        ExactDedup,
        MinhashDedup,
        BookDedup,
        SemanticDedup,
        LanguageIdFilter,
        PerplexityFilter,
        WikiReferenceFilter,
        EmbeddingQualityFilter,
    )
}


# What stands for a sequence or set argument: a TOML array, or what a recipe made in code may pass.
SEQUENCES = (list, tuple, set, frozenset)


def _class(kind: str, table: dict[str, type], name: Any, where: str) -> type:
    if not isinstance(name, str) or name not in table:
        raise DataInputError(f"{where}: unknown {kind} {name!r} (known: {', '.join(sorted(table))})")
    return table[name]


def check_arguments(cls: type, kwargs: dict[str, Any], where: str) -> None:
    """Refuse, naming ``where.KEY``, an argument ``cls`` does not take or whose value has the wrong type."""
    hints = typing.get_type_hints(cls.__init__)
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
    named = {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    rest = next((p.name for p in parameters if p.kind is p.VAR_KEYWORD), None)
    for key, value in kwargs.items():
        if key not in named and rest is None:
            known = ", ".join(sorted(named)) or "none"
            raise DataInputError(f"{where}.{key}: unknown argument (known: {known})")
        hint = hints.get(key if key in named else str(rest), Any)
        if not _matches(value, hint):
            raise DataInputError(f"{where}.{key}: expected {_type_name(hint)}, got {value!r}")


def _matches(value: Any, hint: Any) -> bool:
    """Whether a TOML ``value`` can stand for a parameter annotated ``hint`` (unknown forms pass)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if origin is Literal:
        return value in args
    if hint in (str, int, float, bool):
        return has_type(value, hint)
    container = origin or hint
    if not isinstance(container, type):
        return True
    if issubclass(container, os.PathLike):
        return isinstance(value, str)
    if issubclass(container, collections.abc.Mapping):
        key_type, value_type = (*args, Any, Any)[:2]
        return isinstance(value, dict) and all(
            (_matches(k, key_type) or (key_type is int and _is_integer_text(k))) and _matches(v, value_type)
            for k, v in value.items()
        )
    if issubclass(container, tuple) and args and args[-1] is not Ellipsis:
        return isinstance(value, SEQUENCES) and len(value) == len(args) and all(map(_matches, value, args))
    if issubclass(container, collections.abc.Iterable) and not issubclass(container, (str, bytes)):
        return isinstance(value, SEQUENCES) and (not args or all(_matches(v, args[0]) for v in value))
    return isinstance(value, container)


def _is_integer_text(key: Any) -> bool:
    """A TOML table key that spells an integer (TOML keys are always strings)."""
    return isinstance(key, str) and key.removeprefix("-").isdigit()


def _type_name(hint: Any) -> str:
    """``hint`` as a reader would write it (``int``, ``Iterable[str] | None``)."""
    text = hint.__name__ if isinstance(hint, type) and not typing.get_args(hint) else str(hint)
    return text.replace("collections.abc.", "").replace("pathlib.", "").replace("typing.", "")


def _make(kind: str, table: dict[str, type], name: str, kwargs: dict[str, Any], where: str) -> Any:
    cls = _class(kind, table, name, where)
    check_arguments(cls, kwargs, where)
    try:
        made = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise DataInputError(f"{where}: bad arguments for {kind} {name!r}: {exc}") from None
    made.identity = component_identity(kind, name, kwargs)
    return made


def make_reader(name: str, kwargs: dict[str, Any], where: str) -> Reader:
    """The reader ``name`` built with ``kwargs``; unknown names and arguments are rejected by name."""
    return _make("reader", READERS, name, kwargs, where)


def make_step(name: str, kwargs: dict[str, Any], where: str) -> Step:
    """The step ``name`` built with ``kwargs``; unknown names and arguments are rejected by name."""
    return _make("step", STEPS, name, kwargs, where)


def check_reader(name: Any, kwargs: dict[str, Any], where: str) -> None:
    """Refuse an unknown reader name or a reader argument of the wrong type (see :func:`check_arguments`)."""
    check_arguments(_class("reader", READERS, name, where), kwargs, where)


def check_step(name: Any, kwargs: dict[str, Any], where: str) -> None:
    """Refuse an unknown step type or a step argument of the wrong type (see :func:`check_arguments`)."""
    check_arguments(_class("step", STEPS, name, where), kwargs, where)
