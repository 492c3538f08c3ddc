"""Post-training throughput and peak memory of herd against TRL 1.16 (docs/posttrain.md).

Both subcommands train the same model on the same data with each framework:

* the model is a random Llama of SmolLM2-135M's vocabulary (its tokenizer and
  ChatML template) and of the shape ``--shape`` (``small``: 6 layers of width 256;
  ``smollm2-135m``: the whole 135M shape), seeded, written once in Hugging Face
  layout with the tokenizer; herd's ``init`` and transformers'
  ``from_pretrained`` read that same directory, in fp32;
* both sides use AdamW (β 0.9/0.95, eps 1e-5, weight decay 0.1), clipping at
  1.0, the same number of CPU threads (``--threads``), no checkpoints during
  the steps, fp32 and no activation checkpointing: TRL's configs default to
  ``bf16=True`` (bf16 autocast, on a CPU too) and ``gradient_checkpointing=True``,
  so both are set off on TRL's side (as herd runs on a CPU).

``dpo``: herd's DPO (:mod:`herd.posttrain.dpo`, on herd's trainer) against
TRL's ``DPOTrainer``, plain sigmoid DPO (β 0.1, lr 1e-5):

* the data is the first ``--pairs`` pairs of data/samples/posttrain/preferences-train.jsonl
  whose two sequences fit in a row of ``--seq-len`` tokens, in the chat format,
  one epoch of them on each side: TRL takes ``--batch`` pairs per step; herd a
  step of rows of ``--seq-len`` tokens sized to hold about as many pairs;
* TRL keeps its reference model in memory and runs it on every step (its
  default, ``precompute_ref_log_probs=False``); herd computes the reference
  log-probabilities in one pass before the first step and holds no second model;
* tokens are the real tokens of the pairs (prompt + chosen and prompt +
  rejected, no padding), the same count on both sides; the end-to-end figure
  adds herd's reference pass (TRL's reference forward passes are inside its steps).

``sft``: herd's SFT (:mod:`herd.posttrain.sft`, on herd's trainer) against
TRL's ``SFTTrainer``, lr 2e-5 on a cosine to 10% of it, no warmup:

* the data is the first ``--conversations`` conversations of
  data/samples/posttrain/sft-train.jsonl that fit in a row of ``--seq-len``
  tokens, rendered by the tokenizer's ChatML template on both sides (TRL's
  tokenization is checked to give the same number of tokens);
* loss on the assistant's answer only. TRL's ``assistant_only_loss=True``
  cannot be used: SmolLM2's template has no ``{% generation %}`` markers and
  TRL 1.16 has no training template to swap in for it (it raises), so TRL gets
  prompt/completion rows, the last assistant turn as the completion
  (``completion_only_loss=True``). The conversations taken by the defaults have
  one user and one assistant turn, so that is the same loss as herd's, except
  that TRL also trains the newline after ``<|im_end|>`` (one target more per
  conversation);
* packing on both sides, each document attending only to itself: herd packs
  whole conversations greedily, in a seeded order, into rows of ``--seq-len``
  tokens with document ids; TRL packs them best-fit-decreasing
  (``packing=True``, ``packing_strategy="bfd"``, which turns on
  ``padding_free``: rows without padding, documents told apart by their
  position ids, from which transformers builds a block-diagonal mask for SDPA);
* each step is ``--batch`` packed rows, ``--micro-batch`` rows per forward pass
  on both sides (TRL: ``per_device_train_batch_size`` ``--micro-batch``,
  ``gradient_accumulation_steps`` ``--batch / --micro-batch``; padding-free,
  TRL concatenates a micro-batch's rows into one), for ``--steps`` steps on
  both sides, all inside the first epoch of either packing;
* tokens are the real (non-padding) tokens of the rows each side trained on,
  counted from its micro-batches: herd's rows less their padding, TRL's
  padding-free rows whole. The two packings differ (herd's rows are less full),
  so the counts differ a little; each side's tokens/s is its own count over its
  own step time.

Each framework runs in a child process of its own, so that its peak resident
memory (model, optimizer, activations and the libraries it imports) is its own:
the high-water mark ``VmHWM`` of /proc/self/status (``ru_maxrss`` where there is
no /proc). Not ``ru_maxrss`` on Linux: Linux carries it over fork and exec, so a
child's would start at the peak of the parent, which built and wrote the model.
herd's peak includes the checkpoint its trainer writes at the end of the run
(TRL saves nothing). tokens/s divides the tokens by the time of the training
steps (herd: ``step_s`` of metrics.jsonl; TRL: a callback from
``on_step_begin`` to ``on_step_end``, which leaves out the fetching of the
step's micro-batches, done before ``on_step_begin``). The printed ratios are
herd / TRL against the goals of tokens/s >= 1.3x and peak RSS <= 0.7x.

    python -P bench/posttrain.py dpo                       # small shape, 48 pairs, 8 per step
    python -P bench/posttrain.py dpo --shape smollm2-135m --pairs 32 --threads 2
    python -P bench/posttrain.py sft                       # small shape, 8 steps of 4 rows of 512 tokens
    python -P bench/posttrain.py sft --shape smollm2-135m --steps 4 --threads 2

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
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PAIRS = ROOT / "data/samples/posttrain/preferences-train.jsonl"
CONVERSATIONS = ROOT / "data/samples/posttrain/sft-train.jsonl"
SHAPES = {
    "small": dict(dim=256, n_layers=6, n_heads=4, n_kv_heads=2, hidden_dim=768),
    "smollm2-135m": {},
}
FRAMEWORKS = ("herd", "trl")
#: AdamW and clipping as herd's OptimConfig has them, in transformers' TrainingArguments' names.
TRL_OPTIM = dict(weight_decay=0.1, adam_beta2=0.95, adam_epsilon=1e-5, max_grad_norm=1.0)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="stage", required=True)
    d = sub.add_parser("dpo", help="herd's DPO against TRL's DPOTrainer")
    d.add_argument("--pairs", type=int, default=48, help="preference pairs, one epoch (default 48)")
    d.add_argument("--batch", type=int, default=8, help="pairs per step (default 8)")
    d.add_argument(
        "--seq-len", type=int, default=512, help="longest pair (both sequences); herd's row length"
    )
    add_common_args(d)
    s = sub.add_parser("sft", help="herd's SFT against TRL's SFTTrainer")
    s.add_argument(
        "--conversations", type=int, default=256, help="conversations packed on both sides (default 256)"
    )
    s.add_argument("--steps", type=int, default=8, help="training steps (default 8)")
    s.add_argument("--batch", type=int, default=4, help="packed rows per step (default 4)")
    s.add_argument("--micro-batch", type=int, default=1, help="packed rows per forward pass (default 1)")
    s.add_argument("--seq-len", type=int, default=512, help="packed row length in tokens (default 512)")
    add_common_args(s)
    args = p.parse_args()
    if args.stage == "sft" and (args.micro_batch < 1 or args.batch % args.micro_batch):
        p.error("--batch must be a multiple of --micro-batch")
    return args


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """The model, the threads and the output, and the flags of a child process, which every subcommand takes."""
    parser.add_argument("--shape", choices=SHAPES, default="small", help="model shape (default small)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: PyTorch's)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    # a child process: one framework's run
    parser.add_argument("--worker", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    parser.add_argument("--workspace", type=Path, help=argparse.SUPPRESS)


def peak_rss_mib() -> float:
    """This process's peak resident memory in MiB: ``VmHWM`` (``ru_maxrss`` without /proc; see the module docstring)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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


# ---- the model and the data both frameworks train on -------------------------------------------


def write_model(shape: str, workspace: Path) -> Any:
    """The random model of ``shape`` with SmolLM2's tokenizer at ``workspace/model``; the Start whose chat format renders the data."""
    from herd.checkpoint.load import model_tensors
    from herd.model.build import build_model
    from herd.model.presets import get_preset
    from herd.posttrain.config import Start

    start = Start.resolve("smollm2-135m-instruct")
    config = get_preset("smollm2-135m").replace(**SHAPES[shape])
    shaped = dataclasses.replace(start, model_config=config)
    shaped.write_final(model_tensors(build_model(config, seed=0)), workspace / "model")
    return start


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row))
            f.write("\n")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def prepare_dpo(args: argparse.Namespace, workspace: Path) -> dict[str, Any]:
    """Write the model and the pairs both frameworks train on; their token counts."""
    from herd.posttrain.data import read_preferences, render_pair

    start = write_model(args.shape, workspace)
    rows, lengths = [], []
    for group in read_preferences(PAIRS):
        if len(group.responses) != 2:
            continue
        (pair,) = group.preferences()
        rendered = render_pair(start.chat, pair, args.seq_len)
        length = len(rendered.chosen_ids) + len(rendered.rejected_ids)
        if length <= args.seq_len:
            rows.append({"messages": list(pair.prompt), "chosen": pair.chosen, "rejected": pair.rejected})
            lengths.append(length)
        if len(rows) == args.pairs:
            break
    write_jsonl(workspace / "pairs.jsonl", rows)
    return {"tokens": sum(lengths), "lengths": lengths}


def prepare_sft(args: argparse.Namespace, workspace: Path) -> dict[str, Any]:
    """Write the model and the conversations both frameworks train on; their token counts in the chat format."""
    from herd.posttrain.data import SkippedRow, read_conversations, render_conversation

    start = write_model(args.shape, workspace)
    rows, lengths = [], []
    for conversation in read_conversations(CONVERSATIONS):
        try:
            example = render_conversation(start.chat, conversation, args.seq_len)
        except SkippedRow:  # longer than a row
            continue
        rows.append({"messages": list(conversation.messages)})
        lengths.append(len(example.ids))
        if len(rows) == args.conversations:
            break
    write_jsonl(workspace / "conversations.jsonl", rows)
    turns = sum(len(row["messages"]) > 2 for row in rows)
    return {"tokens": sum(lengths), "lengths": lengths, "multi_turn": turns}


# ---- herd ---------------------------------------------------------------------------------------


def herd_run(
    config_class: type, train: Callable[[Any], Any], workspace: Path, sections: dict[str, Any]
) -> tuple[list[dict[str, Any]], float]:
    """Run herd's ``train(config)`` from the model in ``workspace``, no checkpoint before the end, no progress or TensorBoard.

    ``sections``: the run's own keys (``data``, ``train``, ...). Returns the
    step records of metrics.jsonl and the peak RSS (MiB) after the imports.
    """
    from herd.train.config import run_config_from_dict
    from herd.train.metrics import METRICS_FILE, read_metrics

    out = workspace / "herd-run"
    config = run_config_from_dict(
        config_class,
        {
            "out_dir": str(out),
            "init": str(workspace / "model"),
            "checkpoint": {"every": 10**6, "export_hf": False},
            "log": {"progress": False, "tensorboard": False},
            **sections,
        },
    )
    rss_before = peak_rss_mib()
    train(config)
    return [r for r in read_metrics(out / METRICS_FILE) if "step_s" in r], rss_before


def run_herd_dpo(args: argparse.Namespace, workspace: Path, prepared: dict[str, Any]) -> dict[str, Any]:
    """One epoch of herd's DPO over the pairs: step times from metrics.jsonl, the reference pass timed apart."""
    from herd.posttrain.dpo import DPOConfig, DPOObjective, dpo

    lengths = prepared["lengths"]
    mean = sum(lengths) / len(lengths)
    rows = max(1, round(args.batch * mean / (0.9 * args.seq_len)))  # greedy rows are about 90% full
    reference_s: list[float] = []
    original = DPOObjective.prepare_run

    def timed(self: DPOObjective, model: Any, out_dir: Path) -> None:
        started = time.perf_counter()
        original(self, model, out_dir)
        reference_s.append(time.perf_counter() - started)

    DPOObjective.prepare_run = timed  # type: ignore[method-assign]
    steps, rss_before = herd_run(
        DPOConfig,
        dpo,
        workspace,
        {
            "variant": "standard",
            "data": {"train": str(workspace / "pairs.jsonl"), "seq_len": args.seq_len, "epochs": 1},
            "train": {"steps": 0, "batch_tokens": rows * args.seq_len, "micro_batch_size": rows},
        },
    )
    return {
        "steps": len(steps),
        "step_seconds": sum(r["step_s"] for r in steps),
        "reference_seconds": sum(reference_s),
        "first_loss": steps[0]["loss"],
        "pairs_per_step": len(lengths) / len(steps),
        "rss_after_imports_mib": rss_before,
    }


def real_tokens(batch: Any, pad_id: int) -> tuple[int, int]:
    """The real tokens and conversations of a herd micro-batch of packed rows: each row less its padding.

    A row's padding is its last document when that one is all ``pad_id``
    (herd's packing gives the padding a document id of its own; a rendered
    conversation always holds other tokens, the template's ``<|im_start|>`` first).
    """
    tokens = conversations = 0
    for inputs, documents in zip(batch.inputs, batch.document_ids, strict=True):
        last = documents == documents.max()
        padded = bool((inputs[last] == pad_id).all())
        tokens += len(inputs) - (int(last.sum()) if padded else 0)
        conversations += int(documents.max()) + (0 if padded else 1)
    return tokens, conversations


def run_herd_sft(args: argparse.Namespace, workspace: Path, prepared: dict[str, Any]) -> dict[str, Any]:
    """``--steps`` steps of herd's SFT on the packed conversations, the real tokens counted from each micro-batch."""
    from herd.posttrain.sft import SFTConfig, SFTObjective, sft

    counted = {"tokens": 0, "conversations": 0, "packed_rows": 0}
    original = SFTObjective.micro_batches

    def counting(self: SFTObjective) -> list[Any]:
        batches = original(self)
        counted["packed_rows"] = len(self.train_split.sequences)
        for batch in batches:
            tokens, conversations = real_tokens(batch, self.start.tokenizer.eos_id or 0)
            counted["tokens"] += tokens
            counted["conversations"] += conversations
        return batches

    SFTObjective.micro_batches = counting  # type: ignore[method-assign]
    steps, rss_before = herd_run(
        SFTConfig,
        sft,
        workspace,
        {
            "data": {"train": str(workspace / "conversations.jsonl"), "seq_len": args.seq_len, "epochs": 1},
            "train": {
                "steps": args.steps,
                "batch_tokens": args.batch * args.seq_len,
                "micro_batch_size": args.micro_batch,
            },
        },
    )
    check_one_epoch("herd", counted["packed_rows"], args)
    return {
        "steps": len(steps),
        "step_seconds": sum(r["step_s"] for r in steps),
        "first_loss": steps[0]["loss"],
        "rows_per_step": args.batch,
        "packed_rows": counted["packed_rows"],
        "tokens": counted["tokens"],
        "conversations": counted["conversations"],
        "rss_after_imports_mib": rss_before,
    }


def check_one_epoch(framework: str, packed_rows: int, args: argparse.Namespace) -> None:
    """Exit when ``--steps`` × ``--batch`` rows would go past the first epoch of ``framework``'s packing.

    (TRL's last step of an epoch takes only the rows left, so the steps would differ.)
    """
    if packed_rows < args.steps * args.batch:
        sys.exit(
            f"{framework} packs the {args.conversations} conversations into {packed_rows} rows, "
            f"fewer than --steps {args.steps} x --batch {args.batch}: give more --conversations"
        )


# ---- TRL ----------------------------------------------------------------------------------------


def trl_model(workspace: Path) -> tuple[Any, Any]:
    """The model of ``workspace/model`` in fp32 and its tokenizer, as transformers loads them."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(workspace / "model", dtype=torch.float32)
    return model, AutoTokenizer.from_pretrained(workspace / "model")


def step_timer() -> Any:
    """A TrainerCallback that times each optimizer step (``on_step_begin`` to ``on_step_end``) and keeps the losses."""
    from transformers import TrainerCallback

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

    return StepTimer()


def trl_args(workspace: Path) -> dict[str, Any]:
    """The TrainingArguments both TRL runs share: herd's AdamW and clipping, CPU, no saving, a log line per step.

    fp32 and no activation checkpointing, as herd on a CPU: TRL's own defaults
    are bf16 autocast and gradient checkpointing.
    """
    return dict(
        output_dir=str(workspace / "trl-run"),
        **TRL_OPTIM,
        bf16=False,
        activation_checkpointing=False,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        dataloader_num_workers=0,
        seed=0,
        disable_tqdm=True,
    )


def run_trl_dpo(args: argparse.Namespace, workspace: Path, prepared: dict[str, Any]) -> dict[str, Any]:
    """One epoch of TRL's DPOTrainer over the pairs, each step timed by a callback."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    rss_before = peak_rss_mib()
    rows = read_jsonl(workspace / "pairs.jsonl")
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
    model, tokenizer = trl_model(workspace)
    timer = step_timer()
    config = DPOConfig(
        **trl_args(workspace),
        per_device_train_batch_size=args.batch,
        num_train_epochs=1,
        learning_rate=1e-5,
        beta=0.1,
        loss_type=["sigmoid"],
        lr_scheduler_type="cosine",
        max_length=args.seq_len,
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
        "pairs_per_step": len(prepared["lengths"]) / len(timer.seconds),
        "tokens_seen_by_trl": trl_tokens,
        "rss_after_imports_mib": rss_before,
    }


def run_trl_sft(args: argparse.Namespace, workspace: Path, prepared: dict[str, Any]) -> dict[str, Any]:
    """``--steps`` steps of TRL's SFTTrainer, packed and padding-free, the real tokens counted from each micro-batch."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    rss_before = peak_rss_mib()
    rows = read_jsonl(workspace / "conversations.jsonl")
    # prompt/completion rows (see the module docstring: SmolLM2's template has no generation markers)
    dataset = Dataset.from_list(
        [{"prompt": row["messages"][:-1], "completion": row["messages"][-1:]} for row in rows]
    )
    model, tokenizer = trl_model(workspace)
    timer = step_timer()
    counted = {"tokens": 0, "conversations": 0}

    class CountingSFTTrainer(SFTTrainer):
        def training_step(self, *pos: Any, **kw: Any) -> Any:
            inputs = pos[1] if len(pos) > 1 else kw["inputs"]
            mask = inputs.get("attention_mask")  # none when padding-free: no padding
            counted["tokens"] += int(mask.sum()) if mask is not None else inputs["input_ids"].numel()
            counted["conversations"] += int((inputs["position_ids"] == 0).sum())
            return super().training_step(*pos, **kw)

    config = SFTConfig(
        **trl_args(workspace),
        per_device_train_batch_size=args.micro_batch,
        gradient_accumulation_steps=args.batch // args.micro_batch,
        max_steps=args.steps,
        learning_rate=2e-5,
        lr_scheduler_type="cosine_with_min_lr",
        lr_scheduler_kwargs={"min_lr_rate": 0.1},
        warmup_steps=0,
        max_length=args.seq_len,
        packing=True,
        packing_strategy="bfd",
        padding_free=True,
        completion_only_loss=True,
    )
    trainer = CountingSFTTrainer(
        model=model, args=config, train_dataset=dataset, processing_class=tokenizer, callbacks=[timer]
    )
    packed = trainer.train_dataset
    check_one_epoch("TRL", len(packed), args)
    trl_tokens = sum(sum(r["seq_lengths"]) for r in packed)
    trainer.train()
    return {
        "steps": len(timer.seconds),
        "step_seconds": sum(timer.seconds),
        "first_loss": timer.losses[0] if timer.losses else math.nan,
        "rows_per_step": args.batch,
        "packed_rows": len(packed),
        "tokens": counted["tokens"],
        "conversations": counted["conversations"],
        "tokens_seen_by_trl": trl_tokens,
        "optimizer": getattr(config.optim, "value", str(config.optim)),
        "rss_after_imports_mib": rss_before,
    }


# ---- the parent: prepare, run each framework in a child process, report -------------------------

PREPARE = {"dpo": prepare_dpo, "sft": prepare_sft}
RUNS = {
    ("dpo", "herd"): run_herd_dpo,
    ("dpo", "trl"): run_trl_dpo,
    ("sft", "herd"): run_herd_sft,
    ("sft", "trl"): run_trl_sft,
}


def worker(args: argparse.Namespace) -> None:
    """A child process: one framework's run, printed as one JSON line."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    prepared = json.loads((args.workspace / "prepared.json").read_text())
    result = RUNS[args.stage, args.worker](args, args.workspace, prepared)
    result["peak_rss_mib"] = peak_rss_mib()
    result["threads"] = torch.get_num_threads()
    print(json.dumps(result))


def run_frameworks(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Prepare the model and data in a scratch workspace, then run each framework there in a child process of its own."""
    with tempfile.TemporaryDirectory(prefix=f"herd-bench-{args.stage}-") as tmp:
        workspace = Path(tmp)
        prepared = PREPARE[args.stage](args, workspace)
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
    return prepared, results


def print_table(columns: list[tuple[str, int, str, str]], results: dict[str, dict[str, Any]]) -> None:
    """A row per framework; each column is (title, width, key of the result, format spec)."""
    print(f"{'':<6}" + "".join(f"{title:>{width}}" for title, width, _, _ in columns))
    for name, r in results.items():
        print(f"{name:<6}" + "".join(f"{r[key]:>{width}{spec}}" for _, width, key, spec in columns))


def report_dpo(
    args: argparse.Namespace, prepared: dict[str, Any], results: dict[str, Any]
) -> dict[str, float]:
    tokens = prepared["tokens"]
    for result in results.values():
        result["tokens_per_s"] = tokens / result["step_seconds"]
        result["end_to_end_tokens_per_s"] = tokens / (result["step_seconds"] + result["reference_seconds"])
    herd, trl = results["herd"], results["trl"]
    print(
        f"model: random Llama, SmolLM2-135M's vocabulary and tokenizer, shape {args.shape}, fp32; "
        f"{len(prepared['lengths'])} pairs ({tokens:,} tokens; TRL's tokenization: {trl['tokens_seen_by_trl']:,}), "
        f"one epoch, plain sigmoid DPO"
    )
    print_table(
        [
            ("steps", 6, "steps", ""),
            ("pairs/step", 11, "pairs_per_step", ".1f"),
            ("step s", 9, "step_seconds", ".1f"),
            ("ref pass s", 11, "reference_seconds", ".1f"),
            ("tokens/s", 10, "tokens_per_s", ".1f"),
            ("end-to-end", 12, "end_to_end_tokens_per_s", ".1f"),
            ("peak RSS MiB", 14, "peak_rss_mib", ".0f"),
            ("first loss", 12, "first_loss", ".4f"),
        ],
        results,
    )
    speed = herd["tokens_per_s"] / trl["tokens_per_s"]
    end_to_end = herd["end_to_end_tokens_per_s"] / trl["end_to_end_tokens_per_s"]
    print(f"herd / TRL: {speed:.2f}x tokens/s in the steps (goal >= 1.3x), {end_to_end:.2f}x end to end")
    return {"speed": speed, "end_to_end": end_to_end}


def report_sft(
    args: argparse.Namespace, prepared: dict[str, Any], results: dict[str, Any]
) -> dict[str, float]:
    for result in results.values():
        result["tokens_per_s"] = result["tokens"] / result["step_seconds"]
        result["row_fill"] = result["tokens"] / (result["steps"] * result["rows_per_step"] * args.seq_len)
    herd, trl = results["herd"], results["trl"]
    tokens = prepared["tokens"]
    print(
        f"model: random Llama, SmolLM2-135M's vocabulary and tokenizer, shape {args.shape}, fp32; "
        f"{len(prepared['lengths'])} conversations ({tokens:,} tokens; TRL's tokenization: "
        f"{trl['tokens_seen_by_trl']:,}; {prepared['multi_turn']} multi-turn), packed in rows of "
        f"{args.seq_len} tokens, {args.batch} rows per step ({args.micro_batch} per forward pass), "
        f"loss on the answers; TRL: packing bfd, padding-free, completion-only loss, {trl['optimizer']}"
    )
    print_table(
        [
            ("steps", 6, "steps", ""),
            ("rows/step", 10, "rows_per_step", ""),
            ("packed rows", 12, "packed_rows", ""),
            ("convs", 7, "conversations", ""),
            ("tokens", 8, "tokens", ""),
            ("row fill", 9, "row_fill", ".0%"),
            ("step s", 9, "step_seconds", ".1f"),
            ("tokens/s", 10, "tokens_per_s", ".1f"),
            ("peak RSS MiB", 14, "peak_rss_mib", ".0f"),
            ("first loss", 12, "first_loss", ".4f"),
        ],
        results,
    )
    speed = herd["tokens_per_s"] / trl["tokens_per_s"]
    print(f"herd / TRL: {speed:.2f}x tokens/s in the steps (goal >= 1.3x)")
    return {"speed": speed}


REPORTS = {"dpo": report_dpo, "sft": report_sft}


def main() -> None:
    args = parse_args()
    if args.worker:
        worker(args)
        return
    prepared, results = run_frameworks(args)
    print(f"machine: {machine()}, {results['herd']['threads']} threads")
    ratios = REPORTS[args.stage](args, prepared, results)
    ratios["memory"] = results["herd"]["peak_rss_mib"] / results["trl"]["peak_rss_mib"]
    print(f"herd / TRL: {ratios['memory']:.2f}x peak RSS (goal <= 0.7x)")
    if args.json:
        write_summary(args.json, args, results, ratios)


def write_summary(
    path: Path, args: argparse.Namespace, results: dict[str, Any], ratios: dict[str, Any]
) -> None:
    """The run as one JSON file: the machine, the arguments, each side's results and the ratios."""
    summary = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}, "results": results}
    path.write_text(json.dumps(summary | ratios, indent=2) + "\n")


if __name__ == "__main__":
    main()
