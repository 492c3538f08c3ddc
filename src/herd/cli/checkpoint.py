"""``herd convert``: checkpoints between the Hugging Face, Meta and GGUF layouts."""

from __future__ import annotations

import argparse

from herd.argtypes import positive_int
from herd.checkpoint.convert import FORMATS, convert


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="convert a checkpoint between hf, meta and gguf",
        description="Convert SRC (a Hugging Face dir, a Meta dir with params.json + consolidated.*.pth, "
        "or a GGUF file) to DST in another layout, streaming tensor by tensor. Meta output can be "
        "resharded with --shards. Nothing is left at DST if the conversion fails. An existing DST is "
        "replaced only with --force, and only if it is a checkpoint of the target format that herd "
        "wrote (a GGUF file for --to gguf); DST may never be SRC, contain it or lie inside it.",
        epilog="examples:\n  herd convert Llama-2-13b/ llama2-13b-hf --to hf\n"
        "  herd convert llama2-13b-hf llama2-13b-meta --to meta --shards 2\n"
        "  herd convert llama2-13b-hf llama2-13b.q8_0.gguf --to gguf --dtype q8_0",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("src", metavar="SRC", help="source checkpoint (directory or .gguf file)")
    p.add_argument("dst", metavar="DST", help="destination directory (hf, meta) or file (gguf)")
    p.add_argument("--to", required=True, choices=FORMATS, help="target format")
    p.add_argument(
        "--dtype",
        default=None,
        help="hf/meta: fp32, fp16 or bf16 (default: keep the source's); gguf: f32, f16, bf16 or q8_0 (default f32)",
    )
    p.add_argument(
        "--shards", type=positive_int, default=1, help="model-parallel shards for --to meta (default 1)"
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace DST if it is an earlier herd output of the target format",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_convert)


def _convert(args: argparse.Namespace) -> int:
    out = convert(
        args.src,
        args.dst,
        args.to,
        dtype=args.dtype,
        shards=args.shards,
        progress=not args.quiet,
        force=args.force,
    )
    print(f"wrote {out}")
    return 0
