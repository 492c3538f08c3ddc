"""Post-training commands: ``herd sft`` (Llama 2 §3.1 supervised fine-tuning), ``herd average`` (Llama 3 §4.1.5 model averaging).

The library code is :mod:`herd.posttrain`; it is imported when a command runs,
so building the command tree imports no PyTorch.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from herd.argtypes import non_negative_float
from herd.cli.flags import add_dtype, add_json, add_quiet, apply_threads
from herd.cli.train import add_run_flags, optional, print_result, resolve_config, run_rows

if TYPE_CHECKING:
    from herd.posttrain.sft import SFTResult


def weight_list(text: str) -> list[float]:
    """``0.25,0.75`` → ``[0.25, 0.75]``: comma-separated finite numbers ≥ 0 (``--weights``)."""
    return [non_negative_float(part.strip()) for part in text.split(",")]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``herd average OUT IN1 IN2 ... [--weights W1,W2,...] [--dtype D] [--force]``."""
    p = sub.add_parser(
        "average",
        help="average checkpoints of one architecture (Llama 3 model averaging)",
        description="Write to OUT the weighted average of the checkpoints IN1 IN2 ..., tensor by tensor, "
        "as Llama 3 averages the models of runs with different data or hyperparameters at each reward "
        "model, SFT or DPO stage (Llama 3 §4.1.5). Inputs may be in any layout herd reads (Hugging Face "
        "dir, Meta dir, GGUF file, mixed); reward models (LlamaForSequenceClassification dirs) average "
        "into a reward model. Every input must have the same architecture, tensors and shapes, or "
        "nothing is written. OUT is a Hugging Face directory with the first input's tokenizer; it is "
        "the first positional argument, followed by the inputs. An existing OUT is replaced only with "
        "--force, and only if herd wrote it.",
        epilog="examples:\n  herd average runs/avg/mean runs/avg/a runs/avg/b\n"
        "  herd average runs/avg/mean runs/avg/a runs/avg/b --weights 0.25,0.75 --dtype bf16 --force",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("output", metavar="OUT", help="output directory (Hugging Face layout)")
    p.add_argument("inputs", metavar="IN", nargs="+", help="checkpoints to average (two or more)")
    p.add_argument(
        "--weights",
        type=weight_list,
        metavar="W1,W2,...",
        help="one weight per input, comma-separated, normalised to sum 1 (default: equal weights)",
    )
    add_dtype(p, "weight dtype of the output (default: the first input's)")
    p.add_argument("--force", action="store_true", help="replace OUT if it is an earlier herd output")
    add_quiet(p)
    add_json(p, "the inputs, their normalised weights, the output and the dtype")
    p.set_defaults(func=run_average)
    register_sft(sub)


def register_sft(sub: argparse._SubParsersAction) -> None:
    """Add ``herd sft CONFIG`` with the flags every training command has (:func:`herd.cli.train.add_run_flags`)."""
    p = sub.add_parser(
        "sft",
        help="supervised fine-tuning on chat conversations (Llama 2 SFT)",
        description="Fine-tune the checkpoint `init` of a TOML config (configs/posttrain/*-sft.toml) on chat "
        "conversations (JSONL rows {messages: [{role, content}, ...]}), with the loss on the assistant's "
        "answers only (Llama 2 §3.1, Llama 3 §4.1.3), on the pretraining trainer: checkpoints, --resume, "
        "metrics.jsonl, the loss plot and summary.json go to the run directory (out_dir), the fine-tuned "
        "weights with their tokenizer to OUT/final (Hugging Face layout). Rows that cannot be used are "
        "skipped and counted by reason.",
        epilog="examples:\n  herd sft configs/posttrain/sft-demo.toml -o runs/sft --set train.steps=4\n"
        "  herd sft configs/posttrain/sft-demo.toml -o runs/sft --resume --set train.steps=8\n"
        "  herd sft configs/posttrain/llama3-sft.toml --set init=path/to/model --print-config",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_flags(
        p,
        set_example="--set train.steps=20 --set optim.lr=1e-5",
        print_config="train.steps 0: data.epochs passes over the packed data",
    )
    p.set_defaults(func=run_sft)


def run_average(args: argparse.Namespace) -> int:
    """Run ``herd average``: print where the average was written."""
    from herd.posttrain.average import average_checkpoints, normalised_weights

    weights = normalised_weights(args.weights, len(args.inputs))
    out = average_checkpoints(
        args.inputs, args.output, weights, args.dtype, force=args.force, progress=not args.quiet
    )
    if args.json:
        print(
            json.dumps({"inputs": args.inputs, "weights": weights, "output": str(out), "dtype": args.dtype})
        )
    else:
        print(f"wrote {out}")
    return 0


def run_sft(args: argparse.Namespace) -> int:
    """Run ``herd sft``: resolve the config, fine-tune, print the summary (or only print the config)."""
    from herd.posttrain.config import SFTConfig

    config = resolve_config(args, SFTConfig)
    if args.print_config:
        print(json.dumps(config.to_dict(), indent=2))
        return 0
    apply_threads(args)
    from herd.posttrain.sft import sft

    result = sft(config, resume=args.resume, overwrite=args.overwrite)
    print_result(args, result, sft_rows(result))
    return 0


def sft_rows(result: SFTResult) -> list[tuple[str, object]]:
    """The summary of an SFT run: the trainer's rows, the eval loss, the data used and skipped, the weights."""
    from herd.posttrain.data import SkipCounts

    used = ", ".join(f"{n:,} {name}" for name, n in result.conversations.items())
    data = [
        ("eval loss", f"{optional(result.eval_loss)} nats/answer token"),
        (
            "conversations",
            f"{used}; {result.packed_sequences:,} packed sequences, {result.epochs:.2f} epochs",
        ),
    ]
    for name, counts in result.skipped_rows.items():
        skipped = SkipCounts(counts)
        data.append((f"skipped rows ({name})", str(skipped) if skipped else "none"))
    weights = [
        ("weights (Hugging Face layout)", f"{result.final_dir}, with the tokenizer from {result.tokenizer}")
    ]
    return run_rows(result, data, weights if result.final_dir else [])
