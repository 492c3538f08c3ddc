"""Post-training commands: ``herd average`` (Llama 3 §4.1.5 model averaging).

The library code is :mod:`herd.posttrain`; it is imported when a command runs,
so building the command tree imports no PyTorch.
"""

from __future__ import annotations

import argparse
import json

from herd.argtypes import non_negative_float
from herd.cli.flags import add_dtype, add_json, add_quiet


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
