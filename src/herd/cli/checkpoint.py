"""``herd convert``: checkpoints between the Hugging Face, Meta and GGUF layouts."""

from __future__ import annotations

import argparse
import json

from herd.argtypes import positive_int
from herd.checkpoint.destination import FORMATS
from herd.cli.flags import FLOAT_DTYPES, add_dtype, add_json, add_quiet
from herd.errors import HerdError

# The --dtype names each target takes, and the names the GGUF writer knows them by (q8_0 exists only there).
GGUF_DTYPES = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "q8_0": "q8_0"}
TARGET_DTYPES = {"hf": FLOAT_DTYPES, "meta": FLOAT_DTYPES, "gguf": tuple(GGUF_DTYPES)}


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``herd convert SRC DST --to FORMAT``."""
    p = sub.add_parser(
        "convert",
        help="convert a checkpoint between hf, meta and gguf",
        description="Convert SRC (a Hugging Face dir, a Meta dir with params.json + consolidated.*.pth, "
        "or a GGUF file) to DST in another layout, streaming tensor by tensor. Meta output can be "
        "resharded with --shards. The tokenizer travels with the model: a directory's tokenizer files are "
        "copied, a GGUF's vocabulary is written as tokenizer files and a directory's tokenizer is embedded "
        "in a GGUF; --tokenizer gives one where the source has none or replaces it. A GGUF is not written "
        "without a vocabulary unless --no-vocab. Nothing is left at DST if the conversion fails. An existing DST is "
        "replaced only with --force, and only if it is a checkpoint of the target format that herd "
        "wrote (a GGUF file for --to gguf); DST may never be SRC, contain it or lie inside it. "
        "DST is the second positional argument rather than -o/--output: a conversion always has "
        "exactly one source and one destination.",
        epilog="examples:\n  herd convert Llama-2-13b/ llama2-13b-hf --to hf\n"
        "  herd convert llama2-13b-hf llama2-13b-meta --to meta --shards 2\n"
        "  herd convert llama2-13b-hf llama2-13b.q8_0.gguf --to gguf --dtype q8_0\n"
        "  herd convert runs/tiny/step-1000 tiny.gguf --to gguf --tokenizer tok/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("src", metavar="SRC", help="source checkpoint (directory or .gguf file)")
    p.add_argument("dst", metavar="DST", help="destination directory (hf, meta) or file (gguf)")
    p.add_argument("--to", required=True, choices=FORMATS, help="target format")
    add_dtype(
        p,
        "weight dtype: fp32, bf16 or fp16 for every target (default: the source's for hf/meta, fp32 "
        "for gguf); q8_0 for gguf only (f32 and f16 are accepted for fp32 and fp16)",
        quantized=("q8_0",),
        check=False,
    )
    p.add_argument(
        "--shards",
        type=positive_int,
        default=None,
        help="model-parallel shards for --to meta (default 1); refused for the other targets",
    )
    vocab = p.add_mutually_exclusive_group()
    vocab.add_argument(
        "--tokenizer",
        metavar="PATH",
        default=None,
        help="the tokenizer to write with the model, where the source has none or to replace its own: any "
        "tokenizer herd loads (tokenizer.model, tokenizer.json, a .gguf file or a model directory)",
    )
    vocab.add_argument(
        "--no-vocab",
        action="store_true",
        help="write a GGUF without vocabulary; llama.cpp will refuse to load it (--to gguf only)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace DST if it is an earlier herd output of the target format",
    )
    add_quiet(p)
    add_json(p, "the source, output, format, dtype and tokenizer")
    p.set_defaults(func=_convert)


def _convert(args: argparse.Namespace) -> int:
    from herd.checkpoint.convert import convert

    dtype = args.dtype
    if dtype is not None and dtype not in TARGET_DTYPES[args.to]:
        raise HerdError(f"--dtype {dtype}: --to {args.to} takes {', '.join(TARGET_DTYPES[args.to])}")
    out = convert(
        args.src,
        args.dst,
        args.to,
        dtype=GGUF_DTYPES[dtype] if args.to == "gguf" and dtype is not None else dtype,
        shards=args.shards,
        progress=not args.quiet,
        force=args.force,
        tokenizer=args.tokenizer,
        no_vocab=args.no_vocab,
    )
    if args.json:
        summary = {"source": args.src, "output": str(out), "format": args.to, "dtype": dtype}
        print(json.dumps(summary | {"tokenizer": args.tokenizer}))
    else:
        print(f"wrote {out}")
    return 0
