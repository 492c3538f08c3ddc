"""The flags that load a model for inference, and the loader they drive: shared by generate, chat and eval.

``MODEL`` plus ``--tokenizer``, ``--random``, ``--dtype``, ``--quantize``,
``--group-size``, ``--compile``, ``--device`` and ``--threads`` mean the same in
every command that runs a model through the inference engine. This module is
not a command (it registers nothing), so a command's ``--help`` may import it
without importing another command's module or PyTorch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from herd.argtypes import device
from herd.cli.flags import add_dtype, add_threads, apply_threads

if TYPE_CHECKING:  # the library (and PyTorch) is imported when a command runs, not to build its --help
    from herd.infer.engine import Engine
    from herd.tokenizer.base import Tokenizer

MODEL_HELP = (
    "a checkpoint herd loads (Hugging Face or Meta directory, GGUF file, a pretraining run's directory), "
    "or a preset name with --random"
)

# herd.infer.quantize's QUANT_MODES and INT4_GROUP_SIZES, written out so that --help does not import
# PyTorch; tests/cli/test_cli_infer.py checks they agree.
QUANT_MODES = ("int8", "int4")
INT4_GROUP_SIZES = (32, 64, 128, 256)


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """The flags that load a model, the same for every command that runs one."""
    parser.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    parser.add_argument(
        "--tokenizer",
        metavar="PATH",
        help="tokenizer file or directory (default: the checkpoint's own; a --random preset falls back to "
        "a byte-level tokenizer: UTF-8 bytes plus <s> and </s>)",
    )
    parser.add_argument(
        "--random", action="store_true", help="build the preset MODEL with random weights (smoke tests)"
    )
    add_dtype(parser, "weight and activation dtype (default fp32)", default="fp32")
    parser.add_argument(
        "--quantize",
        choices=QUANT_MODES,
        help="weight-only quantization: int8 per output channel, or int4 in groups (see --group-size)",
    )
    parser.add_argument(
        "--group-size",
        type=int,
        default=32,
        choices=INT4_GROUP_SIZES,
        help="int4 group size (default 32: llama.cpp's Q4_1, 5 bits per weight)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the decode step (slow first tokens; on a GPU also captured as a CUDA graph)",
    )
    parser.add_argument("--device", type=device, default="cpu", help="cpu, cuda, cuda:N or mps (default cpu)")
    add_threads(parser)


def load_engine(args: argparse.Namespace) -> tuple[Engine, Tokenizer]:
    """The engine and tokenizer of the model flags, on ``--threads`` threads; a pretraining run's
    directory stands for its Hugging Face export (``<run>/hf``)."""
    from herd.infer.engine import Engine
    from herd.infer.generate import generate_ids
    from herd.infer.loading import load_for_inference
    from herd.train.pretrain_objective import run_export

    apply_threads(args)
    model, tokenizer = load_for_inference(
        str(run_export(Path(args.model))),
        tokenizer=args.tokenizer,
        random=args.random,
        dtype=args.dtype,
        quantize=args.quantize,
        group_size=args.group_size,
        device=args.device,
    )
    engine = Engine(model, compile=args.compile)
    if args.compile:
        print("compiling the decode step (torch.compile)...", file=sys.stderr, flush=True)
        generate_ids(engine, [[0, 0]], max_new_tokens=3)  # compile now, so the timings below are real
        engine.reset()
    return engine, tokenizer
