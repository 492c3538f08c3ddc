"""The unit every data step consumes and produces (datatrove-style, Llama 1 §2.1 sources)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from herd.data.errors import DataInputError


@dataclass
class Document:
    """One document: its text, a stable id, the source it came from and free-form metadata.

    ``metadata`` carries what steps need later (URL, fetch date, language and
    its score, perplexity bucket, licence, ...); it must stay JSON-serialisable
    so JSONL and Parquet round-trip it.
    """

    text: str
    id: str
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON record written by the JSONL and Parquet writers."""
        return {"id": self.id, "text": self.text, "source": self.source, "metadata": self.metadata}

    @classmethod
    def from_dict(cls, record: Any, where: str = "record") -> Document:
        """A document from a JSON record; ``text`` is required, ``id`` defaults to ``where``."""
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise DataInputError(f"{where}: not an object with a string 'text' field")
        metadata = record.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise DataInputError(f"{where}: 'metadata' is not an object")
        extra = {k: v for k, v in record.items() if k not in ("id", "text", "source", "metadata")}
        return cls(
            text=record["text"],
            id=str(record.get("id", where)),
            source=str(record.get("source", "")),
            metadata={**extra, **metadata},
        )
