"""Language ID (lingua and fastText), the Wikipedia-reference fastText classifier, pickling of model steps."""

from __future__ import annotations

import copy
import pickle
import random
from pathlib import Path

import pytest

from conftest import doc
from herd.cli import main
from herd.data.errors import DataInputError
from herd.data.quality.examples import read_examples
from herd.data.quality.langid import LanguageIdFilter
from herd.data.quality.wiki_classifier import (
    WikiReferenceFilter,
    label_probability,
    train_fasttext_classifier,
)

TEXTS = {
    "en": "The committee published its annual report on the state of public libraries across the country.",
    "de": "Der Ausschuss hat seinen jährlichen Bericht über den Zustand der öffentlichen Bibliotheken veröffentlicht.",
    "fr": "Le comité a publié son rapport annuel sur l'état des bibliothèques publiques dans tout le pays.",
    "ru": "Комитет опубликовал свой ежегодный доклад о состоянии публичных библиотек по всей стране.",
}

ENCYCLOPEDIC = "history science university research published journal century population government theory"
SPAM = "buy cheap discount click free offer casino winner bonus deal subscribe now limited"


def _sentences(vocabulary: str, n: int, seed: int) -> list[str]:
    words = vocabulary.split()
    rng = random.Random(seed)
    return [" ".join(rng.choices(words, k=12)) for _ in range(n)]


@pytest.mark.parametrize("language", sorted(TEXTS))
def test_lingua_identifies_languages(language: str) -> None:
    step = LanguageIdFilter(languages=["en"])
    reason = step.check(d := doc(TEXTS[language]))
    assert d.metadata["language"] == language and d.metadata["language_score"] >= 0.5
    assert reason == (None if language == "en" else f"language_{language}")


def test_threshold_and_label_only_mode() -> None:
    strict = LanguageIdFilter(languages=["en"], threshold=1.01)
    assert strict.check(doc(TEXTS["en"])) == "language_en_below_1.01"
    label_only = LanguageIdFilter(languages=[])
    assert label_only.check(d := doc(TEXTS["de"])) is None and d.metadata["language"] == "de"


def test_fasttext_language_id_path(tmp_path: Path) -> None:
    import fasttext

    train = tmp_path / "lid.txt"
    lines = [f"__label__{lang} {text}" for lang, text in TEXTS.items() for _ in range(30)]
    train.write_text("\n".join(lines) + "\n")
    model = fasttext.train_supervised(
        str(train), epoch=50, lr=1.0, dim=8, bucket=10_000, minn=2, maxn=4, thread=1, verbose=0
    )
    model.save_model(str(tmp_path / "lid.bin"))
    step = LanguageIdFilter(languages=["en", "fr"], model_path=tmp_path / "lid.bin")
    step = copy.deepcopy(pickle.loads(pickle.dumps(step)))  # executors copy steps; the model reloads
    assert step.check(d := doc("le rapport annuel des bibliothèques publiques")) is None
    assert d.metadata["language"] == "fr"
    assert step.check(doc("der jährliche Bericht der öffentlichen Bibliotheken")) == "language_de"
    with pytest.raises(DataInputError, match="nope"):
        LanguageIdFilter(model_path=tmp_path / "nope.bin")


def test_wiki_reference_classifier_separates_held_out(tmp_path: Path) -> None:
    model = train_fasttext_classifier(
        _sentences(ENCYCLOPEDIC, 200, 0), _sentences(SPAM, 200, 1), tmp_path / "wiki.bin"
    )
    held_out_good, held_out_bad = _sentences(ENCYCLOPEDIC, 20, 2), _sentences(SPAM, 20, 3)
    assert min(label_probability(model, t, "wiki") for t in held_out_good) > 0.9
    assert max(label_probability(model, t, "wiki") for t in held_out_bad) < 0.1
    step = pickle.loads(pickle.dumps(WikiReferenceFilter(tmp_path / "wiki.bin")))
    assert step.check(d := doc(held_out_good[0])) is None and d.metadata["wiki_ref_score"] > 0.9
    assert step.check(doc(held_out_bad[0])) == "not_wiki_reference"
    with pytest.raises(DataInputError, match="positive and negative"):
        train_fasttext_classifier(["a"], [], tmp_path / "x.bin")


def test_train_classifier_cli(tmp_path: Path, write_jsonl) -> None:
    positive = write_jsonl("pos.jsonl", [{"text": t} for t in _sentences(ENCYCLOPEDIC, 50, 0)])
    negative = tmp_path / "neg.txt"
    negative.write_text("\n".join(_sentences(SPAM, 50, 1)) + "\n")
    assert sum(1 for _ in read_examples([negative])) == 50
    out = tmp_path / "m.bin"
    assert (
        main(
            [
                "data",
                "train-classifier",
                "--positive",
                str(positive),
                "--negative",
                str(negative),
                "--output",
                str(out),
            ]
        )
        == 0
    )
    assert WikiReferenceFilter(out).score(_sentences(ENCYCLOPEDIC, 1, 5)[0]) > 0.5
