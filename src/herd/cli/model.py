"""``herd model info``: the size of any preset or checkpoint, computed without loading weights."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from herd.argtypes import positive_int
from herd.errors import HerdError
from herd.model.config import ModelConfig
from herd.model.info import model_info
from herd.model.presets import get_preset, is_preset, preset_names


def register(sub: argparse._SubParsersAction) -> None:
    model = sub.add_parser("model", help="inspect model architectures and presets")
    model_sub = model.add_subparsers(dest="model_command", metavar="ACTION")
    info = model_sub.add_parser(
        "info",
        help="parameters, FLOPs, KV-cache and weight memory of a preset or checkpoint",
        description="Print the exact parameter count (built on the meta device: nothing is allocated), "
        "non-embedding parameters, training FLOPs per token (PaLM accounting), KV-cache bytes per token "
        "in bf16 and weight memory at fp32/bf16/int8/int4.",
    )
    info.add_argument("model", metavar="PRESET_OR_PATH", help="a preset name or a checkpoint path")
    info.add_argument("--seq-len", type=positive_int, default=None, help="context for the attention FLOPs")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(func=_info)
    presets = model_sub.add_parser("presets", help="list the preset names")
    presets.set_defaults(func=lambda args: print("\n".join(preset_names())) or 0)
    model.set_defaults(func=lambda args: model.print_help() or 2)


def resolve_config(spec: str) -> ModelConfig:
    """The config of a preset name, or of the checkpoint at that path (weights are not read)."""
    if is_preset(spec) and not Path(spec).exists():
        return get_preset(spec)
    if not Path(spec).exists():
        raise HerdError(f"{spec}: neither a preset nor an existing path (presets: herd model presets)")
    from herd.checkpoint.load import open_checkpoint

    with open_checkpoint(spec) as reader:
        return reader.config.replace(name=Path(spec).name)


def _info(args: argparse.Namespace) -> int:
    config = resolve_config(args.model)
    info = model_info(config, args.seq_len)
    if args.json:
        print(json.dumps(info.to_dict() | {"config": config.to_dict()}))
        return 0
    gib = 1024**3
    rows = [
        ("model", info.name or args.model),
        (
            "shape",
            f"dim {config.dim}, {config.n_layers} layers, {config.n_heads} heads "
            f"({config.n_kv_heads} kv), ffn {config.hidden_dim}, vocab {config.vocab_size}",
        ),
        ("parameters", f"{info.parameters:,}"),
        ("non-embedding parameters", f"{info.non_embedding_parameters:,}"),
        ("training FLOPs / token", f"{info.training_flops_per_token:.4g} (seq {info.seq_len})"),
        ("KV cache / token (bf16)", f"{info.kv_cache_bytes_per_token_bf16:,} bytes"),
        (
            "weights fp32 / bf16",
            f"{info.weight_bytes_fp32 / gib:.2f} / {info.weight_bytes_bf16 / gib:.2f} GiB",
        ),
        (
            "weights int8 / int4",
            f"{info.weight_bytes_int8 / gib:.2f} / {info.weight_bytes_int4 / gib:.2f} GiB",
        ),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0
