"""Recipes: TOML config validation, herd data build on the demo samples, token shards, stats (docs/data.md)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, doc, stand_in_tokenizer
from herd.cli import main
from herd.data.errors import DataInputError, RecipeError
from herd.data.recipe.build import build
from herd.data.recipe.config import load_recipe
from herd.data.recipe.tokenize import epoch_stream
from herd.errors import ConfigError
from herd.io.token_shards import TokenDataset


def test_unknown_keys_rejected_by_name(tmp_path: Path) -> None:
    path = tmp_path / "r.toml"
    path.write_text('[recipe]\nnme = "x"\n[[source]]\nname = "a"\nreader = "jsonl"\ninputs = ["x"]\n')
    with pytest.raises(DataInputError, match=r"unknown key.*nme"):
        load_recipe(path)
    path.write_text('[[source]]\nname = "a"\nreader = "jsonl"\ninputs = ["x"]\nwieght = 1\n')
    with pytest.raises(DataInputError, match="wieght"):
        load_recipe(path)
    path.write_text(
        '[[source]]\nname = "a"\nreader = "jsonl"\ninputs = ["x"]\nsteps = [{type = "c4", min_sentence = 3}]\n'
    )
    with pytest.raises(DataInputError, match="min_sentence"):
        build(load_recipe(path), tmp_path / "out")


@pytest.mark.parametrize("name", ["demo", "llama1", "llama3"])
def test_bundled_recipes_load(name: str) -> None:
    recipe = load_recipe(REPO / "configs" / "data" / f"{name}.toml")
    assert recipe.sources


def test_epoch_sampling() -> None:
    docs = [doc("x", str(i)) for i in range(1000)]
    assert len(list(epoch_stream(docs, 2.0, 0))) == 2000
    partial = len(list(epoch_stream(docs, 1.25, 0)))
    assert 1200 < partial < 1300
    assert [d.id for d in epoch_stream(docs, 0.5, 3)] == [d.id for d in epoch_stream(docs, 0.5, 3)]


@pytest.mark.slow
def test_demo_build_and_stats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tokenizer = stand_in_tokenizer()
    manifest = build(load_recipe(REPO / "configs" / "data" / "demo.toml"), tmp_path, tokenizer)
    books = manifest["sources"]["books"]
    assert books["documents"] == 2  # the second edition was a duplicate
    steps = {s["name"]: s for s in manifest["steps"]["books"]}
    assert steps["book_dedup"]["dropped"] == {"duplicate_book": 1}
    assert manifest["steps"]["commoncrawl"][1]["dropped"]["older_fetch"] == 7
    dataset = TokenDataset.open(tmp_path)
    web = next(s for s in dataset.splits["train"] if s.name == "commoncrawl")
    shard = web.shards[0]
    ends = shard.starts[1:] - 1
    assert np.all(np.asarray(shard.tokens)[ends] == tokenizer.eos_id)  # every document ends with EOS
    assert sum(s.num_tokens for s in web.shards) == manifest["sources"]["commoncrawl"]["tokens"]
    # The held-out split (recipe.val_fraction) is disjoint from train and read once, not per epoch.
    val = {s.name: s for s in dataset.splits["val"]}
    assert "commoncrawl" in val
    cc = manifest["sources"]["commoncrawl"]
    assert cc["val_tokens"] == sum(s.num_tokens for s in val["commoncrawl"].shards)
    assert 0 < cc["val_documents"] < cc["documents"]
    val_docs = {tuple(d) for d in _documents(val["commoncrawl"])}
    assert val_docs.isdisjoint(tuple(d) for d in _documents(web))
    excluded = tmp_path / "documents" / "books" / "excluded" / "book_dedup" / "00000.jsonl.gz"
    assert excluded.is_file()

    assert main(["data", "stats", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "book_dedup" in out and "duplicate_book 1" in out
    assert (tmp_path / "stats.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "manifest.json").read_text())["format"] == "herd-tokens-v1"


def _documents(source: object) -> list[list[int]]:
    """The token ids of each document of a source's shards."""
    out = []
    for shard in source.shards:
        tokens = np.asarray(shard.tokens)
        out += [tokens[a:b].tolist() for a, b in zip(shard.starts[:-1], shard.starts[1:], strict=True)]
    return out


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "stats", str(tmp_path)]) == 2
    assert "no manifest" in capsys.readouterr().err


SOURCES = '[[source]]\nname = "a"\nreader = "jsonl"\ninputs = ["x"]\n[[source]]\nname = "b"\nreader = "jsonl"\ninputs = "y"\n'


def test_overrides_set_recipe_keys_as_the_file_names_them(tmp_path: Path) -> None:
    """``load_recipe(path, overrides)`` takes herd data build's ``--set KEY=VALUE``; values are TOML literals."""
    path = tmp_path / "r.toml"
    path.write_text("[recipe]\nworkers = 2\n" + SOURCES)
    recipe = load_recipe(
        path,
        [
            "recipe.workers=4",
            "recipe.name=web mix",
            "source[1].weight=0.25",
            "source[0].inputs=['p', 'q']",
            "source[0].steps=[{type = 'url_dedup'}]",
        ],
    )
    assert (recipe.workers, recipe.name) == (4, "web mix")
    assert [(s.name, s.weight, s.inputs) for s in recipe.sources] == [
        ("a", 1.0, ("p", "q")),
        ("b", 0.25, ("y",)),
    ]
    assert [step.type for step in recipe.sources[0].steps] == ["url_dedup"]
    assert load_recipe(path).workers == 2  # the file is unchanged


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("recipe.workers=four", "r.toml: recipe.workers: expected an integer, got 'four'"),
        ("recipe.wrkers=4", "r.toml: recipe: unknown key(s) wrkers"),
        ("source[1].weight=-1", "r.toml: source[1].weight: must be 0 or more, got -1"),
        ("source[2].weight=1", "--set 'source[2].weight=1': source has 2 entries, no [2]"),
        ("recipe.workers", "--set 'recipe.workers': expected KEY=VALUE"),
    ],
)
def test_bad_overrides_are_recipe_errors_naming_the_key(tmp_path: Path, override: str, message: str) -> None:
    """A bad override is refused like a bad value in the file; a recipe error is a ConfigError and a
    DataInputError."""
    path = tmp_path / "r.toml"
    path.write_text(SOURCES)
    with pytest.raises(RecipeError) as caught:
        load_recipe(path, [override])
    assert message in str(caught.value)
    assert isinstance(caught.value, ConfigError) and isinstance(caught.value, DataInputError)


def test_an_unreadable_recipe_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match=r"missing\.toml: no such recipe file"):
        load_recipe(tmp_path / "missing.toml")
    (tmp_path / "r.toml").write_text("[recipe\n")
    with pytest.raises(RecipeError, match=r"r\.toml: invalid TOML"):
        load_recipe(tmp_path / "r.toml")
