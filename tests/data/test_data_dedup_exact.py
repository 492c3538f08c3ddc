"""Exact dedup rules: CCNet line hashes, Llama 3 bucket line dedup, URL and file dedup."""

from __future__ import annotations

from conftest import doc
from herd.data.dedup.exact import ExactDedup
from herd.data.dedup.lines import BucketLineDedup, CCNetLineDedup
from herd.data.dedup.url import UrlDedup
from herd.data.text import line_hash, normalize_line


def test_ccnet_line_normalisation() -> None:
    assert normalize_line("  Hello, World 2023!  ") == "hello world 0000"
    assert normalize_line("Café — «déjà vu»") == "cafe deja vu"
    assert line_hash("HELLO world 1999") == line_hash("hello, world 2023.")


def test_ccnet_line_dedup_keeps_first_occurrence() -> None:
    step = CCNetLineDedup(min_doc_chars=0)
    docs = [doc("Hello, World 2023!\nfoo", "1"), doc("hello world 1999\nbar\nFOO", "2")]
    assert [d.text for d in step.run(docs)] == ["Hello, World 2023!\nfoo", "bar"]
    short = CCNetLineDedup()
    assert short.process(doc("x" * 299)) == "too_short_after_dedup"
    assert short.process(doc("y" * 300)) != "too_short_after_dedup"


def test_bucket_line_dedup_counts_per_bucket() -> None:
    docs = [doc(f"menu\nunique {c}", c) for c in "abcdefg"]
    out = list(BucketLineDedup(max_occurrences=6).run(docs))
    assert [d.text for d in out] == [f"unique {c}" for c in "abcdefg"]  # 7 > 6 occurrences
    docs = [doc(f"menu\nunique {c}", c) for c in "abcdefg"]
    out = list(BucketLineDedup(bucket_size=4, max_occurrences=6).run(docs))
    assert all(d.text.startswith("menu") for d in out)  # 4 and 3 per bucket
    step = BucketLineDedup(max_occurrences=1)
    assert [d.text for d in step.run([doc("a"), doc("a\nb")])] == ["b"]
    assert step.stats.dropped == {"empty_after_line_dedup": 1}


def test_url_dedup_keeps_most_recent() -> None:
    docs = [
        doc("v1", "1", url="http://a.com/x", date="2020-01-01T00:00:00Z"),
        doc("b", "2", url="http://b.com/"),
        doc("v3", "3", url="https://www.a.com/x/", date="2022-05-01T00:00:00Z"),
        doc("v2", "4", url="http://a.com/x#frag", date="2021-01-01T00:00:00Z"),
        doc("no url", "5"),
    ]
    step = UrlDedup()
    assert [d.id for d in step.run(docs)] == ["2", "3", "5"]
    assert step.stats.dropped == {"older_fetch": 2}


def test_exact_dedup() -> None:
    step = ExactDedup()
    assert [d.id for d in step.run([doc("x", "1"), doc("y", "2"), doc("x", "3")])] == ["1", "2"]
