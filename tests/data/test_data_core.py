"""Core: documents, JSONL/Parquet readers and writers, step stats and exclusion output (docs/data.md)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from conftest import doc
from herd.data.document import Document
from herd.data.errors import DataInputError
from herd.data.io.jsonl import JsonlReader, JsonlWriter
from herd.data.io.parquet import ParquetReader
from herd.data.io.writer import open_writer
from herd.data.pipeline import Pipeline, expand_inputs, shard
from herd.data.step import Filter

DOCS = [Document(text=f"text {i} é", id=str(i), source="s", metadata={"n": i}) for i in range(5)]


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".jsonl.zst", ".jsonl.bz2", ".parquet"])
def test_writer_reader_round_trip(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"out{suffix}"
    with open_writer(path) as w:
        for d in DOCS:
            w.write(d)
    reader = ParquetReader() if suffix == ".parquet" else JsonlReader()
    assert list(reader.read_files([path])) == DOCS
    assert reader.stats.kept == 5 and not reader.stats.dropped
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left


def test_gzip_output_is_deterministic(tmp_path: Path) -> None:
    for name in ("a.jsonl.gz", "b.jsonl.gz"):
        with JsonlWriter(tmp_path / name) as w:
            for d in DOCS:
                w.write(d)
    assert (tmp_path / "a.jsonl.gz").read_bytes() == (tmp_path / "b.jsonl.gz").read_bytes()


def test_failed_writer_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), JsonlWriter(tmp_path / "x.jsonl") as w:
        w.write(DOCS[0])
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_jsonl_bad_records_are_counted_and_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "bad.jsonl"
    lines = [
        b'{"text": "good one", "id": "a"}',
        b'{"text": "bad \xff utf8"}',
        b"{not json",
        b'{"no_text": 1}',
        b'{"text": "   "}',
        b'{"text": "' + b"x" * 5000 + b'"}',
        b'{"text": "fish &amp; chips", "url": "http://x"}',
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    reader = JsonlReader(max_record_bytes=1000)
    docs = list(reader.read_files([path]))
    assert [d.text for d in docs] == ["good one", "fish &amp; chips"]
    assert docs[1].metadata == {"url": "http://x"} and docs[1].id == "bad.jsonl/6"
    assert reader.stats.dropped == {
        "invalid_utf8": 1,
        "invalid_json": 1,
        "invalid_record": 1,
        "empty": 1,
        "record_too_long": 1,
    }
    assert "bad.jsonl@" in caplog.text and "record_too_long" in caplog.text


def test_a_100_mb_single_line_is_skipped_with_bounded_memory(tmp_path: Path) -> None:
    """A 100 MB line (gzipped) between two documents, at the default limit: skipped, memory bounded."""
    import resource

    path = tmp_path / "huge.jsonl.gz"
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(b'{"text": "before"}\n{"text": "')
        block = b"y" * (1 << 20)
        for _ in range(100):
            f.write(block)
        f.write(b'"}\n{"text": "after"}\n')
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    reader = JsonlReader()
    assert [d.text for d in reader.read_files([path])] == ["before", "after"]
    assert reader.stats.dropped == {"record_too_long": 1}
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 60  # the line is never held whole (the limit is 16 MiB)


def test_corrupt_gzip_is_counted_and_next_file_read(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    good = gzip.compress(b"".join(json.dumps({"text": f"doc {i}"}).encode() + b"\n" for i in range(200)))
    (tmp_path / "a.jsonl.gz").write_bytes(good[: len(good) // 2])  # truncated stream
    (tmp_path / "b.jsonl.gz").write_bytes(b"not gzip at all")
    (tmp_path / "c.jsonl.gz").write_bytes(good)
    reader = JsonlReader()
    docs = list(reader.read_files(sorted(tmp_path.iterdir())))
    assert reader.stats.dropped == {"truncated_file": 1, "corrupt_file": 1}
    assert len(docs) >= 200 and docs[-1].text == "doc 199"
    assert "a.jsonl.gz@" in caplog.text


def test_document_from_dict_rejects_non_objects() -> None:
    with pytest.raises(DataInputError, match="where: not an object"):
        Document.from_dict([1], "where")


class DropShort(Filter):
    name = "drop_short"

    def check(self, d: Document) -> str | None:
        return "short" if len(d.text) < 5 else None


def test_step_stats_and_exclusions(tmp_path: Path) -> None:
    step = DropShort()
    kept = list(step.run([doc("abc"), doc("abcdef"), doc("x")]))
    assert [d.text for d in kept] == ["abcdef"]
    s = step.stats
    assert (s.docs_in, s.kept, dict(s.dropped), s.bytes_in, s.bytes_out) == (3, 1, {"short": 2}, 10, 6)

    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"text": t, "id": t}) + "\n" for t in ["abc", "abcdef"]))
    out = tmp_path / "out"
    stats = Pipeline(JsonlReader(), [DropShort()], exclusions=True).run_task([src], 0, out)
    assert stats[1].dropped == {"short": 1}
    excluded = list(JsonlReader().read_files([out / "excluded" / "drop_short" / "00000.jsonl.gz"]))
    assert [(d.text, d.metadata["dropped_by"]) for d in excluded] == [("abc", "drop_short:short")]


def test_duplicate_step_names_rejected() -> None:
    with pytest.raises(DataInputError, match="unique"):
        Pipeline(JsonlReader(), [DropShort(), DropShort()])


def test_expand_and_shard(tmp_path: Path) -> None:
    for name in ("b.jsonl", "a.jsonl", "sub/c.jsonl", ".hidden"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("")
    files = expand_inputs([tmp_path])
    assert [f.name for f in files] == ["a.jsonl", "b.jsonl", "c.jsonl"]
    assert [[f.name for f in s] for s in shard(files, 2)] == [["a.jsonl", "c.jsonl"], ["b.jsonl"]]
    with pytest.raises(DataInputError, match="nope"):
        expand_inputs([tmp_path / "nope*"])
