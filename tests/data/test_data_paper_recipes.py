"""The paper recipes, configs/data/llama1.toml and llama3.toml, run unchanged on the bundled samples.

``data/samples/paper_recipes.py`` lays the samples and stand-in models out as the recipes' ``data/raw``
and ``data/models``, and ``--remap`` (:mod:`herd.data.recipe.remap`) points the recipes there;
fastText's ``lid.176.bin`` is not available offline, so ``ccnet_lid`` runs on lingua (its
``model_path`` removed by an empty remap). The test adds records the samples cannot provide, each
for one step: a copy of a sample page on a blocked domain (``url_blocklist``), a mirror of a sample
page with a banner on another host (``minhash_dedup``), a German page (``ccnet_lid``) and a German
Wikipedia dump (the multilingual source). Builds record exclusions, so every document can be traced
to the step that dropped it.
"""

from __future__ import annotations

import bz2
import dataclasses
import gzip
import importlib.util
import itertools
import json
import re
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from conftest import REPO, SAMPLES, stand_in_tokenizer, warc_record
from herd.cli import main
from herd.data.errors import DataInputError
from herd.data.recipe.build import build
from herd.data.recipe.config import load_recipe
from herd.data.recipe.remap import parse_remap, remap_paths

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONFIGS = REPO / "configs" / "data"
WARC = SAMPLES / "commoncrawl" / "rust-book.warc.gz"
WET = SAMPLES / "commoncrawl" / "rust-book.warc.wet.gz"
BLOCKED = "blocked.example"
BOOK = "https://doc.rust-lang.org/book/"
MIRRORED = "ch04-01-what-is-ownership.html"  # a long page, copied to a blocked host and to a mirror
PII_PAGE = BOOK + "ch05-01-defining-structs.html"  # its examples hold e-mail addresses
GERMAN = (
    "Das Lama ist eine domestizierte Kamelart aus Südamerika. Schon lange vor den Inka hielten die "
    "Völker der Anden Lamas als Lasttiere und wegen ihres Fleisches.\n\nEin ausgewachsenes Lama wird bis "
    "zu 1,8 Meter groß und wiegt zwischen 130 und 200 Kilogramm. Lamas sind gesellige Tiere und leben "
    "in Herden. Ihre Wolle ist weich und enthält nur wenig Lanolin.\n\nHeute werden Lamas auch in Europa "
    "und Nordamerika gehalten, oft als Wanderbegleiter oder zum Schutz von Schafherden."
)
# Llama 1 Table 1: sampling proportion and epochs per source; Llama 3 §3.1.2: the final data mix.
LLAMA1_MIX = {
    "commoncrawl": (0.67, 1.10),
    "c4": (0.15, 1.06),
    "github": (0.045, 0.64),
    "wikipedia": (0.045, 2.45),
    "books": (0.045, 2.23),
    "arxiv": (0.025, 1.06),
    "stackexchange": (0.02, 1.03),
}
LLAMA3_MIX = {"web": (0.5, 1.0), "code": (0.17, 1.0), "math": (0.25, 1.0), "multilingual": (0.08, 1.0)}


def _load_script() -> ModuleType:
    """data/samples/paper_recipes.py as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("paper_recipes", SAMPLES / "paper_recipes.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _responses(path: Path) -> list[tuple[str, bytes]]:
    """(URL, HTTP body) of each WARC response/conversion record, read with FastWARC (not herd's reader)."""
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    with path.open("rb") as f:
        records = ArchiveIterator(f, record_types=WarcRecordType.response | WarcRecordType.conversion)
        return [(r.headers["WARC-Target-URI"], r.reader.read()) for r in records]


GERMAN_PAGE = "https://lamas.example/"


def _write_extras(raw: Path) -> None:
    """The added web pages and German Wikipedia dump (module docstring)."""
    page = dict(_responses(WARC))[BOOK + MIRRORED]
    assert b"<body>" in page  # where the mirror's banner goes
    banner = b"<p>This copy of the Rust book is mirrored for readers in our region.</p>"
    german = "".join(f"<p>{p}</p>" for p in GERMAN.split("\n\n"))
    records = [
        warc_record(f"https://rust-book.{BLOCKED}/book/{MIRRORED}", page),
        warc_record(
            f"https://rust-mirror.example/book/{MIRRORED}", page.replace(b"<body>", b"<body>" + banner)
        ),
        warc_record(GERMAN_PAGE, f"<html><body><h1>Das Lama</h1>{german}</body></html>".encode()),
    ]
    (raw / "commoncrawl" / "mirrors.warc.gz").write_bytes(
        b"".join(gzip.compress(r, mtime=0) for r in records)
    )
    dump = (
        '<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.11/" xml:lang="de"><siteinfo>'
        "<dbname>dewiki</dbname></siteinfo><page><title>Lama</title><ns>0</ns><id>1</id><revision><id>2</id>"
        f'<text xml:space="preserve">{GERMAN}</text></revision></page></mediawiki>'
    )
    (raw / "wikipedia" / "dewiki-sample-pages-articles.xml.bz2").write_bytes(bz2.compress(dump.encode()))


@pytest.fixture(scope="module")
def paper_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The recipes' ``data`` directory: samples, stand-in models, a block list and the added records."""
    root = tmp_path_factory.mktemp("data")
    _load_script().prepare(root, block=[BLOCKED])
    _write_extras(root / "raw")
    return root


def _build(name: str, data: Path, output: Path) -> dict[str, Any]:
    """Build the recipe ``name`` on ``data`` (lingua for LID), one worker, exclusions recorded."""
    rules = [parse_remap(f"{REPO / 'data'}={data}"), parse_remap(f"{REPO / 'data/models/lid.176.bin'}=")]
    recipe = remap_paths(load_recipe(CONFIGS / f"{name}.toml"), rules)
    return build(dataclasses.replace(recipe, workers=1, exclusions=True), output, stand_in_tokenizer())


def _read(files: list[Path]) -> list[dict[str, Any]]:
    """The JSON records of document files (.jsonl.gz), in file-name order."""
    return [json.loads(line) for f in sorted(files) for line in gzip.open(f, "rt", encoding="utf-8")]


def _passed(output: Path, source: str, steps: list[str], step: str) -> list[dict[str, Any]]:
    """The documents ``step`` kept: those kept at the end and those a later step dropped."""
    docs = output / "documents" / source
    later = steps[steps.index(step) + 1 :]
    return _read(
        list(docs.glob("*.jsonl.gz")) + [f for s in later for f in docs.glob(f"excluded/{s}/*.jsonl.gz")]
    )


def _dropped(output: Path, source: str, step: str) -> list[dict[str, Any]]:
    """The documents ``step`` dropped (its exclusion files)."""
    return _read(list((output / "documents" / source / "excluded" / step).glob("*.jsonl.gz")))


def _check_manifest(manifest: dict[str, Any], name: str, mix: dict[str, tuple[float, float]]) -> None:
    """Every source produced documents and tokens at the paper's weight and epochs; steps ran in order."""
    table = tomllib.loads((CONFIGS / f"{name}.toml").read_text("utf-8"))["source"]
    assert list(manifest["sources"]) == [s["name"] for s in table] == list(mix)
    for source in table:
        entry = manifest["sources"][source["name"]]
        weight, epochs = mix[source["name"]]
        assert (entry["weight"], entry["epochs"]) == (weight, epochs)
        assert (source["weight"], source.get("epochs", 1.0)) == (weight, epochs)
        assert entry["documents"] > 0 and entry["tokens"] > 0
        assert manifest["splits"]["train"][source["name"]]["weight"] == weight
        stats = manifest["steps"][source["name"]]
        assert [s["name"] for s in stats] == [
            f"read:{source['reader']}",
            *(s["type"] for s in source.get("steps", [])),
        ]
        for before, after in itertools.pairwise(stats):
            assert after["docs_in"] == before["kept"]  # each step saw what the one before kept
        assert stats[-1]["kept"] == entry["documents"]


def _scores_split(output: Path, source: str, steps: list[str], step: str, key: str, threshold: float) -> None:
    """A classifier step kept the documents scoring ≥ ``threshold`` under ``key`` and dropped the others."""
    kept, dropped = _passed(output, source, steps, step), _dropped(output, source, step)
    assert kept and dropped
    assert all(d["metadata"][key] >= threshold for d in kept)
    assert all(d["metadata"][key] < threshold for d in dropped)


@pytest.mark.slow
def test_llama1_recipe_on_samples(paper_data: Path, tmp_path: Path) -> None:
    manifest = _build("llama1", paper_data, tmp_path)
    _check_manifest(manifest, "llama1", LLAMA1_MIX)
    steps = [s["name"] for s in manifest["steps"]["commoncrawl"]][1:]

    # CCNet line dedup: every line of a page's second fetch was seen in its first, so at most one copy stays
    fetched = Counter(url for url, _ in _responses(WARC))
    refetched = {url for url, n in fetched.items() if n > 1}
    assert refetched
    line_dedup = Counter(d["metadata"]["url"] for d in _dropped(tmp_path, "commoncrawl", "ccnet_line_dedup"))
    after = Counter(d["metadata"]["url"] for d in _passed(tmp_path, "commoncrawl", steps, "ccnet_line_dedup"))
    assert all(line_dedup[url] >= 1 and after[url] <= 1 for url in refetched)
    # Language ID keeps English at score ≥ 0.5: the German page goes
    lid = _dropped(tmp_path, "commoncrawl", "ccnet_lid")
    assert [d["metadata"]["url"] for d in lid if d["metadata"]["language"] == "de"] == [GERMAN_PAGE]
    for d in _passed(tmp_path, "commoncrawl", steps, "ccnet_lid"):
        assert d["metadata"]["language"] == "en" and d["metadata"]["language_score"] >= 0.5
    # Perplexity labels, bucketed at CCNet's English thresholds; the tail is dropped
    for d in _passed(tmp_path, "commoncrawl", steps, "ccnet_perplexity"):
        ppl = d["metadata"]["perplexity"]
        assert d["metadata"]["perplexity_bucket"] == ("head" if ppl < 340 else "middle")
        assert ppl < 520
    _scores_split(tmp_path, "commoncrawl", steps, "wiki_reference", "wiki_ref_score", 0.25)

    # C4 drops every page holding a curly bracket (none of the sample pages mentions lorem ipsum)
    bodies = [body for _, body in _responses(WET)]
    assert not any(b"lorem ipsum" in b.lower() for b in bodies)
    c4 = manifest["steps"]["c4"][-1]
    assert c4["dropped"]["curly_bracket"] == sum(b"{" in b for b in bodies)
    assert manifest["steps"]["books"][-1]["dropped"] == {"duplicate_book": 1}  # the second edition
    wiki = _read(list((tmp_path / "documents" / "wikipedia").glob("*.jsonl.gz")))
    assert Counter(d["metadata"]["language"] for d in wiki) == {"en": 2, "de": 1}


@pytest.mark.slow
def test_llama3_recipe_on_samples(paper_data: Path, tmp_path: Path) -> None:
    manifest = _build("llama3", paper_data, tmp_path)
    _check_manifest(manifest, "llama3", LLAMA3_MIX)
    web = {s["name"]: s for s in manifest["steps"]["web"]}
    steps = list(web)[1:]

    blocked = _dropped(tmp_path, "web", "url_blocklist")
    assert [d["metadata"]["url"] for d in blocked] == [f"https://rust-book.{BLOCKED}/book/{MIRRORED}"]
    assert web["url_blocklist"]["dropped"] == {"blocked_domain": 1}
    # PII: the page's e-mail addresses (counted in its raw HTML) are replaced, wherever it ended up
    emails = len(re.findall(rb"[\w.+-]+@example\.com", dict(_responses(WARC))[PII_PAGE]))
    assert emails
    (page,) = [d for d in _passed(tmp_path, "web", steps, "pii") if d["metadata"]["url"] == PII_PAGE]
    assert page["metadata"]["pii"]["email"] == emails
    assert "@example.com" not in page["text"] and page["text"].count("<EMAIL>") == emails
    # URL dedup keeps one fetch per URL; MinHash then drops one of the page and its mirror
    urls = [url for url, _ in _responses(WARC)]
    assert web["url_dedup"]["dropped"] == {"older_fetch": len(urls) - len(set(urls))}
    near = {d["metadata"]["url"] for d in _dropped(tmp_path, "web", "minhash_dedup")}
    assert len(near & {BOOK + MIRRORED, f"https://rust-mirror.example/book/{MIRRORED}"}) == 1
    # Language ID runs before the English heuristics and keeps English at score ≥ 0.5: the German page goes
    lid = _dropped(tmp_path, "web", "ccnet_lid")
    assert [d["metadata"]["url"] for d in lid if d["metadata"]["language"] == "de"] == [GERMAN_PAGE]
    labelled = _passed(tmp_path, "web", steps, "ccnet_lid")
    assert labelled and all(
        d["metadata"]["language"] == "en" and d["metadata"]["language_score"] >= 0.5 for d in labelled
    )
    _scores_split(tmp_path, "web", steps, "wiki_reference", "wiki_ref_score", 0.25)
    _scores_split(tmp_path, "web", steps, "embedding_quality", "quality_score", 0.5)

    # The multilingual source keeps its 19 languages: the German article; the English dump is skipped whole
    multilingual = _read(list((tmp_path / "documents" / "multilingual").glob("*.jsonl.gz")))
    assert [d["metadata"]["language"] for d in multilingual] == ["de"]
    assert manifest["steps"]["multilingual"][0]["dropped"] == {"language": 1}


def test_remap_moves_inputs_and_files_and_removes_with_empty(tmp_path: Path) -> None:
    recipe = load_recipe(CONFIGS / "llama3.toml")
    rules = [parse_remap(f"{REPO / 'data'}={tmp_path}"), parse_remap(f"{REPO / 'data/models/lid.176.bin'}=")]
    remapped = remap_paths(recipe, rules)
    web = remapped.sources[0]
    assert web.inputs == (str(tmp_path / "raw/commoncrawl/*.warc.gz"),)
    args = {s.type: s.args for s in web.steps}
    assert args["url_blocklist"] == {"domains_file": str(tmp_path / "raw/blocklists/domains.txt")}
    assert args["ccnet_lid"] == {"languages": ["en"], "threshold": 0.5}  # model_path removed: lingua
    assert args["wiki_reference"]["model_path"] == str(tmp_path / "models/wiki_reference.bin")
    assert args["minhash_dedup"] == {"n": 5, "bands": 14, "rows": 8}  # not a file argument
    assert remapped.sources[3].reader_args == recipe.sources[3].reader_args  # languages, not paths
    with pytest.raises(DataInputError, match="nowhere"):
        remap_paths(recipe, [parse_remap(f"{tmp_path / 'nowhere'}=x")])
    with pytest.raises(ValueError, match="OLD=NEW"):
        parse_remap("data")


def test_build_cli_remap(
    tmp_path: Path, write_jsonl: Callable[[str, list[dict]], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "recipe").mkdir()
    (tmp_path / "recipe" / "r.toml").write_text(
        '[[source]]\nname = "a"\nreader = "jsonl"\ninputs = ["../raw/*.jsonl"]\n'
        'steps = [{type = "url_blocklist", domains_file = "../raw/blocked.txt"}]\n'
    )
    write_jsonl(
        "other/docs.jsonl",
        [{"text": "kept", "url": "https://a.example/"}, {"text": "x", "url": "https://b.example/"}],
    )
    (tmp_path / "other" / "blocked.txt").write_text("b.example\n")
    config, raw, other = tmp_path / "recipe" / "r.toml", tmp_path / "raw", tmp_path / "other"
    assert (
        main(["data", "build", str(config), "--output", str(tmp_path / "out"), "--remap", f"{raw}={other}"])
        == 0
    )
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["steps"]["a"][-1]["dropped"] == {"blocked_domain": 1}
    capsys.readouterr()
    stray = f"{tmp_path / 'nowhere'}={other}"
    assert main(["data", "build", str(config), "--output", str(tmp_path / "out2"), "--remap", stray]) == 2
    assert "nowhere" in capsys.readouterr().err
