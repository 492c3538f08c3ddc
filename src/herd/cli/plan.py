"""``herd plan``: batch, memory per GPU, FLOPs and time per step of a TP·CP·PP·DP pretraining run.

The arithmetic of Llama 3's Table 4 (§3.3.2) for any preset or checkpoint; ``--table4`` prints the
paper's three 405B rows beside herd's figures (:mod:`herd.scaling.planner`).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from herd.argtypes import positive_int
from herd.cli.flags import add_json
from herd.cli.text import print_rows
from herd.errors import InputError

if TYPE_CHECKING:
    from herd.model.config import ModelConfig

_RECOMPUTE = ("none", "selective", "full")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``herd plan``."""
    parser = sub.add_parser(
        "plan",
        help="plan a pretraining cluster: batch, memory per GPU, FLOPs and time per step (Llama 3 Table 4)",
        description="Split a model over GPUS = TP·PP·CP·DP as Llama 3 did (§3.3.2) and print the "
        "global and per-replica batch, the microbatches, the layers on each pipeline stage, the memory "
        "of the busiest GPU (bf16 parameters gathered for the step as Llama 3's FSDP keeps them, fp32 "
        "gradients and fp32 master + AdamW state sharded over DP, activations of the 1F1B microbatches "
        "in flight under --recompute), whether it fits --gpu-memory-gb (10^9 bytes), the training FLOPs "
        "per step (herd model info's per-token FLOPs × tokens) and, at --mfu of --peak-tflops, the "
        "TFLOPs per GPU, the time per step and the tokens per day. --table4 prints Llama 3's Table 4 "
        "rows (405B on H100s) beside herd's figures.",
        epilog="examples:\n"
        "  herd plan llama3.1-405b --gpus 8192 --tp 8 --pp 16 --seq 8192 --batch-tokens 16777216\n"
        "  herd plan llama2-7b --gpus 8 --seq 4096 --batch-tokens 4194304 --recompute none --json\n"
        "  herd plan --table4",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "model", metavar="PRESET_OR_PATH", nargs="?", help="a preset name or a checkpoint path"
    )
    parser.add_argument("--gpus", type=positive_int, help="GPUs in all (TP·PP·CP·DP)")
    parser.add_argument("--tp", type=positive_int, default=1, help="tensor-parallel size (default 1)")
    parser.add_argument("--pp", type=positive_int, default=1, help="pipeline stages (default 1)")
    parser.add_argument("--cp", type=positive_int, default=1, help="context-parallel size (default 1)")
    parser.add_argument(
        "--seq", type=positive_int, help="sequence length (default: the model's context length)"
    )
    parser.add_argument("--batch-tokens", type=positive_int, help="tokens per optimizer step, all GPUs")
    parser.add_argument(
        "--micro-batch", type=positive_int, default=1, help="sequences per microbatch (default 1)"
    )
    parser.add_argument("--mfu", type=float, default=0.40, help="model FLOPs utilisation (default 0.40)")
    parser.add_argument(
        "--peak-tflops", type=float, default=989.0, help="peak dense TFLOPS per GPU (default 989, H100 bf16)"
    )
    parser.add_argument(
        "--gpu-memory-gb", type=float, default=80.0, help="memory per GPU in 10^9 bytes (default 80)"
    )
    parser.add_argument(
        "--recompute",
        choices=_RECOMPUTE,
        default="selective",
        help="activation recomputation: none, selective (keep linear outputs, Llama 1 §2.4; default) "
        "or full (keep each layer's input)",
    )
    parser.add_argument(
        "--table4",
        action="store_true",
        help="Llama 3's Table 4 rows beside herd's figures (the model defaults to llama3.1-405b)",
    )
    add_json(parser, "the plan")
    parser.set_defaults(func=_plan)


def _plan(args: argparse.Namespace) -> int:
    from herd.checkpoint.inspect import resolve_model
    from herd.scaling.planner import LLAMA3_TABLE4_MODEL, ClusterPlan, plan

    if args.table4:
        config, _ = resolve_model(args.model or LLAMA3_TABLE4_MODEL)
        return _table4(config, args)
    missing = [
        flag for flag, value in (("--gpus", args.gpus), ("--batch-tokens", args.batch_tokens)) if not value
    ]
    if args.model is None or missing:
        what = ", ".join((["PRESET_OR_PATH"] if args.model is None else []) + missing)
        raise InputError(f"herd plan: {what} required (or --table4 for Llama 3's rows)")
    config, _ = resolve_model(args.model)
    report = plan(
        ClusterPlan(
            model=config.replace(name=config.name or args.model),
            gpus=args.gpus,
            batch_tokens=args.batch_tokens,
            seq=args.seq or config.max_seq_len,
            tp=args.tp,
            pp=args.pp,
            cp=args.cp,
            micro_batch=args.micro_batch,
            mfu=args.mfu,
            peak_tflops=args.peak_tflops,
            gpu_memory_gb=args.gpu_memory_gb,
            recompute=args.recompute,
        )
    )
    if args.json:
        print(json.dumps(report.to_dict()))
        return 0
    memory = report.memory
    print_rows(
        [
            ("model", f"{report.model} ({report.parameters:,} parameters)"),
            (
                "split",
                f"{report.gpus:,} GPUs = TP {report.tp} · PP {report.pp} · CP {report.cp} · DP {report.dp}",
            ),
            ("batch", f"{report.tokens_per_step:,} tokens = {report.sequences_per_step:,} × {report.seq:,}"),
            (
                "per replica",
                f"{report.sequences_per_replica:,} sequences = {report.microbatches:,} microbatches "
                f"of {report.micro_batch}",
            ),
            ("layers per stage", _stages(report.layers_per_stage)),
            ("busiest GPU", f"stage {report.peak_stage}, {report.parameters_per_gpu:,} parameters"),
            ("parameters (bf16)", _gb(memory.parameters)),
            ("gradients (fp32)", _gb(memory.gradients)),
            ("optimizer (fp32)", _gb(memory.optimizer)),
            (f"activations ({report.recompute})", _gb(memory.activations)),
            ("total", f"{_gb(memory.total)} of {report.gpu_memory_gb:g} GB: {_fits(report.fits)}"),
            ("FLOPs / step", f"{report.flops_per_step:.4g} ({report.flops_per_token:.4g} a token)"),
            (
                "TFLOPs / GPU",
                f"{report.achieved_tflops_per_gpu:.1f} ({report.mfu:.0%} of {report.peak_tflops:g})",
            ),
            ("time / step", f"{report.step_seconds:.2f} s"),
            ("tokens / day", f"{report.tokens_per_day:.4g}"),
        ]
    )
    return 0


def _table4(config: ModelConfig, args: argparse.Namespace) -> int:
    from herd.scaling.planner import LLAMA3_TABLE4, plan, table4_plan

    reports = [plan(table4_plan(config, row, args.recompute)) for row in LLAMA3_TABLE4]
    if args.json:
        print(
            json.dumps(
                [
                    {"paper": vars(row) | {"batch_tokens": row.batch_tokens}, "herd": report.to_dict()}
                    for row, report in zip(LLAMA3_TABLE4, reports, strict=True)
                ]
            )
        )
        return 0
    pairs = list(zip(LLAMA3_TABLE4, reports, strict=True))
    _print_columns(
        [("Llama 3 Table 4", [f"row {i + 1} (paper / herd)" for i in range(len(pairs))])]
        + [
            (label, [cell(row, report) for row, report in pairs])
            for label, cell in (
                ("GPUs", lambda row, report: f"{row.gpus:,} / {report.gpus:,}"),
                ("TP · CP · PP", lambda row, report: f"{row.tp} · {row.cp} · {row.pp}"),
                ("DP", lambda row, report: f"{row.dp} / {report.dp}"),
                ("seq", lambda row, report: f"{row.seq:,} / {report.seq:,}"),
                ("batch / DP", lambda row, report: f"{row.batch_per_dp} / {report.sequences_per_replica}"),
                ("tokens / batch", lambda row, report: f"16M / {report.tokens_per_step:,}"),
                ("MFU", lambda row, report: f"{row.mfu:.0%} / {report.mfu:.0%}"),
                (
                    "TFLOPs / GPU",
                    lambda row, report: f"{row.tflops_per_gpu:g} / {report.achieved_tflops_per_gpu:.1f}",
                ),
                (
                    "MFU of paper's TFLOPs",
                    lambda row, report: f"{row.tflops_per_gpu / report.peak_tflops:.1%}",
                ),
                ("layers per stage", lambda row, report: _stages(report.layers_per_stage)),
                (
                    f"memory / GPU ({args.recompute})",
                    lambda row, report: f"{_gb(report.memory.total)}: {_fits(report.fits)}",
                ),
                ("time / step", lambda row, report: f"{report.step_seconds:.2f} s"),
                ("tokens / day", lambda row, report: f"{report.tokens_per_day:.4g}"),
            )
        ]
    )
    return 0


def _print_columns(rows: Sequence[tuple[str, Sequence[str]]]) -> None:
    """Rows of a label and one cell a column, every column aligned two spaces after the widest cell."""
    widths = [max(len(row[0]) for row in rows)] + [
        max(len(cells[i]) for _, cells in rows) for i in range(len(rows[0][1]))
    ]
    for label, cells in rows:
        print(
            "  ".join(text.ljust(width) for text, width in zip([label, *cells], widths, strict=True)).rstrip()
        )


def _stages(layers: Sequence[int]) -> str:
    if len(set(layers)) == 1:
        return f"{layers[0]} × {len(layers)}"
    if len(layers) > 2 and len(set(layers[1:-1])) == 1:
        return f"{layers[0]}, {layers[1]} × {len(layers) - 2}, {layers[-1]}"
    return ", ".join(map(str, layers))


def _gb(size: int) -> str:
    return f"{size / 1e9:.2f} GB"


def _fits(fits: bool) -> str:
    return "fits" if fits else "does not fit"
