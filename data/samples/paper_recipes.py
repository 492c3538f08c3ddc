"""Lay out the samples and stand-in models so the paper recipes run on them unchanged.

``configs/data/llama1.toml`` and ``llama3.toml`` read raw dumps under ``data/raw`` and model
files under ``data/models``. ``python data/samples/paper_recipes.py OUT`` writes the same layout
under ``OUT`` from the bundled samples::

    OUT/raw/{commoncrawl,github,wikipedia,books,arxiv,stackexchange}/   copies of the samples
    OUT/raw/blocklists/domains.txt     the --block domains (none by default), for url_blocklist
    OUT/models/en.5gram.arpa           the bundled Wikipedia-sample ARPA, for ccnet_perplexity
    OUT/models/wiki_reference.bin      fastText classifier, for wiki_reference
    OUT/models/quality_head.json       MiniLM + logistic-regression head, for embedding_quality

and prints the build command (``--remap data=OUT`` moves both trees; fastText's ``lid.176.bin``
is not available offline, so ``--remap data/models/lid.176.bin=`` drops ``model_path`` and
``ccnet_lid`` uses lingua). The samples have no pages known to be cited by Wikipedia and no
Llama 2 quality judgements, so both classifiers learn one stand-in label the way Llama 3 §3.1.1
distils a teacher's judgements into classifiers, with C4's page rules as the teacher: positives
are the Wikipedia articles and the web pages C4's rules keep, negatives the web pages they drop,
subsampled to as many as the positives. With Wikipedia articles as the only positives every
sample web page would be a negative and the steps would drop them all; with this label they keep
the prose-like pages and drop the code-heavy ones. The models exercise the recipes; they are not
models of quality.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCES = ("commoncrawl", "github", "wikipedia", "books", "arxiv", "stackexchange")
ARPA = HERE / "models" / "enwiki-sample.5gram.arpa"


def training_examples() -> tuple[list[str], list[str]]:
    """Positive and negative texts for both classifiers (see the module docstring), deterministic."""
    from herd.data.filters.c4 import C4Filter
    from herd.data.pipeline import expand_inputs
    from herd.data.sources.warc import WarcReader
    from herd.data.sources.wikipedia import WikipediaReader

    wiki = [d.text for d in WikipediaReader().read_files(expand_inputs([str(HERE / "wikipedia")]))]
    kept, dropped = [], []
    c4 = C4Filter()
    for doc in WarcReader().read_files(expand_inputs([str(HERE / "commoncrawl" / "*.warc.gz")])):
        text = doc.text  # the page as the recipes' steps see it, not C4's line-filtered rewrite
        (dropped if isinstance(c4.process(doc), str) else kept).append(text)
    positives = wiki + kept
    stride = max(1, len(dropped) // len(positives))
    return positives, dropped[::stride][: len(positives)]


def prepare(out: Path, block: Sequence[str] = ()) -> None:
    """Write the raw inputs, block list and models under ``out`` (layout in the module docstring)."""
    from herd.data.quality.embedding_classifier import train_embedding_classifier
    from herd.data.quality.wiki_classifier import train_fasttext_classifier

    raw, models = out / "raw", out / "models"
    for name in SOURCES:
        shutil.copytree(HERE / name, raw / name, dirs_exist_ok=True)
    (raw / "blocklists").mkdir(parents=True, exist_ok=True)
    (raw / "blocklists" / "domains.txt").write_text("".join(f"{d}\n" for d in block))
    models.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ARPA, models / "en.5gram.arpa")
    positives, negatives = training_examples()
    # a few dozen examples need more passes than fastText's 10 for the scores to leave 0.5
    train_fasttext_classifier(positives, negatives, models / "wiki_reference.bin", epoch=50)
    train_embedding_classifier(positives, negatives, models / "quality_head.json")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="directory to write raw/ and models/ under")
    parser.add_argument("--block", nargs="*", default=[], metavar="DOMAIN", help="domains for the block list")
    args = parser.parse_args(argv)
    prepare(args.out, args.block)
    print(f"{args.out}: raw/ and models/ written; run a paper recipe on them from the repository root with")
    print(
        f"  herd data build configs/data/llama3.toml --output OUTPUT --tokenizer TOKENIZER --workers 1 "
        f"--remap data={args.out} --remap data/models/lid.176.bin="
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
