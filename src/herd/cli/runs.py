"""What every training command shares (``herd pretrain``, ``herd sft``, ``herd rm``, ``herd dpo``).

The run flags (CONFIG, ``--set``, ``-o``, ``--resume | --overwrite``,
``--max-restarts``, ``--print-config``, ``--quiet``, ``--threads``, ``--json``),
the config resolution (with ``--resume``, the run's saved config with the flags
given now on top: :mod:`herd.train.resume`) and the summary rows. Not a
command module: light to import, so each command still imports only its own
module and no PyTorch for ``--help``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from herd.argtypes import non_negative_int
from herd.cli.flags import add_json, add_output, add_quiet, add_set, add_threads, apply_threads
from herd.cli.text import print_rows

if TYPE_CHECKING:
    from herd.train.config import ConfigT
    from herd.train.objective import RunResult

ResultT = TypeVar("ResultT", bound="RunResult")


def add_run_flags(p: argparse.ArgumentParser, *, set_example: str, print_config: str) -> None:
    """The flags every training command shares (``herd pretrain``, ``herd sft``), each with one meaning.

    CONFIG, ``--set``, ``-o``, ``--resume | --overwrite``, ``--max-restarts``,
    ``--print-config`` (``print_config`` says what is special in the printed
    config), ``--quiet``, ``--threads`` and ``--json``.
    """
    p.add_argument("config", help="TOML config file")
    add_set(p, set_example)
    add_output(p, "run directory (overrides the config's out_dir)", required=False)
    start = p.add_mutually_exclusive_group()
    start.add_argument(
        "--resume",
        action="store_true",
        help="continue from the newest checkpoint in out_dir, with the run's saved config "
        "(the flags given now apply on top; other changes to CONFIG do not)",
    )
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
    p.add_argument(
        "--print-config",
        action="store_true",
        help=f"print the resolved config as JSON and exit ({print_config}; with --resume, the run's saved "
        "config with the flags applied)",
    )
    add_quiet(p, "no progress bar (log.progress = false)")
    add_threads(p)
    add_json(p, "the run's summary (what summary.json holds)")


def resolve_config(args: argparse.Namespace, cls: type[ConfigT]) -> ConfigT:
    """The run's config (a ``cls``) from CONFIG and the flags; with ``--resume``, the saved one with the flags on top.

    Only rank 0 prints the lines that report what a resume changes.
    """
    overrides = list(args.overrides)
    if args.output is not None:
        overrides.append(f"out_dir={json.dumps(str(args.output))}")
    if args.max_restarts is not None:
        overrides.append(f"fault.max_restarts={args.max_restarts}")
    if args.quiet:
        overrides.append("log.progress=false")
    if args.resume:
        from herd.train.resume import resume_config

        config, report = resume_config(args.config, overrides, cls)
        if is_rank_0():
            for line in report:
                print(line, file=sys.stderr)
        return config
    from herd.train.config import load_run_config

    return load_run_config(cls, args.config, overrides)


def is_rank_0() -> bool:
    """Whether this is the process that prints (the only one, or rank 0 under torchrun)."""
    return os.environ.get("RANK", "0") == "0"


def print_result(args: argparse.Namespace, result: RunResult, rows: list[tuple[str, object]]) -> None:
    """On rank 0: the result as JSON with ``--json``, else its summary ``rows``."""
    if not is_rank_0():
        return
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print_rows(rows)


def optional(value: float | None) -> str:
    """A loss with four decimals, or ``n/a``."""
    return f"{value:.4f}" if value is not None else "n/a"


def run_rows(
    result: RunResult, held_out: list[tuple[str, object]], outputs: list[tuple[str, object]]
) -> list[tuple[str, object]]:
    """The summary rows of any run: progress, losses (``held_out`` after the train loss), speed, faults, files."""
    rows: list[tuple[str, object]] = [
        ("run directory", result.out_dir),
        ("steps", f"{result.steps:,} ({result.tokens:,} tokens)"),
        *([("stopped early", result.stopped_early)] if result.stopped_early else []),
        ("final train loss", f"{result.final_loss:.4f}"),
        *held_out,
        ("throughput", f"{result.tokens_per_s:,.0f} tokens/s, MFU {100 * result.mfu:.1f}%"),
        ("goodput", f"{100 * result.goodput:.1f}%"),
        (
            "skipped / rollbacks / restarts",
            f"{result.skipped_steps} / {result.rollbacks} / {result.restarts}",
        ),
        ("metrics", result.metrics),
    ]
    if "strategy" in result.extra:
        extra = result.extra
        rows.append(
            ("parallelism", f"{extra['strategy']}, {extra['world_size']} process(es) on {extra['device']}")
        )
    if result.loss_plot:
        rows.append(("loss plot", result.loss_plot))
    return rows + outputs


def run_training(
    args: argparse.Namespace,
    config_type: type[ConfigT],
    train: Callable[..., ResultT],
    rows: Callable[[ResultT], list[tuple[str, object]]],
) -> int:
    """Run a training command: resolve its config, train on herd's trainer, print the summary (or only print the config)."""
    config = resolve_config(args, config_type)
    if args.print_config:
        print(json.dumps(config.to_dict(), indent=2))
        return 0
    apply_threads(args)
    result = train(config, resume=args.resume, overwrite=args.overwrite)
    print_result(args, result, rows(result))
    return 0
