"""Post-training throughput and peak memory of herd against TRL 1.16 (docs/posttrain.md).

``dpo``: herd's DPO (:mod:`herd.posttrain.dpo`, on herd's trainer) against
TRL's ``DPOTrainer``, plain sigmoid DPO (β 0.1, lr 1e-5, AdamW, clipping 1.0)
on both sides, on the same model, data and numbers of pairs and steps:

* the model is a random Llama of SmolLM2-135M's vocabulary (its tokenizer and
  ChatML template) and of the shape ``--shape`` (``small``: 6 layers of width 256;
  ``smollm2-135m``: the whole 135M shape), seeded, written once in Hugging Face
  layout with the tokenizer; herd's ``init`` and transformers'
  ``from_pretrained`` read that same directory, in fp32;
* the data is the first ``--pairs`` pairs of data/samples/posttrain/preferences-train.jsonl
  whose two sequences fit in a row of ``--seq-len`` tokens, in the chat format,
  one epoch of them on each side: TRL takes ``--batch`` pairs per step; herd a
  step of rows of ``--seq-len`` tokens sized to hold about as many pairs;
* TRL keeps its reference model in memory and runs it on every step (its
  default, ``precompute_ref_log_probs=False``); herd computes the reference
  log-probabilities in one pass before the first step and holds no second model.

Each framework runs in a child process of its own, so that its peak resident
memory (``ru_maxrss``: model, optimizer, activations and the libraries it
imports) is its own. Tokens are the real tokens of the pairs (prompt +
chosen and prompt + rejected, no padding), the same count on both sides;
tokens/s divides them by the time of the training steps, and the end-to-end
figure adds herd's reference pass (TRL's reference forward passes are inside
its steps).

    python -P bench/posttrain.py dpo                       # small shape, 48 pairs, 8 per step
    python -P bench/posttrain.py dpo --shape smollm2-135m --pairs 32 --threads 2

(``-P``: do not put bench/ first on sys.path, where other benchmarks' file names may
shadow standard modules.)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PAIRS = ROOT / "data/samples/posttrain/preferences-train.jsonl"
SHAPES = {
    "small": dict(dim=256, n_layers=6, n_heads=4, n_kv_heads=2, hidden_dim=768),
    "smollm2-135m": {},
}
FRAMEWORKS = ("herd", "trl")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="stage", required=True)
    d = sub.add_parser("dpo", help="herd's DPO against TRL's DPOTrainer")
    d.add_argument("--shape", choices=SHAPES, default="small", help="model shape (default small)")
    d.add_argument("--pairs", type=int, default=48, help="preference pairs, one epoch (default 48)")
    d.add_argument("--batch", type=int, default=8, help="pairs per step (default 8)")
    d.add_argument(
        "--seq-len", type=int, default=512, help="longest pair (both sequences); herd's row length"
    )
    d.add_argument("--threads", type=int, default=None, help="CPU threads (default: PyTorch's)")
    d.add_argument("--json", type=Path, help="also write the results to this JSON file")
    d.add_argument("--worker", choices=FRAMEWORKS, help=argparse.SUPPRESS)  # a child process: one framework
    d.add_argument("--workspace", type=Path, help=argparse.SUPPRESS)
    return p.parse_args()


def machine() -> str:
    """The CPU's name from /proc/cpuinfo and its logical CPUs."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [
            line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if "model name" in line
        ]
        cpu = f"{names[0]} ({len(names)} logical CPUs)" if names else cpu
    return cpu


def prepare(args: argparse.Namespace, workspace: Path) -> dict[str, Any]:
    """Write the model (with SmolLM2's tokenizer) and the pairs both frameworks train on; their token counts."""
    from herd.checkpoint.load import model_tensors
    from herd.model.build import build_model
    from herd.model.presets import get_preset
    from herd.posttrain.config import Start
    from herd.posttrain.data import read_preferences, render_pair

    start = Start.resolve("smollm2-135m-instruct")
    config = get_preset("smollm2-135m").replace(**SHAPES[args.shape])
    shaped = dataclasses.replace(start, model_config=config)
    shaped.write_final(model_tensors(build_model(config, seed=0)), workspace / "model")
    rows, lengths = [], []
    for group in read_preferences(PAIRS):
        if len(group.responses) != 2:
            continue
        (pair,) = group.preferences()
        rendered = render_pair(start.chat, pair, args.seq_len)
        length = len(rendered.chosen_ids) + len(rendered.rejected_ids)
        if length <= args.seq_len:
            rows.append({"prompt": pair.prompt, "chosen": pair.chosen, "rejected": pair.rejected})
            lengths.append(length)
        if len(rows) == args.pairs:
            break
    with open(workspace / "pairs.jsonl", "w") as f:
        for row in rows:
            f.write(
                json.dumps(
                    {"messages": list(row["prompt"]), "chosen": row["chosen"], "rejected": row["rejected"]}
                )
            )
            f.write("\n")
    return {"tokens": sum(lengths), "lengths": lengths}


def run_herd(args: argparse.Namespace, workspace: Path, lengths: list[int]) -> dict[str, Any]:
    """One epoch of herd's DPO over the pairs: step times from metrics.jsonl, the reference pass timed apart."""
    from herd.posttrain.dpo import DPOConfig, DPOObjective, dpo
    from herd.train.config import run_config_from_dict
    from herd.train.metrics import METRICS_FILE, read_metrics

    mean = sum(lengths) / len(lengths)
    rows = max(1, round(args.batch * mean / (0.9 * args.seq_len)))  # greedy rows are about 90% full
    out = workspace / "herd-run"
    config = run_config_from_dict(
        DPOConfig,
        {
            "out_dir": str(out),
            "init": str(workspace / "model"),
            "variant": "standard",
            "data": {"train": str(workspace / "pairs.jsonl"), "seq_len": args.seq_len, "epochs": 1},
            "train": {"steps": 0, "batch_tokens": rows * args.seq_len, "micro_batch_size": rows},
            "checkpoint": {"every": 10**6, "export_hf": False},
            "log": {"progress": False, "tensorboard": False},
        },
    )
    reference_s: list[float] = []
    original = DPOObjective.prepare_run

    def timed(self: DPOObjective, model: Any, out_dir: Path) -> None:
        started = time.perf_counter()
        original(self, model, out_dir)
        reference_s.append(time.perf_counter() - started)

    DPOObjective.prepare_run = timed  # type: ignore[method-assign]
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    dpo(config)
    steps = [r for r in read_metrics(out / METRICS_FILE) if "step_s" in r]
    return {
        "steps": len(steps),
        "step_seconds": sum(r["step_s"] for r in steps),
        "reference_seconds": sum(reference_s),
        "first_loss": steps[0]["loss"],
        "pairs_per_step": len(lengths) / len(steps),
        "rss_after_imports_mib": rss_before,
    }


def run_trl(args: argparse.Namespace, workspace: Path, lengths: list[int]) -> dict[str, Any]:
    """One epoch of TRL's DPOTrainer over the pairs, each step timed by a callback."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows = [json.loads(line) for line in (workspace / "pairs.jsonl").read_text().splitlines()]
    dataset = Dataset.from_list(
        [
            {
                "prompt": row["messages"],
                "chosen": [{"role": "assistant", "content": row["chosen"]}],
                "rejected": [{"role": "assistant", "content": row["rejected"]}],
            }
            for row in rows
        ]
    )
    model = AutoModelForCausalLM.from_pretrained(workspace / "model", dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(workspace / "model")

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.seconds: list[float] = []
            self.losses: list[float] = []

        def on_step_begin(self, *_: Any, **__: Any) -> None:
            self.started = time.perf_counter()

        def on_step_end(self, *_: Any, **__: Any) -> None:
            self.seconds.append(time.perf_counter() - self.started)

        def on_log(self, _args: Any, _state: Any, _control: Any, logs: dict | None = None, **__: Any) -> None:
            if logs and "loss" in logs:
                self.losses.append(logs["loss"])

    timer = StepTimer()
    config = DPOConfig(
        output_dir=str(workspace / "trl-run"),
        per_device_train_batch_size=args.batch,
        num_train_epochs=1,
        learning_rate=1e-5,
        beta=0.1,
        loss_type=["sigmoid"],
        weight_decay=0.1,
        adam_beta2=0.95,
        adam_epsilon=1e-5,
        max_grad_norm=1.0,
        lr_scheduler_type="cosine",
        max_length=args.seq_len,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        dataloader_num_workers=0,
        seed=0,
        disable_tqdm=True,
    )
    trainer = DPOTrainer(
        model=model, args=config, train_dataset=dataset, processing_class=tokenizer, callbacks=[timer]
    )
    tokenized = trainer.train_dataset
    trl_tokens = sum(
        2 * len(r["prompt_ids"]) + len(r["chosen_ids"]) + len(r["rejected_ids"]) for r in tokenized
    )
    trainer.train()
    return {
        "steps": len(timer.seconds),
        "step_seconds": sum(timer.seconds),
        "reference_seconds": 0.0,
        "first_loss": timer.losses[0] if timer.losses else math.nan,
        "pairs_per_step": len(lengths) / len(timer.seconds),
        "tokens_seen_by_trl": trl_tokens,
        "rss_after_imports_mib": rss_before,
    }


def worker(args: argparse.Namespace) -> None:
    """A child process: one framework's run, printed as one JSON line."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    prepared = json.loads((args.workspace / "prepared.json").read_text())
    run = run_herd if args.worker == "herd" else run_trl
    result = run(args, args.workspace, prepared["lengths"])
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["threads"] = torch.get_num_threads()
    print(json.dumps(result))


def main() -> None:
    args = parse_args()
    if args.worker:
        worker(args)
        return
    with tempfile.TemporaryDirectory(prefix="herd-bench-dpo-") as tmp:
        workspace = Path(tmp)
        prepared = prepare(args, workspace)
        (workspace / "prepared.json").write_text(json.dumps(prepared))
        results = {}
        for framework in FRAMEWORKS:
            command = [
                sys.executable,
                "-P",
                __file__,
                *sys.argv[1:],
                "--worker",
                framework,
                "--workspace",
                tmp,
            ]
            done = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
            results[framework] = json.loads(done.stdout.strip().splitlines()[-1])
    tokens = prepared["tokens"]
    for result in results.values():
        result["tokens_per_s"] = tokens / result["step_seconds"]
        result["end_to_end_tokens_per_s"] = tokens / (result["step_seconds"] + result["reference_seconds"])
    herd, trl = results["herd"], results["trl"]
    print(f"machine: {machine()}, {herd['threads']} threads")
    print(
        f"model: random Llama, SmolLM2-135M's vocabulary and tokenizer, shape {args.shape}, fp32; "
        f"{len(prepared['lengths'])} pairs ({tokens:,} tokens; TRL's tokenization: {trl['tokens_seen_by_trl']:,}), "
        f"one epoch, plain sigmoid DPO"
    )
    header = f"{'':<6}{'steps':>6}{'pairs/step':>11}{'step s':>9}{'ref pass s':>11}{'tokens/s':>10}"
    print(header + f"{'end-to-end':>12}{'peak RSS MiB':>14}{'first loss':>12}")
    for name, r in results.items():
        print(
            f"{name:<6}{r['steps']:>6}{r['pairs_per_step']:>11.1f}{r['step_seconds']:>9.1f}"
            f"{r['reference_seconds']:>11.1f}{r['tokens_per_s']:>10.1f}{r['end_to_end_tokens_per_s']:>12.1f}"
            f"{r['peak_rss_mib']:>14.0f}{r['first_loss']:>12.4f}"
        )
    speed = herd["tokens_per_s"] / trl["tokens_per_s"]
    end_to_end = herd["end_to_end_tokens_per_s"] / trl["end_to_end_tokens_per_s"]
    memory = herd["peak_rss_mib"] / trl["peak_rss_mib"]
    print(f"herd / TRL: {speed:.2f}x tokens/s in the steps (goal >= 1.3x), {end_to_end:.2f}x end to end")
    print(f"herd / TRL: {memory:.2f}x peak RSS (goal <= 0.7x)")
    if args.json:
        summary = {
            "machine": machine(),
            "args": {k: str(v) for k, v in vars(args).items()},
            "results": results,
        }
        args.json.write_text(
            json.dumps(summary | {"speed": speed, "end_to_end": end_to_end, "memory": memory}, indent=2)
            + "\n"
        )


if __name__ == "__main__":
    main()
