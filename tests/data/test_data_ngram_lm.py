"""CCNet perplexity: hand-computed Kneser-Ney, ARPA round trip, normalisation, buckets, the step."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import pytest

from conftest import REPO, doc
from herd.cli import main
from herd.data.errors import DataInputError
from herd.data.quality.ngram_lm import (
    EOS,
    SOS,
    UNK,
    NgramModel,
    estimate_kneser_ney,
    lm_tokens,
    sentences,
)
from herd.data.quality.perplexity import KenlmScorer, PerplexityFilter, bucket, load_scorer, perplexity
from herd.data.recipe.build import build
from herd.data.recipe.config import load_recipe

CORPUS = [["a", "b"], ["a", "a"]]  # padded: <s> a b </s>, <s> a a </s>


def test_unigram_by_hand() -> None:
    # order 1 uses raw counts: a 3, b 1, </s> 2 (T = 6); counts-of-counts n1 = 1, n2 = 1 → D = 1/3.
    # uniform share D·3/T spread over a, b, </s>, <unk>: (1/3·3/6)/4 = 1/24.
    model = estimate_kneser_ney(CORPUS, order=1)
    p = {w: 10 ** model.logprob((), w) for w in ("a", "b", EOS, UNK)}
    assert p["a"] == pytest.approx((3 - 1 / 3) / 6 + 1 / 24)
    assert p["b"] == pytest.approx((1 - 1 / 3) / 6 + 1 / 24)
    assert p[EOS] == pytest.approx((2 - 1 / 3) / 6 + 1 / 24)
    assert p[UNK] == pytest.approx(1 / 24)
    assert sum(p.values()) == pytest.approx(1.0)
    assert 10 ** model.logprob((), "zebra") == pytest.approx(1 / 24)  # out of vocabulary → <unk>


def test_bigram_by_hand() -> None:
    # Unigrams use continuation counts (distinct left words): a {<s>, a} 2, b {a} 1, </s> {a, b} 2;
    # n1 = 1, n2 = 2 → D1 = 1/5, T = 5, uniform = (1/5·3/5)/4 = 3/100.
    # Bigrams (raw): <s> a 2, a b 1, a a 1, b </s> 1, a </s> 1; n1 = 4, n2 = 1 → D2 = 4/6.
    model = estimate_kneser_ney(CORPUS, order=2)
    d1, d2, uniform = 1 / 5, 4 / 6, 3 / 100
    p_a, p_b, p_end = (2 - d1) / 5 + uniform, (1 - d1) / 5 + uniform, (2 - d1) / 5 + uniform
    gamma_a = d2 * 3 / 3  # context "a": 3 types, total 3
    p_b_given_a = (1 - d2) / 3 + gamma_a * p_b
    gamma_s = d2 * 1 / 2
    p_a_given_s = (2 - d2) / 2 + gamma_s * p_a
    p_end_given_b = (1 - d2) / 1 + d2 * 1 / 1 * p_end
    assert 10 ** model.logprob(("a",), "b") == pytest.approx(p_b_given_a)
    # sentence "a b": p(a|<s>) p(b|a) p(</s>|b); perplexity over 3 tokens
    expected = (p_a_given_s * p_b_given_a * p_end_given_b) ** (-1 / 3)
    assert perplexity(model, "a b") == pytest.approx(expected)
    # "b a" is unseen: backs off from context "b" with weight γ(b) = D2·1/1
    assert 10 ** model.logprob(("b",), "a") == pytest.approx(d2 * p_a)


@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_distributions_sum_to_one_and_arpa_round_trip(order: int, tmp_path: Path) -> None:
    corpus = [lm_tokens(s) for s in ["The cat sat.", "The dog sat on the mat.", "A cat, a dog."] * 2]
    model = estimate_kneser_ney(corpus, order)
    vocab = [g[0] for g in model.entries if len(g) == 1 and g[0] != SOS]
    for context in [(SOS,), ("the",), ("the", "cat"), ("dog", "sat", "on"), ("unseen",)]:
        history = context[len(context) - order + 1 :] if order > 1 else ()
        assert sum(10 ** model.logprob(history, w) for w in vocab) == pytest.approx(1.0)
    model.write_arpa(tmp_path / "m.arpa")
    text = (tmp_path / "m.arpa").read_text()
    assert text.startswith("\n\\data\\\nngram 1=") and text.rstrip().endswith("\\end\\")
    back = NgramModel.read_arpa(tmp_path / "m.arpa")
    assert back.order == order and back.entries.keys() == model.entries.keys()
    for line in ["the cat sat on the mat.", "zebra crossing"]:
        assert perplexity(back, line) == pytest.approx(perplexity(model, line), rel=1e-5)


def test_arpa_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.arpa"
    bad.write_text("\\data\\\nngram 1=1\n\n\\1-grams:\nnot-a-number\t<s>\n")
    with pytest.raises(DataInputError, match=r"bad\.arpa:5"):
        NgramModel.read_arpa(bad)
    with pytest.raises(DataInputError, match=r"missing\.arpa"):
        PerplexityFilter(tmp_path / "missing.arpa")
    with pytest.raises(DataInputError, match="no tokens"):
        estimate_kneser_ney([])


def test_bucket_thresholds() -> None:
    assert bucket(339.99) == "head"
    assert bucket(340.0) == bucket(519.99) == "middle"
    assert bucket(520.0) == bucket(math.inf) == "tail"
    assert bucket(100.0, head=50, tail=150) == "middle"


def test_step_labels_buckets_and_keeps_configured_ones(tmp_path: Path) -> None:
    corpus = [lm_tokens(s) for s in ["the cat sat on the mat.", "the dog sat on the log."] * 5]
    estimate_kneser_ney(corpus, 3).write_arpa(tmp_path / "m.arpa")
    step = pickle.loads(pickle.dumps(PerplexityFilter(tmp_path / "m.arpa", head=2, tail=20, keep=["head"])))
    familiar = doc("the cat sat on the mat.\nthe dog sat on the log.")
    assert step.process(familiar) is familiar
    assert familiar.metadata["perplexity_bucket"] == "head" and familiar.metadata["perplexity"] < 2
    assert step.process(doc("quantum chromodynamics lattice gauge theory")) == "perplexity_tail"
    german = doc("quantum chromodynamics", language="de")
    assert step.process(german) is german and "perplexity" not in german.metadata
    with pytest.raises(DataInputError, match="keep"):
        PerplexityFilter(tmp_path / "m.arpa", keep=["top"])


def test_bundled_wikipedia_model() -> None:
    model = NgramModel.read_arpa(REPO / "data" / "samples" / "models" / "enwiki-sample.5gram.arpa")
    assert model.order == 5


def test_herd_arpa_scorer_agrees_with_kenlm() -> None:
    """KenLM reads herd's ARPA file and scores every sentence as herd's own scorer does (backoffs, <unk>).

    This caught herd's scorer keeping too short a history past the second word for orders above 3.
    """
    kenlm = pytest.importorskip("kenlm")
    path = REPO / "data" / "samples" / "models" / "enwiki-sample.5gram.arpa"
    ours = NgramModel.read_arpa(path)
    theirs = kenlm.Model(str(path))
    scorer = load_scorer(path)
    assert isinstance(scorer, KenlmScorer)  # what the step uses when kenlm is importable
    lines = [
        "The llama is a domesticated South American camelid.",
        "Llamas are social animals and live with others as a herd.",
        "zyzzyva quux the the the of of in",  # unseen words and odd n-grams: back-off all the way
        "",
    ]
    for text in lines:
        for tokens in sentences(text) or [[]]:
            want = theirs.score(" ".join(tokens), bos=True, eos=True)
            assert ours.sentence_log10(tokens) == pytest.approx(want, abs=1e-4), tokens
    for text in ("The llama is a domesticated camelid.\nIt lives in herds.", "qwv zxq pfft"):
        assert perplexity(scorer, text) == pytest.approx(perplexity(ours, text), rel=1e-4)


def test_train_lm_cli_rebuilds_the_bundled_model(tmp_path: Path) -> None:
    out = tmp_path / "wiki.arpa"
    assert main(["data", "train-lm", str(REPO / "data" / "samples" / "wikipedia"), "--output", str(out)]) == 0
    assert (
        out.read_bytes() == (REPO / "data" / "samples" / "models" / "enwiki-sample.5gram.arpa").read_bytes()
    )


def test_recipe_model_paths_are_relative_to_the_recipe(tmp_path: Path, write_jsonl) -> None:
    estimate_kneser_ney([["the", "cat"]] * 3, 2).write_arpa(tmp_path / "m.arpa")
    write_jsonl("in/docs.jsonl", [{"text": "the cat"}, {"text": "zebra zebra zebra"}])
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        '[[source]]\nname = "web"\nreader = "jsonl"\ninputs = ["in/docs.jsonl"]\n'
        'steps = [{type = "ccnet_perplexity", model_path = "m.arpa", head = 3, tail = 5, keep = ["head"]}]\n'
    )
    manifest = build(load_recipe(recipe), tmp_path / "out")
    assert manifest["steps"]["web"][1]["dropped"] == {"perplexity_tail": 1}
