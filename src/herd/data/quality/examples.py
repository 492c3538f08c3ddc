"""Training examples for the quality classifiers, read from document files or plain text."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from herd.data.errors import DataInputError
from herd.data.io.jsonl import JsonlReader
from herd.data.pipeline import expand_inputs


def read_examples(paths: Iterable[str | Path]) -> Iterator[str]:
    """Texts of ``paths``: documents of ``.jsonl[.gz/.zst/.bz2]`` files, else one example per line."""
    paths = [str(p) for p in paths]
    files = expand_inputs(paths)
    if not files:
        raise DataInputError(f"{paths}: no example files")
    for path in files:
        if ".jsonl" in path.name:
            yield from (doc.text for doc in JsonlReader().read_files([path]))
            continue
        try:
            lines = path.read_text("utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise DataInputError(f"{path}: cannot read examples ({exc})") from None
        yield from (line for line in lines if line.strip())
