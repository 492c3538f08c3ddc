"""Names recipes use for readers and steps, mapped to their classes, and checks of their arguments.

A recipe's step arguments reach a step's constructor as TOML values; a string
where the step counts words would only fail inside a worker, mid-build, as a
``TypeError``. :func:`check_arguments` compares every argument with the type
annotation of the constructor's parameter first (TOML arrays stand for any
sequence or set, tables for mappings, strings for paths), and every number
with the range :data:`RANGES` gives its name, and names the parameters that
have no default and were not given, so a wrong value is one error naming the
recipe key before anything runs. A mistyped step, reader or argument name is
answered with the nearest known one.
"""

from __future__ import annotations

import collections.abc
import inspect
import math
import os
import types
import typing
from typing import Any, Literal

from herd.config import has_type
from herd.data.checks import unknown_name
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

# The closed interval each numeric step or reader argument (or each value of a table of numbers) must
# lie in, by parameter name: a name means the same in every step that has it. Shares, probabilities and
# similarities are in [0, 1]; sizes, n-gram orders and band shapes are at least 1; the other counts,
# lengths and scores are 0 or more. tests/data check that every numeric parameter is listed here.
RANGES: dict[str, tuple[float, float]] = {
    **dict.fromkeys(
        (
            "threshold",
            "max_fraction",
            "min_alnum_fraction",
            "max_dup_line_fraction",
            "max_dup_para_fraction",
            "max_dup_line_char_fraction",
            "max_dup_para_char_fraction",
            "max_bullet_lines_ratio",
            "max_ellipsis_lines_ratio",
            "min_alpha_words_ratio",
            "top_ngrams",  # n -> the share of characters in the top n-gram
            "dup_ngrams",  # n -> the share of characters in duplicated n-grams
        ),
        (0.0, 1.0),
    ),
    "eps": (0.0, 2.0),  # a cosine distance
    **dict.fromkeys(
        (
            "n",
            "bands",
            "rows",
            "batch_size",
            "bucket_size",
            "docs_per_cluster",
            "max_line_length",
            "max_word_length",
            "max_record_bytes",
        ),
        (1.0, math.inf),
    ),
    **dict.fromkeys(
        (
            "seed",
            "min_words",
            "max_words",
            "min_words_per_line",
            "min_sentences",
            "min_stop_words",
            "min_doc_chars",
            "max_occurrences",
            "max_count",
            "min_mean_word_length",
            "max_mean_word_length",
            "max_mean_line_length",
            "max_symbol_word_ratio",
            "max_kl",
            "head",
            "tail",
        ),
        (0.0, math.inf),
    ),
}


def _class(kind: str, table: dict[str, type], name: Any, where: str) -> type:
    if not isinstance(name, str) or name not in table:
        raise DataInputError(f"{where}: unknown {kind} {name!r} {unknown_name(name, table)}")
    return table[name]


def parameters(cls: type) -> tuple[dict[str, Any], set[str], bool]:
    """The keyword parameters ``cls(...)`` takes with their type hints, those without a default, and
    whether it takes any other name.

    A ``**kwargs`` is followed into the constructor of the next base class
    that defines one (herd's readers pass theirs on to
    :class:`~herd.data.io.reader.Reader`); only a ``**kwargs`` that no base
    constructor explains accepts any name.
    """
    hints: dict[str, Any] = {}
    required: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        annotations = typing.get_type_hints(init)
        signature = list(inspect.signature(init).parameters.values())[1:]
        for p in signature:
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in hints:
                hints[p.name] = annotations.get(p.name, Any)
                if p.default is p.empty:
                    required.add(p.name)
        if not any(p.kind is p.VAR_KEYWORD for p in signature):
            return hints, required, False
    return hints, required, True


def check_arguments(cls: type, kwargs: dict[str, Any], where: str) -> None:
    """Refuse, naming ``where: KEY``, an argument ``cls`` does not take, whose value has the wrong type or
    lies outside its :data:`RANGES`, or a parameter without a default that is missing."""
    hints, required, any_name = parameters(cls)
    for key, value in kwargs.items():
        if key not in hints and not any_name:
            raise DataInputError(f"{where}: {key}: unknown argument {unknown_name(key, hints)}")
        hint = hints.get(key, Any)
        if not _matches(value, hint):
            raise DataInputError(f"{where}: {key}: expected {_type_name(hint)}, got {value!r}")
        _check_range(key, value, where)
    missing = sorted(required - set(kwargs))
    if missing:
        raise DataInputError(f"{where}: missing argument {missing[0]!r} ({_type_name(hints[missing[0]])})")


def _check_range(key: str, value: Any, where: str) -> None:
    """Refuse a number outside the interval :data:`RANGES` gives ``key`` (NaN included); for a table of
    numbers, each of its values."""
    if key not in RANGES:
        return
    named = value.items() if isinstance(value, dict) else [(None, value)]
    for entry, number in named:
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            continue
        low, high = RANGES[key]
        if not low <= number <= high:
            bound = f"in [{low:g}, {high:g}]" if math.isfinite(high) else f"at least {low:g}"
            name = key if entry is None else f"{key}.{entry}"
            raise DataInputError(f"{where}: {name}: must be {bound}, got {number!r}")


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
    except DataInputError as exc:  # the constructor's own check (a model file, a value it refuses)
        raise DataInputError(f"{where}: {exc}") from None
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
