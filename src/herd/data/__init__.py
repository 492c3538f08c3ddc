"""Pretraining data pipeline (Llama 1 §2.1, Llama 3 §3.1).

Documents flow through generator steps: a reader turns raw files (JSONL,
Parquet, WARC/WET, MediaWiki XML, LaTeX, Posts.xml, code trees, books) into
:class:`~herd.data.document.Document` objects, filters and transforms keep,
rewrite or drop them with a named reason, and a writer stores what is left.
Executors run a pipeline over shards of the input with per-shard completion
markers, so an interrupted run resumes with byte-identical output.
"""

from herd.data.document import Document
from herd.data.step import Filter, Step

__all__ = ["Document", "Filter", "Step"]
