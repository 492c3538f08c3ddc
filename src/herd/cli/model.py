"""``herd model info`` and ``herd model presets``: the size of any preset or checkpoint, without loading weights."""

from __future__ import annotations

import argparse
import json

from herd.argtypes import positive_int
from herd.cli.flags import add_json
from herd.cli.text import print_rows


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``herd model`` with its ``info`` and ``presets`` actions."""
    model = sub.add_parser("model", help="inspect model architectures and presets")
    model_sub = model.add_subparsers(dest="model_command", metavar="ACTION")
    info = model_sub.add_parser(
        "info",
        help="parameters, FLOPs, KV-cache and weight memory of a preset or checkpoint",
        description="Print the shape, context length, whether the embeddings are tied, the dtype the "
        "weights are stored in (a preset's is fp32, the dtype herd builds it in), the exact parameter count "
        "(built on the meta device: nothing is allocated), non-embedding parameters, training FLOPs per "
        "token (PaLM accounting), KV-cache memory per token in bf16 and weight memory at fp32/bf16/int8/int4 "
        "(MiB below 1 GiB). A checkpoint is read for its config and tensor headers only.",
        epilog="examples:\n  herd model info llama3.1-405b\n  herd model info llama2-70b --json\n"
        "  herd model info llama2-13b-hf/\n"
        "see also: herd plan PRESET --gpus N --tp T --pp P (memory per GPU and time per step of a training run)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    info.add_argument("model", metavar="PRESET_OR_PATH", help="a preset name or a checkpoint path")
    info.add_argument("--seq-len", type=positive_int, default=None, help="context for the attention FLOPs")
    add_json(info, "the sizes and the config")
    info.set_defaults(func=_info)
    presets = model_sub.add_parser(
        "presets",
        help="list the preset names",
        description="Print the name of every preset, one a line: each released Llama architecture "
        "and the tiny CPU models of each family's shape.",
    )
    presets.set_defaults(func=_presets)
    model.set_defaults(func=lambda args: model.print_help() or 2)


def _presets(args: argparse.Namespace) -> int:
    from herd.model.presets import preset_names

    print("\n".join(preset_names()))
    return 0


def _info(args: argparse.Namespace) -> int:
    from herd.checkpoint.inspect import resolve_model
    from herd.model.info import format_bytes, model_info

    config, dtype = resolve_model(args.model)
    info = model_info(config, args.seq_len, dtype)
    if args.json:
        print(json.dumps(info.to_dict() | {"config": config.to_dict()}))
        return 0

    def sizes(*sizes: int) -> str:
        return " / ".join(map(format_bytes, sizes))

    print_rows(
        [
            ("model", info.name or args.model),
            (
                "shape",
                f"dim {config.dim}, {config.n_layers} layers, {config.n_heads} heads "
                f"({config.n_kv_heads} kv), ffn {config.hidden_dim}, vocab {config.vocab_size}",
            ),
            ("context length", f"{info.context_length:,}"),
            ("tied embeddings", "yes" if info.tied_embeddings else "no"),
            ("stored dtype", info.dtype or "none (no weights in the file)"),
            ("parameters", f"{info.parameters:,}"),
            ("non-embedding parameters", f"{info.non_embedding_parameters:,}"),
            ("training FLOPs / token", f"{info.training_flops_per_token:.4g} (seq {info.seq_len})"),
            ("KV cache / token (bf16)", sizes(info.kv_cache_bytes_per_token_bf16)),
            ("weights fp32 / bf16", sizes(info.weight_bytes_fp32, info.weight_bytes_bf16)),
            ("weights int8 / int4", sizes(info.weight_bytes_int8, info.weight_bytes_int4)),
        ]
    )
    return 0
