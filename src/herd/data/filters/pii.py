"""PII redaction: e-mail addresses, IP addresses and phone numbers (Llama 3 §3.1.1).

Each match is replaced by a placeholder (``<EMAIL>``, ``<IP>``, ``<PHONE>``) and
the counts are recorded in ``metadata["pii"]``; documents are never dropped.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable

from herd.data.document import Document
from herd.data.step import Step

EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}\b")
IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.]|\.\d)")
IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){2,7}[0-9A-Fa-f]{1,4}(?![\w:])")
PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)[\s.-]?|\d{2,4}[\s.-])\d{3,4}[\s.-]\d{3,4}(?!\w)"
)


def _valid_ip(text: str) -> bool:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return False
    return not (ip.is_loopback or ip.is_unspecified)


class PIIRedactor(Step):
    """Replaces e-mails, public IPv4/IPv6 addresses and phone numbers with placeholders."""

    name = "pii"

    def __init__(self, emails: bool = True, ips: bool = True, phones: bool = True) -> None:
        super().__init__()
        self.rules: list[tuple[str, re.Pattern[str], str, Callable[[str], bool]]] = []
        if emails:
            self.rules.append(("email", EMAIL, "<EMAIL>", lambda _: True))
        if ips:
            self.rules.append(("ip", IPV4, "<IP>", _valid_ip))
            self.rules.append(("ip", IPV6, "<IP>", _valid_ip))
        if phones:
            self.rules.append(("phone", PHONE, "<PHONE>", lambda m: sum(c.isdigit() for c in m) >= 9))

    def process(self, doc: Document) -> Document | str:
        counts: dict[str, int] = {}
        text = doc.text
        for kind, pattern, placeholder, valid in self.rules:

            def sub(m: re.Match[str], kind: str = kind, placeholder: str = placeholder, valid=valid) -> str:  # type: ignore[no-untyped-def]
                if not valid(m.group()):
                    return m.group()
                counts[kind] = counts.get(kind, 0) + 1
                return placeholder

            text = pattern.sub(sub, text)
        if counts:
            doc.text = text
            doc.metadata["pii"] = counts
        return doc
