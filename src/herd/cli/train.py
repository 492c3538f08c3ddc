"""``herd pretrain CONFIG.toml [--set section.key=value ...] [--resume | --overwrite] [--max-restarts N]``.

Multi-process runs: ``torchrun --nproc-per-node N -m herd.cli pretrain CONFIG.toml``
(see docs/pretrain.md).
"""

from __future__ import annotations

import argparse
import json
import os

from herd.argtypes import non_negative_int
from herd.train.config import load_config


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "pretrain",
        help="pretrain a Llama-family model on packed token shards",
        description="Pretrain from a TOML config (configs/pretrain/*.toml); any key can be overridden.",
    )
    p.add_argument("config", help="TOML config file")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set optim.lr=3e-4 --set model.dim=256 (repeatable)",
    )
    start = p.add_mutually_exclusive_group()
    start.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in out_dir")
    start.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh in an out_dir that holds an earlier run, removing that run's checkpoints and logs",
    )
    p.add_argument(
        "--max-restarts",
        type=non_negative_int,
        default=None,
        help="restart from the last checkpoint after a crash (fault.max_restarts)",
    )
    p.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    overrides = list(args.overrides)
    if args.max_restarts is not None:
        overrides.append(f"fault.max_restarts={args.max_restarts}")
    config = load_config(args.config, overrides)
    if args.print_config:
        print(json.dumps(config.to_dict(), indent=2))
        return 0
    from herd.train.loop import pretrain

    result = pretrain(config, resume=args.resume, overwrite=args.overwrite)
    if os.environ.get("RANK", "0") == "0":
        print(json.dumps(result.to_dict(), indent=2))
    return 0
