"""``herd eval``: score a model on benchmark tasks, with a results table, a chart and per-example records.

Any model ``herd generate`` loads (Hugging Face or Meta directory, GGUF file,
``--quantize int8/int4``, a pretraining run directory through its ``hf``
export) runs any task spec of ``configs/eval`` (or a ``.toml`` path). Each task
is scored by its kind (:mod:`herd.eval.kinds`) through the inference engine;
the results go to ``--output`` (:mod:`herd.eval.report`) and a table to
stdout. A task already finished in ``--output`` with the same model and
settings is reused, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from herd.argtypes import positive_int
from herd.cli.flags import add_json, add_output, add_quiet
from herd.cli.model_flags import add_model_args, load_engine
from herd.errors import ConfigError

DEFAULT_BATCH_SIZE = 16


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``herd eval``."""
    p = sub.add_parser(
        "eval",
        help="score a model on benchmarks: multiple choice, generation, code, perplexity (lm-eval's methods)",
        description="Score MODEL on each of --tasks the way lm-evaluation-harness does (acc and acc_norm by "
        "log-likelihood, exact match of generated answers, pass@k of generated code in a sandbox, bits per "
        "byte), with the Llama 3 paper's 95% confidence interval. Writes results.json, results.md, "
        "results.png and examples/TASK.jsonl (every example's log-likelihoods, generations, outcomes) to "
        "--output; finished tasks there are reused when the model and settings are the same.",
        epilog="examples:\n"
        "  herd eval SmolLM2-135M-Instruct.Q4_1.gguf --tasks arc_easy,piqa --limit 100\n"
        "  herd eval runs/demo/pretrain --tasks bits_per_byte,arc_easy --limit 50 -o runs/eval-demo\n"
        "  herd eval llama3-8b-instruct/ --tasks mmlu --chat --dtype bf16 --device cuda\n"
        "tasks: the names of configs/eval/*.toml (see docs/eval.md), or paths to task specs",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_args(p)
    p.add_argument(
        "--tasks", required=True, metavar="NAMES", help="comma-separated task names or .toml spec paths"
    )
    p.add_argument(
        "--tasks-dir",
        type=Path,
        default=Path("configs/eval"),
        metavar="DIR",
        help="where task names are looked up (default configs/eval)",
    )
    p.add_argument(
        "--shots", type=int, metavar="N", help="few-shot examples per question (default: the task's)"
    )
    p.add_argument(
        "--limit", type=positive_int, metavar="N", help="the first N examples of each task (default all)"
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=DEFAULT_BATCH_SIZE,
        metavar="N",
        help=f"sequences per forward pass (default {DEFAULT_BATCH_SIZE}; scores do not depend on it)",
    )
    p.add_argument(
        "--chat", action="store_true", help="prompt instruct models in their chat format (one user turn)"
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="where your copies of datasets herd cannot ship live (e.g. DIR/gsm8k/test.jsonl); see docs/eval.md",
    )
    add_output(p, "results directory (default runs/eval/<model name>)", required=False)
    p.add_argument("--rerun", action="store_true", help="score every task again, even those kept in --output")
    add_quiet(p)
    add_json(p, "results.json's content")
    p.set_defaults(func=_eval)


def _output_dir(args: argparse.Namespace) -> Path:
    if args.output is not None:
        return args.output
    name = Path(args.model.rstrip("/")).name or "model"
    return Path("runs/eval") / name


def _eval(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from herd.eval.kinds import find_task, load_spec, plot_task, run_task, with_shots
    from herd.eval.report import known_preset, load_finished, save_task, spec_settings, write_report
    from herd.infer.loading import check_model_spec
    from herd.train.pretrain_objective import run_export

    names = [n.strip() for n in args.tasks.split(",") if n.strip()]
    if not names:
        raise ConfigError("--tasks is empty: name at least one task (e.g. --tasks arc_easy)")
    if len(set(names)) != len(names):
        raise ConfigError(f"--tasks names a task twice: {args.tasks}")
    specs = [load_spec(find_task(name, args.tasks_dir)) for name in names]
    if args.shots is not None:
        specs = [with_shots(spec, args.shots) for spec in specs]
    export = run_export(Path(args.model))  # a pretraining run's directory stands for its export, <run>/hf
    if export != Path(args.model):
        args.model = str(export)
    check_model_spec(args.model, args.random)
    out_dir = _output_dir(args)
    engine, tokenizer = load_engine(args)
    preset = known_preset(engine.model.config)
    common = {
        "model": args.model,
        "tokenizer": args.tokenizer,
        "random": args.random,
        "dtype": args.dtype,
        "quantize": args.quantize,
        "group_size": args.group_size if args.quantize == "int4" else None,
        "limit": args.limit or 0,
        "chat": args.chat,
        "data_dir": str(args.data_dir) if args.data_dir else None,
    }
    results = []
    started = time.perf_counter()
    for spec in specs:
        settings = {**common, "spec": spec_settings(spec)}
        kept = None if args.rerun else load_finished(out_dir, spec.name, settings)
        if kept is not None:
            if not args.quiet:
                print(f"{spec.name}: kept from {out_dir} (same model and settings)", file=sys.stderr)
            results.append(kept)
            continue
        with tqdm(desc=spec.name, unit="ex", disable=args.quiet, file=sys.stderr, leave=True) as bar:
            result = run_task(
                spec,
                engine,
                tokenizer,
                limit=args.limit or 0,
                batch_size=args.batch_size,
                chat=args.chat,
                data_dir=args.data_dir,
                progress=bar.update,
            )
        save_task(out_dir, result, settings)
        plot_task(result, out_dir)
        results.append(result)
    info: dict[str, Any] = {
        **common,
        "batch_size": args.batch_size,
        "seconds": round(time.perf_counter() - started, 2),
    }
    paths = write_report(out_dir, results, info, preset)
    if args.json:
        print(paths["json"].read_text("utf-8"), end="")
        return 0
    print(paths["markdown"].read_text("utf-8"), end="")
    if not args.quiet:
        print(
            f"[{time.perf_counter() - started:.1f}s; results: {paths['json']}, {paths['markdown']}, "
            f"{paths['chart']}; per example: {out_dir / 'examples'}]",
            file=sys.stderr,
        )
    return 0
