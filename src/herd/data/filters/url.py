"""Domain and URL block lists (Llama 3 §3.1.1: "harmful" and adult domains removed).

A document is dropped when the host of ``metadata["url"]``, or any parent
domain of it, is on the block list, or its full URL is.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from herd.data.document import Document
from herd.data.errors import DataInputError
from herd.data.step import Filter


def host_of(url: str) -> str:
    """The lower-cased host of ``url`` without a leading ``www.`` (empty if it has none)."""
    try:
        host = urlsplit(url.strip()).hostname or ""
    except ValueError:
        return ""
    return host.removeprefix("www.")


class UrlBlocklistFilter(Filter):
    """Drops documents from blocked domains (and their subdomains) or blocked URLs."""

    name = "url_blocklist"

    def __init__(
        self,
        domains: Iterable[str] = (),
        urls: Iterable[str] = (),
        domains_file: str | Path | None = None,
    ) -> None:
        super().__init__()
        listed = list(domains)
        if domains_file is not None:
            try:
                listed += Path(domains_file).read_text("utf-8").split()
            except (OSError, UnicodeDecodeError) as exc:
                raise DataInputError(f"{domains_file}: cannot read the domain block list ({exc})") from None
        self.domains = frozenset(d.lower().removeprefix("www.") for d in listed)
        self.urls = frozenset(urls)

    def check(self, doc: Document) -> str | None:
        url = str(doc.metadata.get("url", ""))
        if not url:
            return None
        if url in self.urls:
            return "blocked_url"
        parts = host_of(url).split(".")
        if any(".".join(parts[i:]) in self.domains for i in range(len(parts))):
            return "blocked_domain"
        return None
