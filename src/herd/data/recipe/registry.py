"""Names recipes use for readers and steps, mapped to their classes."""

from __future__ import annotations

from typing import Any

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


def _make(kind: str, table: dict[str, type], name: str, kwargs: dict[str, Any], where: str) -> Any:
    if name not in table:
        raise DataInputError(f"{where}: unknown {kind} {name!r} (known: {', '.join(sorted(table))})")
    try:
        return table[name](**kwargs)
    except TypeError as exc:
        raise DataInputError(f"{where}: bad arguments for {kind} {name!r}: {exc}") from None


def make_reader(name: str, kwargs: dict[str, Any], where: str) -> Reader:
    """The reader ``name`` built with ``kwargs``; unknown names and arguments are rejected by name."""
    return _make("reader", READERS, name, kwargs, where)


def make_step(name: str, kwargs: dict[str, Any], where: str) -> Step:
    """The step ``name`` built with ``kwargs``; unknown names and arguments are rejected by name."""
    return _make("step", STEPS, name, kwargs, where)
