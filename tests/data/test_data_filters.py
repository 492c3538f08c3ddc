"""One hand-computed case per heuristic rule (C4, Gopher, GitHub, PII, dirty words, n-grams, URLs, KL)."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from conftest import doc
from herd.data.filters.c4 import C4Filter
from herd.data.filters.dirty_words import DirtyWordFilter
from herd.data.filters.github import CopyrightHeaderRemoval, GitHubFilter, detect_license
from herd.data.filters.gopher import (
    GopherQualityFilter,
    GopherRepetitionFilter,
    duplicate_fractions,
    duplicated_ngram_fraction,
    top_ngram_fraction,
)
from herd.data.filters.kl import TokenKLFilter
from herd.data.filters.ngram_coverage import NgramCoverageFilter
from herd.data.filters.pii import PIIRedactor
from herd.data.filters.url import UrlBlocklistFilter

C4_PAGE = "\n".join(
    [
        "Hello world is here.",
        "short.",
        "Enable JavaScript to view this page.",
        "We respect your privacy policy and rights.",
        "No terminal punctuation here",
        "One two three four five.",
        "The cat sat on mat!",
        "Is this a question?",
        "A fourth good sentence here.",
        'And a fifth one "quoted."',
    ]
)


def test_c4_line_rules_and_sentence_count() -> None:
    out = C4Filter().process(doc(C4_PAGE))
    assert not isinstance(out, str)
    assert out.text.splitlines() == [
        "Hello world is here.",
        "One two three four five.",
        "The cat sat on mat!",
        "Is this a question?",
        "A fourth good sentence here.",
        'And a fifth one "quoted."',
    ]
    four = "\n".join(C4_PAGE.splitlines()[:8])  # 4 sentences survive
    assert C4Filter().process(doc(four)) == "too_few_sentences"
    assert C4Filter(min_sentences=4).process(doc(four)) != "too_few_sentences"


@pytest.mark.parametrize(
    ("extra", "reason"), [("Lorem Ipsum dolor sit.", "lorem_ipsum"), ("var x = {a: 1}.", "curly_bracket")]
)
def test_c4_page_rules(extra: str, reason: str) -> None:
    assert C4Filter().process(doc(C4_PAGE + "\n" + extra)) == reason


BASE = "the quick brown fox jumps over the lazy dog and " * 6  # 60 words, mean length 3.8


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (BASE, None),
        ("the cat and the dog", "too_few_words"),
        ("it is a an " * 15, "short_mean_word_length"),
        ("extraordinary " * 60, "long_mean_word_length"),
        (BASE + " #" * 7, "symbol_word_ratio"),  # 7 / 67 tokens = 0.104
        (BASE + " #" * 6, None),  # 6 / 66 = 0.091
        ("- the quick brown fox jumps over\n" * 10, "bullet_lines"),
        (
            "the quick brown fox jumps over...\n" * 4 + "the quick brown fox jumps over\n" * 6,
            "ellipsis_lines",
        ),
        (BASE + "123 " * 20, "non_alpha_words"),  # 60 / 80 = 0.75 words with a letter
        ("quick brown fox jumps over lazy dog cats " * 8, "too_few_stop_words"),
    ],
)
def test_gopher_quality(text: str, reason: str | None) -> None:
    assert GopherQualityFilter().check(doc(text)) == reason


def test_gopher_repetition_measures() -> None:
    assert duplicate_fractions(["aa", "b", "aa", "c"]) == (0.25, 2 / 6)
    assert top_ngram_fraction(list("ababc"), 2) == 4 / 5  # "a b" twice: 4 chars of 5
    assert top_ngram_fraction(list("abcde"), 2) == 0.0
    assert duplicated_ngram_fraction(list("abcabd"), 2) == 4 / 6  # "a b" covers 4 of 6 words
    assert duplicated_ngram_fraction(list("aaa"), 2) == 1.0  # overlapping occurrences count once


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("one para\n\ntwo para\n\none para", "dup_para_fraction"),  # 1/3 > 0.3
        (
            "aaaaaaaaaa\nbbbbbbbbbb\naaaaaaaaaa\ncccccccccc",
            "dup_line_char_fraction",
        ),  # 1/4 lines, 10/40 chars
        ("w1 w2 " * 2 + " ".join(f"u{i}" for i in range(12)), "top_2gram_fraction"),
        (" ".join(f"u{i}" for i in range(40)), None),
    ],
)
def test_gopher_repetition(text: str, reason: str | None) -> None:
    assert GopherRepetitionFilter().check(doc(text)) == reason


def test_github_rules() -> None:
    f = GitHubFilter()
    ok = dict(license="MIT", path="pkg/mod.py")
    assert f.check(doc("import os\nprint(os.sep)\n", **ok)) is None
    assert f.check(doc("import os\n", path="a.py")) == "license"
    assert f.check(doc("import os\n", license="GPL-3.0", path="a.py")) == "license"
    assert f.check(doc("MZ binary", license="MIT", path="a.exe")) == "extension"
    assert f.check(doc("x = 1\n" + "a" * 1001, **ok)) == "max_line_length"
    assert f.check(doc(("b" * 101 + "\n") * 10, **ok)) == "mean_line_length"
    assert f.check(doc("{}();\n" * 20, **ok)) == "alnum_fraction"  # 0 alphanumerics


def test_license_detection() -> None:
    mit = "Permission is hereby granted, free of charge, to any person obtaining a copy of this software"
    assert detect_license("MIT License\n\n" + mit) == "MIT"
    assert detect_license("Apache License\nVersion 2.0, January 2004") == "Apache-2.0"
    bsd3 = "Neither the name of the copyright holder nor the names of its\ncontributors may be used"
    assert detect_license(bsd3) == "BSD-3-Clause"
    assert detect_license("GNU GENERAL PUBLIC LICENSE Version 3") is None


def test_copyright_header_removal() -> None:
    step = CopyrightHeaderRemoval()
    code = "# Copyright 2020 Someone\n# Licensed under the MIT licence.\n\nimport os\n"
    assert step.process(doc(code)).text == "import os\n"  # type: ignore[union-attr]
    shebang = "#!/usr/bin/env python\n// (c) ACME\nmain()\n"
    assert step.process(doc(shebang)).text == "#!/usr/bin/env python\nmain()\n"  # type: ignore[union-attr]
    plain = "# Helpers for parsing.\nimport re\n"
    assert step.process(doc(plain)).text == plain  # type: ignore[union-attr]
    assert step.process(doc("/* Copyright X */\n")) == "empty_after_header_removal"


def test_pii_redaction() -> None:
    text = (
        "Mail john.doe@example.com or 8.8.8.8, call +1 415-555-0100; v1.2.3.4.5 on 127.0.0.1 at 2001:db8::1"
    )
    out = PIIRedactor().process(doc(text))
    assert out.text == "Mail <EMAIL> or <IP>, call <PHONE>; v1.2.3.4.5 on 127.0.0.1 at 2001:db8::1"  # type: ignore[union-attr]
    assert out.metadata["pii"] == {"email": 1, "ip": 1, "phone": 1}  # type: ignore[union-attr]
    assert PIIRedactor().process(doc("fe80:0:0:0:200:f8ff:fe21:67cf")).text == "<IP>"  # type: ignore[union-attr]
    assert PIIRedactor().process(doc("nothing 2024-01-15 here")).metadata == {}  # type: ignore[union-attr]


def test_dirty_words() -> None:
    f = DirtyWordFilter(words=["badword"])
    assert f.check(doc("a badword in " + "clean " * 97)) is None  # 1 / 100 = 0.01, not above
    assert f.check(doc("a badword BADWORD " + "clean " * 97)) == "dirty_word_fraction"  # 2 / 100
    assert f.check(doc("badwords are not whole words " * 3)) is None
    assert DirtyWordFilter().check(doc("Essex and Middlesex")) is None
    assert DirtyWordFilter(words=["x y"], max_count=0, max_fraction=1).check(doc("x y")) == "dirty_word_count"


def test_ngram_coverage() -> None:
    log = "error: disk full at sector 7 " * 4  # 6-word line repeated: all covered
    assert NgramCoverageFilter().check(doc(log)) == "dup_ngram_coverage"
    assert NgramCoverageFilter().check(doc(" ".join(f"w{i}" for i in range(30)))) is None


def test_url_blocklist() -> None:
    f = UrlBlocklistFilter(domains=["bad.com"], urls=["https://ok.org/secret"])
    assert f.check(doc("x", url="http://www.bad.com/page")) == "blocked_domain"
    assert f.check(doc("x", url="https://sub.bad.com/")) == "blocked_domain"
    assert f.check(doc("x", url="https://notbad.com/")) is None
    assert f.check(doc("x", url="https://ok.org/secret")) == "blocked_url"
    assert f.check(doc("x")) is None


def test_token_kl_divergence() -> None:
    f = TokenKLFilter(Counter({"a": 3, "b": 1}), max_kl=1.0)
    assert math.isclose(f.divergence("a"), math.log(3 / 2))  # q(a) = (3+1)/(4+2)
    assert math.isclose(f.divergence("c"), math.log(7))  # q(c) = 1/(4+3)
    assert f.check(doc("a")) is None and f.check(doc("c")) == "token_kl"
    assert TokenKLFilter().fit(["a a b"]).reference == Counter({"a": 2, "b": 1})
