"""``herd pretrain CONFIG.toml [--set section.key=value ...] [--resume | --overwrite] [--max-restarts N]``.

Multi-process runs: ``torchrun --nproc-per-node N -m herd.cli pretrain CONFIG.toml``
(see docs/pretrain.md). Only rank 0 prints the summary and the resume report.
With ``--resume`` the run's saved config is the base and the flags given now
apply on top (:mod:`herd.train.resume`). The flags, the config resolution and
the summary rows every training run shares are in :mod:`herd.cli.runs`.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from herd.cli.runs import add_run_flags, optional, run_rows, run_training

if TYPE_CHECKING:
    from herd.train.pretrain_objective import PretrainResult


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``herd pretrain``."""
    p = sub.add_parser(
        "pretrain",
        help="pretrain a Llama-family model on packed token shards",
        description="Pretrain from a TOML config (configs/pretrain/*.toml); any key can be overridden "
        "with --set. Checkpoints, metrics.jsonl, TensorBoard logs, the loss plot, the final weights "
        "(Hugging Face layout) and summary.json go to the run directory (out_dir).",
        epilog="examples:\n  herd pretrain configs/pretrain/demo.toml --set data.path=runs/data\n"
        "  herd pretrain configs/pretrain/demo.toml -o runs/demo2 --set train.steps=50 --json\n"
        "  herd pretrain configs/pretrain/demo.toml --resume --set train.steps=400",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_flags(
        p,
        set_example="--set optim.lr=3e-4 --set model.dim=256",
        print_config="model.vocab_size 0: taken from the dataset's manifest when training starts",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Resolve the config from the file and the flags, then pretrain (or only print the config)."""
    # The config modules import PyTorch (herd.model.config): imported only when the command runs.
    from herd.train.config import PretrainConfig
    from herd.train.loop import pretrain

    return run_training(args, PretrainConfig, pretrain, _summary)


def _summary(result: PretrainResult) -> list[tuple[str, object]]:
    """The rows of the pretraining summary printed for people."""
    validation = f"{optional(result.val_loss)} nats/token, {optional(result.val_bpb)} bits/byte"
    weights = [("weights (Hugging Face layout)", f"{result.hf_dir}, {result.tokenizer_note()}")]
    return run_rows(result, [("validation loss", validation)], weights if result.hf_dir else [])
