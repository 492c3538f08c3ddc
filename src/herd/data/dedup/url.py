"""URL dedup keeping the most recent fetch of each page (Llama 3 §3.1.1).

All documents of the task are read first (a fetch later in the stream may be
newer), then each URL's most recent fetch (largest ``metadata["date"]``, an
ISO-8601 string as WARC-Date gives; ties keep the first) is emitted in the
original order. Documents without a URL pass through.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from herd.data.document import Document
from herd.data.filters.url import host_of
from herd.data.step import Step


def url_key(url: str) -> str:
    """A URL's identity: host without ``www.``, path and query, scheme and fragment ignored."""
    rest = url.split("://", 1)[-1].split("#", 1)[0]
    path = rest[rest.find("/") :] if "/" in rest else "/"
    return host_of(url) + path.rstrip("/")


class UrlDedup(Step):
    """Drops every fetch of a URL except the most recent."""

    name = "url_dedup"

    def run(self, docs: Iterable[Document]) -> Iterator[Document]:
        buffered = list(docs)
        latest: dict[str, int] = {}
        for i, doc in enumerate(buffered):
            url = doc.metadata.get("url")
            if not url:
                continue
            key = url_key(str(url))
            best = latest.get(key)
            if best is None or str(doc.metadata.get("date", "")) > str(
                buffered[best].metadata.get("date", "")
            ):
                latest[key] = i
        for i, doc in enumerate(buffered):
            url = doc.metadata.get("url")
            if url and latest[url_key(str(url))] != i:
                self.drop(doc, "older_fetch")
            else:
                self.keep(doc)
                yield doc
