"""Steps: generators over documents that keep stats and can record what they drop.

A step's :meth:`Step.process` returns the (possibly rewritten) document to keep
it, or a short drop-reason string such as ``"too_few_words"`` to drop it
(datatrove-style). Dropped documents go to the step's exclusion writer when one
is attached, tagged with the step and reason, so a user can inspect why each
document went. Steps that need to see several documents at once (bucketed line
dedup, URL dedup) override :meth:`Step.run` and report through
:meth:`Step.keep` and :meth:`Step.drop`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

from herd.data.document import Document
from herd.data.stats import StepStats


class DocumentSink(Protocol):
    """Anything documents can be written to (a JSONL or Parquet writer)."""

    def write(self, doc: Document) -> None: ...


class Step:
    """Base class of every filter and transform; subclasses set ``name`` and implement ``process``."""

    name: str = "step"
    # What the recipe built this step from (its name, arguments and the files they name), set by
    # herd.data.recipe.registry; completion markers fingerprint it. A step made in code has none: its
    # class stands in (herd.data.fingerprint).
    identity: dict[str, Any] | None = None

    def __init__(self) -> None:
        self.stats = StepStats(self.name)
        self.exclusion: DocumentSink | None = None

    def process(self, doc: Document) -> Document | str:
        """The document to keep (maybe rewritten), or the reason it is dropped."""
        raise NotImplementedError

    def run(self, docs: Iterable[Document]) -> Iterator[Document]:
        """Apply :meth:`process` to each document, keeping stats."""
        for doc in docs:
            start = time.perf_counter()
            result = self.process(doc)
            self.stats.seconds += time.perf_counter() - start
            if isinstance(result, str):
                self.drop(doc, result)
            else:
                self.keep(result, doc)
                yield result

    def keep(self, doc: Document, original: Document | None = None) -> None:
        """Count ``doc`` (rewritten from ``original``) as kept."""
        self.stats.docs_in += 1
        self.stats.bytes_in += _size(original or doc)
        self.stats.kept += 1
        self.stats.bytes_out += _size(doc)

    def drop(self, doc: Document, reason: str) -> None:
        """Count ``doc`` as dropped for ``reason`` and send it to the exclusion writer."""
        self.stats.docs_in += 1
        self.stats.bytes_in += _size(doc)
        self.stats.dropped[reason] += 1
        if self.exclusion is not None:
            doc.metadata["dropped_by"] = f"{self.name}:{reason}"
            self.exclusion.write(doc)


class Filter(Step):
    """A step that only decides keep/drop: implement :meth:`check`."""

    def check(self, doc: Document) -> str | None:
        """The drop reason, or ``None`` to keep the document."""
        raise NotImplementedError

    def process(self, doc: Document) -> Document | str:
        return self.check(doc) or doc


def _size(doc: Document) -> int:
    return len(doc.text.encode("utf-8", "surrogatepass"))
