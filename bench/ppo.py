"""PPO iterations of herd against TRL's experimental PPOTrainer, with herd's time split (docs/posttrain.md, PPO).

Two questions (issue 16):

* **Where does one herd PPO iteration go?** Its time split into the
  rollout's phases (:mod:`herd.posttrain.ppo`, steps 1–5): sampling
  (:func:`herd.posttrain.rollout.rollout`, herd's KV-cache engine), scoring by
  the reward model, the policy's log-probabilities recomputed by the training
  forward, the frozen reference's log-probabilities, the value model's values,
  writing the rollout buffer; the rest of the iteration is the training
  (forward, backward and optimizer steps over the mini-batches). The sampling's
  response tokens/s are set against herd's plain generation, goal >= 0.8x (a
  rollout costs no more than generating): beside each rollout of the run (just
  before it or just after it, in turn), :func:`herd.infer.generate_ids` runs
  on the same policy, prompts, ``max_new_tokens``, temperature and seeds (so
  the same tokens), timed apart and taken out of the iteration's time. After
  the run, a standalone ``rollout()`` and ``generate_ids`` are also timed
  side by side, ``--repeats`` times each.
* **How does a PPO iteration compare with TRL's?** The same iterations with
  ``trl.experimental.ppo.PPOTrainer``: seconds per iteration (goal herd / TRL
  >= 2x faster) and peak resident memory.

The setup both sides share:

* the policy is a random Llama of SmolLM2-135M's vocabulary, tokenizer and
  ChatML template, of the shape ``--shape`` (``small``: 6 layers of width 256;
  ``smollm2-135m``; ``1b``: Llama 3.2 1B's shape), written once in Hugging Face
  layout; the reward model (which also starts the value model) is a random
  ``LlamaForSequenceClassification`` of the same shape; the frozen reference
  is the policy read again; all fp32 on a CPU (``--device cuda``: herd's bf16
  autocast, TRL's ``bf16=True``);
* the prompts are the first ``--batch`` prompts of
  data/samples/posttrain/rs-prompts.jsonl, rendered by herd's chat format;
  TRL gets those very token ids (left-padded by its collator, pad
  ``<|endoftext|>``);
* an iteration is a rollout of one response per prompt (``--batch``
  responses, at most ``--new-tokens`` tokens, temperature 1, no top-k/top-p)
  then ``--ppo-epochs`` passes over it in ``--mini-batches`` mini-batches,
  ``--micro-batch`` rows per forward pass; AdamW β 0.9/0.95, eps 1e-5, weight
  decay 0.1, clipping 1.0, a constant learning rate of 1e-6, β (KL) 0.01, clip
  0.2, value-loss weight 0.1, GAE γ 1 λ 0.95; no checkpoints, no activation
  checkpointing. herd takes one optimizer step per mini-batch. TRL's
  PPOTrainer accumulates gradients over ``gradient_accumulation_steps =
  --batch / --micro-batch`` micro-batches, so with ``--mini-batches`` > 1 it
  still steps once per pass over the rollout (its own behaviour); the default
  of one mini-batch makes the two do the same updates;
* herd generates the rollout as one engine batch and runs the reference and
  value passes ``--micro-batch`` rows at a time; TRL generates and runs its
  passes ``local_rollout_forward_batch_size = --batch`` rows at a time and
  takes the rollout's log-probabilities from the generation's logits (herd
  recomputes them with the training forward, a phase TRL does not have);
* random weights rarely emit an end-of-turn token, so nearly every response
  runs ``--new-tokens`` tokens on both sides; the response tokens are counted
  on each side (up to the first stop token).

Each side runs in a child process of its own, so that its peak resident memory
is its own (``VmHWM`` of /proc/self/status, as bench/posttrain.py explains).
The first iteration is a warm-up: the figures are means over the others
(``--iterations`` at least 2). ``--rounds`` runs each side that many times,
herd and TRL in turn, and pools their warm iterations, so that a busy spell
of a shared machine falls on both. Each phase and iteration is timed in wall
seconds and in the process's CPU seconds (``time.process_time``, all its
threads), which move less than wall time when other processes share the
cores. The time split comes from timers this script wraps around herd's
functions (no profiler, no change to the library): ``PPOObjective``'s
``_rollout``, ``_sample``, ``_scores`` and ``_logprobs``, ``response_values``
and ``_write_rollout``; an iteration is its steps' ``step_s`` (metrics.jsonl),
which include the rollout. TRL's come from timers around ``batch_generation``,
``forward`` (the reference's) and ``get_reward`` (the reward and value
models) of its ppo_trainer module, its iterations from a callback; its
"training" is the rest of the iteration, which also holds the log-softmax of
the generation's logits, GAE and its metrics.

TRL dropped PPO after 1.12.0 (1.13.0 has no ``trl.experimental.ppo``), and
the project's own TRL (1.16) is newer, so TRL's side runs in a throwaway
virtual environment holding TRL 1.12.0 as a test-only peer. Once:

    python3.11 -m venv /tmp/trl-ppo-venv
    /tmp/trl-ppo-venv/bin/pip install torch==2.13.0 trl==1.12.0 transformers==5.24.0 \\
        accelerate==1.16.0 datasets==5.2.0

(the versions of the project's venv besides TRL; ``--trl-python`` names
another interpreter, ``--herd-only`` leaves TRL out). Then:

    python -P bench/ppo.py                                   # small shape, 3 iterations of 8 x 32 tokens
    python -P bench/ppo.py --shape smollm2-135m --threads 2 --iterations 2
    python -P bench/ppo.py --device cuda --shape 1b --batch 64 --new-tokens 256 --micro-batch 16 --herd-only

(``-P``: do not put bench/ first on sys.path, where other benchmarks' file names may
shadow standard modules.)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ROOT / "data/samples/posttrain/rs-prompts.jsonl"
SHAPES: dict[str, dict[str, int]] = {
    "small": dict(dim=256, n_layers=6, n_heads=4, n_kv_heads=2, hidden_dim=768),
    "smollm2-135m": {},
    "1b": dict(dim=2048, n_layers=16, n_heads=32, n_kv_heads=8, hidden_dim=8192),
}
TRL_PYTHON = Path("/tmp/trl-ppo-venv/bin/python")
#: PPO's settings on both sides (herd's PPOConfig defaults, Llama 2 §3.2.3).
LR, KL_BETA, CLIP, VALUE_WEIGHT, GAMMA, LAM, UNFINISHED_PENALTY = 1e-6, 0.01, 0.2, 0.1, 1.0, 0.95, 3.0
#: herd's rollout phases (steps 1–5) as this script times them, in the order of the table.
HERD_PHASES = ("generation", "scoring", "policy_logprobs", "reference", "values", "write")
TRL_PHASES = ("generation", "scoring", "reference", "values")


sys.path.append(str(Path(__file__).resolve().parent))  # bench/, after every installed package
import posttrain  # noqa: E402  bench/posttrain.py: its memory probe and machine name

peak_rss_mib: Callable[[], float] = posttrain.peak_rss_mib
machine: Callable[[], str] = posttrain.machine


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", choices=SHAPES, default="small", help="model shape (default small)")
    p.add_argument("--batch", type=int, default=8, help="prompts (responses) per rollout (default 8)")
    p.add_argument("--new-tokens", type=int, default=32, help="longest response (default 32)")
    p.add_argument("--mini-batches", type=int, default=1, help="mini-batches per pass (default 1)")
    p.add_argument("--micro-batch", type=int, default=4, help="rows per forward pass (default 4)")
    p.add_argument("--ppo-epochs", type=int, default=1, help="passes over each rollout (default 1)")
    p.add_argument(
        "--iterations", type=int, default=3, help="PPO iterations, the first a warm-up (default 3)"
    )
    p.add_argument("--repeats", type=int, default=2, help="plain generation / rollout() pairs (default 2)")
    p.add_argument(
        "--rounds", type=int, default=1, help="child processes per side, run alternately (default 1)"
    )
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="(default cpu)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: PyTorch's)")
    p.add_argument(
        "--trl-python", type=Path, default=TRL_PYTHON, help=f"TRL 1.12's python (default {TRL_PYTHON})"
    )
    p.add_argument("--herd-only", action="store_true", help="time herd alone (no TRL)")
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    p.add_argument("--worker", choices=("herd", "trl"), help=argparse.SUPPRESS)  # a child process
    p.add_argument("--workspace", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    if args.iterations < 2:
        p.error("--iterations must be at least 2 (the first is a warm-up)")
    per_mini = args.batch // args.mini_batches if args.mini_batches >= 1 else 0
    if args.mini_batches < 1 or args.batch % args.mini_batches:
        p.error("--mini-batches must divide --batch")
    if args.micro_batch < 1 or per_mini % args.micro_batch:
        p.error("--micro-batch must divide --batch / --mini-batches")
    return args


# ---- the models and prompts both sides use ------------------------------------------------------


def prepare(args: argparse.Namespace, workspace: Path) -> dict[str, Any]:
    """Write the policy, the reward model and the prompts to ``workspace``; the prompts' token ids."""
    from herd.model.presets import get_preset
    from herd.posttrain.data import read_prompts
    from herd.posttrain.reward_model import RewardModel

    posttrain.SHAPES.setdefault(args.shape, SHAPES[args.shape])
    start = posttrain.write_model(args.shape, workspace)
    config = get_preset("smollm2-135m").replace(**SHAPES[args.shape])
    rm = RewardModel.random(config, seed=1, pad_id=0)
    rm.save_pretrained(workspace / "rm", tokenizer=start.tokenizer)
    rows = [p for _, p in zip(range(args.batch), read_prompts(PROMPTS), strict=False)]
    if len(rows) < args.batch:
        sys.exit(f"{PROMPTS} has {len(rows)} prompts, fewer than --batch {args.batch}")
    posttrain.write_jsonl(workspace / "prompts.jsonl", [{"messages": list(p.messages)} for p in rows])
    ids = [start.chat.render_prompt(p.messages) for p in rows]
    return {"prompt_ids": ids, "stop_ids": sorted(start.tokenizer.stop_ids)}


def response_tokens(rows: list[list[int]], stop_ids: set[int]) -> int:
    """Tokens of the responses ``rows``, each up to and including its first stop id."""
    total = 0
    for row in rows:
        ends = [i for i, t in enumerate(row) if t in stop_ids]
        total += ends[0] + 1 if ends else len(row)
    return total


# ---- herd -------------------------------------------------------------------------------------


class PhaseTimer:
    """Wall and CPU seconds per named phase, kept per PPO iteration (a new iteration starts with each rollout).

    A phase's CPU seconds (this process's, all threads: ``time.process_time``)
    are kept under ``<phase>_cpu``: on a shared machine they move less than the
    wall time when other processes take the cores.
    """

    def __init__(self) -> None:
        self.iterations: list[dict[str, float]] = []

    def add(self, phase: str, seconds: float) -> None:
        current = self.iterations[-1]
        current[phase] = current.get(phase, 0.0) + seconds

    @contextlib.contextmanager
    def time(self, phase: str) -> Iterator[None]:
        """Add the wall and CPU seconds of the ``with`` block to ``phase``."""
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.add(phase, time.perf_counter() - wall)
            self.add(f"{phase}_cpu", time.process_time() - cpu)

    def wrap(self, owner: Any, name: str, phase: Callable[..., str | None]) -> None:
        """Replace ``owner.name`` by a timed call; ``phase(*args)`` names the phase (None: not timed)."""
        original = getattr(owner, name)

        def timed(*pos: Any, **kw: Any) -> Any:
            label = phase(*pos)
            if label is None:
                return original(*pos, **kw)
            with self.time(label):
                return original(*pos, **kw)

        setattr(owner, name, timed)


def run_herd(args: argparse.Namespace, workspace: Path, prepared: dict[str, Any]) -> dict[str, Any]:
    """``--iterations`` PPO iterations of herd, timed by phase; then plain generation against rollout()."""
    import torch

    import herd.posttrain.ppo as ppo_module
    from herd.infer import Engine, SamplingParams, generate_ids
    from herd.posttrain.ppo import PPOConfig, PPOObjective, ppo
    from herd.posttrain.rollout import rollout
    from herd.train.config import run_config_from_dict
    from herd.train.loop import Trainer
    from herd.train.metrics import METRICS_FILE, MetricsLogger, read_metrics

    rss_before = peak_rss_mib()
    timer = PhaseTimer()
    objectives: list[PPOObjective] = []
    in_rollout = [False]
    stop_ids = set(prepared["stop_ids"])

    original_rollout = PPOObjective._rollout

    def plain_generation(self: PPOObjective, indices: Any, seed: int) -> None:
        """generate_ids on the rollout's policy, prompts, max_new_tokens and seeds, timed apart."""
        assert self.model is not None
        with timer.time("plain_generation"), torch.no_grad():
            generated = generate_ids(
                Engine(self.model.transformer),
                [self.prompts[i].ids for i in indices],
                max_new_tokens=self.config.max_new_tokens,
                sampling=SamplingParams(temperature=1.0, seed=seed),
                stop_ids=self.start.tokenizer.stop_ids,
            )
        self.model.train()
        timer.add("plain_tokens", float(sum(len(g.token_ids) for g in generated)))

    def rollout_phase(self: PPOObjective, indices: Any, seed: int) -> Any:
        timer.iterations.append({})
        plain_first = len(timer.iterations) % 2 == 0  # alternate which of the two runs first
        if plain_first:
            plain_generation(self, indices, seed)
        in_rollout[0] = True
        try:
            with timer.time("rollout"):
                return original_rollout(self, indices, seed)
        finally:
            in_rollout[0] = False
            if not plain_first:
                plain_generation(self, indices, seed)

    original_sample = PPOObjective._sample

    def sample(self: PPOObjective, *pos: Any, **kw: Any) -> Any:
        drawn = original_sample(self, *pos, **kw)
        timer.add("response_tokens", float(drawn.response_mask.sum()))
        return drawn

    original_prepare = PPOObjective.prepare_run

    def prepare_run(self: PPOObjective, model: Any, out_dir: Path) -> None:
        objectives.append(self)
        original_prepare(self, model, out_dir)

    # each step's CPU seconds: from the trainer's train_step to the step's metrics record (log.every 1)
    step_cpu: list[float] = []
    step_started = [0.0]
    original_train_step = Trainer.train_step

    def train_step(self: Trainer) -> Any:
        step_started[0] = time.process_time()
        return original_train_step(self)

    original_log = MetricsLogger.log

    def log_record(self: MetricsLogger, record: dict[str, Any]) -> None:
        if "step_s" in record:
            step_cpu.append(time.process_time() - step_started[0])
        original_log(self, record)

    Trainer.train_step = train_step  # type: ignore[method-assign]
    MetricsLogger.log = log_record  # type: ignore[method-assign]
    PPOObjective._rollout = rollout_phase  # type: ignore[method-assign]
    PPOObjective._sample = sample  # type: ignore[method-assign]
    PPOObjective.prepare_run = prepare_run  # type: ignore[method-assign]
    timer.wrap(PPOObjective, "_sample", lambda *_: "generation")
    timer.wrap(PPOObjective, "_scores", lambda *_: "scoring")
    timer.wrap(
        PPOObjective,
        "_logprobs",
        lambda self, model, *_: "reference" if model is self.reference else "policy_logprobs",
    )
    timer.wrap(ppo_module, "response_values", lambda *_: "values" if in_rollout[0] else None)
    timer.wrap(ppo_module, "_write_rollout", lambda *_: "write")

    mini_batch = args.batch // args.mini_batches
    steps_per_iteration = args.ppo_epochs * args.mini_batches
    out = workspace / "herd-run"
    shutil.rmtree(out, ignore_errors=True)  # an earlier round's run
    config = run_config_from_dict(
        PPOConfig,
        {
            "out_dir": str(out),
            "init": str(workspace / "model"),
            "reward_model": str(workspace / "rm"),
            "samples": 1,
            "max_new_tokens": args.new_tokens,
            "rollout_prompts": args.batch,
            "mini_batch": mini_batch,
            "ppo_epochs": args.ppo_epochs,
            "beta": KL_BETA,
            "clip": CLIP,
            "value_weight": VALUE_WEIGHT,
            "gamma": GAMMA,
            "lam": LAM,
            "data": {"train": str(workspace / "prompts.jsonl"), "seq_len": 4096},
            "optim": {"lr": LR},
            "train": {
                "steps": args.iterations * steps_per_iteration,
                "micro_batch_size": args.micro_batch,
                "device": args.device,
                "dtype": "auto",
            },
            "checkpoint": {"every": 10**6, "export_hf": False},
            "log": {"every": 1, "progress": False, "tensorboard": False},
        },
    )
    ppo(config)
    steps = [r for r in read_metrics(out / METRICS_FILE) if "step_s" in r]
    for i, phases in enumerate(timer.iterations):
        chunk = steps[i * steps_per_iteration : (i + 1) * steps_per_iteration]
        # the step times include the plain generation run beside each rollout
        cpu = step_cpu[i * steps_per_iteration : (i + 1) * steps_per_iteration]
        phases["iteration"] = sum(r["step_s"] for r in chunk) - phases["plain_generation"]
        phases["iteration_cpu"] = sum(cpu) - phases["plain_generation_cpu"]
        for suffix in ("", "_cpu"):
            rest = phases[f"rollout{suffix}"] + phases.get(f"write{suffix}", 0.0)
            phases[f"training{suffix}"] = phases[f"iteration{suffix}"] - rest
    rss_run = peak_rss_mib()

    # plain generation against rollout() on the trained policy, same prompts, sampling and seeds
    objective = objectives[0]
    assert objective.model is not None
    policy = objective.model.transformer
    prompts = prepared["prompt_ids"]
    generation_s, rollout_s, generation_tokens, rollout_tokens = [], [], [], []
    for r in range(args.repeats):
        seed = 1000 * (r + 1)
        with torch.no_grad():
            started = time.perf_counter()
            generated = generate_ids(
                Engine(policy),
                prompts,
                max_new_tokens=args.new_tokens,
                sampling=SamplingParams(temperature=1.0, seed=seed),
                stop_ids=stop_ids,
            )
            generation_s.append(time.perf_counter() - started)
            generation_tokens.append(sum(len(g.token_ids) for g in generated))
            started = time.perf_counter()
            drawn = rollout(
                policy,
                prompts,
                samples=1,
                max_new_tokens=args.new_tokens,
                stop_ids=stop_ids,
                seed=seed,
                pad_id=objective.pad_id,
            )
            rollout_s.append(time.perf_counter() - started)
            rollout_tokens.append(int(drawn.response_mask.sum()))
    return {
        "iterations": timer.iterations,
        "generation_seconds": generation_s,
        "generation_tokens": generation_tokens,
        "rollout_seconds": rollout_s,
        "rollout_tokens": rollout_tokens,
        "rss_after_imports_mib": rss_before,
        "rss_after_run_mib": rss_run,
    }


# ---- TRL --------------------------------------------------------------------------------------


def run_trl(args: argparse.Namespace, workspace: Path, prepared: dict[str, Any]) -> dict[str, Any]:
    """``--iterations`` iterations of TRL 1.12's experimental PPOTrainer, timed by phase and by a callback."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    import torch
    import trl
    from datasets import Dataset
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
        TrainerCallback,
    )
    from trl.experimental.ppo import PPOConfig, PPOTrainer
    from trl.experimental.ppo import ppo_trainer as trainer_module

    rss_before = peak_rss_mib()
    timer = PhaseTimer()
    stop_ids = set(prepared["stop_ids"])
    tokenizer = AutoTokenizer.from_pretrained(workspace / "model", padding_side="left")
    # the pad must not occur in the prompts (TRL masks every pad id): <|endoftext|>, not <|im_end|>
    tokenizer.pad_token = "<|endoftext|>"
    dtype = torch.float32
    policy = AutoModelForCausalLM.from_pretrained(workspace / "model", dtype=dtype)
    reference = AutoModelForCausalLM.from_pretrained(workspace / "model", dtype=dtype)
    reward = AutoModelForSequenceClassification.from_pretrained(workspace / "rm", dtype=dtype, num_labels=1)
    value = AutoModelForSequenceClassification.from_pretrained(workspace / "rm", dtype=dtype, num_labels=1)
    for model in (policy, reference, reward, value):
        model.config.pad_token_id = tokenizer.pad_token_id
    dataset = Dataset.from_dict({"input_ids": prepared["prompt_ids"]})

    class IterationTimer(TrainerCallback):
        """Starts an iteration's record at the beginning of training and after each iteration's end."""

        def on_train_begin(self, *_: Any, **__: Any) -> None:
            timer.iterations.append({})
            self.started = time.perf_counter(), time.process_time()

        def on_step_end(self, *_: Any, **__: Any) -> None:
            now = time.perf_counter(), time.process_time()
            timer.add("iteration", now[0] - self.started[0])
            timer.add("iteration_cpu", now[1] - self.started[1])
            timer.iterations.append({})
            self.started = now

    trainer_holder: list[Any] = []

    def generation(*pos: Any, **_: Any) -> str:
        return "generation"

    original_generation = trainer_module.batch_generation

    def counted_generation(model: Any, queries: Any, *pos: Any, **kw: Any) -> Any:
        query_responses, logits = original_generation(model, queries, *pos, **kw)
        rows = query_responses[:, queries.shape[1] :].tolist()
        timer.add("response_tokens", float(response_tokens(rows, stop_ids)))
        return query_responses, logits

    trainer_module.batch_generation = counted_generation
    timer.wrap(trainer_module, "batch_generation", generation)
    timer.wrap(
        trainer_module,
        "forward",
        lambda model, *_: "reference" if model is trainer_holder[0].ref_model else None,
    )
    timer.wrap(
        trainer_module,
        "get_reward",
        lambda model, *_: "scoring" if model is trainer_holder[0].reward_model else "values",
    )
    on_cuda = args.device == "cuda"
    config = PPOConfig(
        output_dir=str(workspace / "trl-run"),
        learning_rate=LR,
        lr_scheduler_type="constant",
        **posttrain.TRL_OPTIM,
        bf16=on_cuda,
        gradient_checkpointing=False,
        per_device_train_batch_size=args.micro_batch,
        gradient_accumulation_steps=args.batch // args.micro_batch,
        num_mini_batches=args.mini_batches,
        num_ppo_epochs=args.ppo_epochs,
        total_episodes=args.iterations * args.batch,
        local_rollout_forward_batch_size=args.batch,
        response_length=args.new_tokens,
        stop_token="eos",
        temperature=1.0,
        missing_eos_penalty=UNFINISHED_PENALTY,
        kl_coef=KL_BETA,
        cliprange=CLIP,
        cliprange_value=CLIP,
        vf_coef=VALUE_WEIGHT,
        gamma=GAMMA,
        lam=LAM,
        num_sample_generations=0,
        save_strategy="no",
        report_to="none",
        use_cpu=not on_cuda,
        dataloader_num_workers=0,
        logging_steps=1,
        seed=0,
        disable_tqdm=True,
    )
    trainer = PPOTrainer(
        args=config,
        processing_class=tokenizer,
        model=policy,
        ref_model=reference,
        reward_model=reward,
        value_model=value,
        train_dataset=dataset,
        callbacks=[IterationTimer()],
    )
    trainer_holder.append(trainer)
    trainer.train()
    iterations = [it for it in timer.iterations if "iteration" in it]
    for phases in iterations:
        for suffix in ("", "_cpu"):
            rollout = sum(phases.get(f"{name}{suffix}", 0.0) for name in TRL_PHASES)
            phases[f"rollout{suffix}"] = rollout
            phases[f"training{suffix}"] = phases[f"iteration{suffix}"] - rollout
    return {
        "iterations": iterations,
        "trl_version": trl.__version__,
        "rss_after_imports_mib": rss_before,
    }


# ---- the parent: prepare, run each side in a child process, report ------------------------------


def worker(args: argparse.Namespace) -> None:
    """A child process: one side's run, printed as one JSON line."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    prepared = json.loads((args.workspace / "prepared.json").read_text())
    run = run_herd if args.worker == "herd" else run_trl
    result = run(args, args.workspace, prepared)
    result["peak_rss_mib"] = peak_rss_mib()
    result["threads"] = torch.get_num_threads()
    print(json.dumps(result))


def run_sides(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Prepare the models and prompts in a scratch workspace, then run each side there in a child process."""
    sides = {"herd": Path(sys.executable)}
    if not args.herd_only:
        if not args.trl_python.exists():
            sys.exit(
                f"{args.trl_python} does not exist: create TRL 1.12's throwaway venv (see --help: "
                "python3.11 -m venv /tmp/trl-ppo-venv && /tmp/trl-ppo-venv/bin/pip install torch==2.13.0 "
                "trl==1.12.0 transformers==5.24.0 accelerate==1.16.0 datasets==5.2.0) or pass --herd-only"
            )
        sides["trl"] = args.trl_python
    with tempfile.TemporaryDirectory(prefix="herd-bench-ppo-") as tmp:
        workspace = Path(tmp)
        prepared = prepare(args, workspace)
        (workspace / "prepared.json").write_text(json.dumps(prepared))
        rounds: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
        for _ in range(args.rounds):
            for side, python in sides.items():
                command = [str(python), "-P", __file__, *sys.argv[1:], "--worker", side, "--workspace", tmp]
                done = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
                rounds[side].append(json.loads(done.stdout.strip().splitlines()[-1]))
    return prepared, {side: merge_rounds(runs) for side, runs in rounds.items()}


def merge_rounds(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One side's child processes as one result: the warm iterations of all, the highest peak RSS, lists joined."""
    merged = dict(runs[0])
    merged["warm_iterations"] = [it for run in runs for it in run["iterations"][1:]]
    merged["peak_rss_mib"] = max(run["peak_rss_mib"] for run in runs)
    merged["rounds"] = len(runs)
    for key in ("generation_seconds", "generation_tokens", "rollout_seconds", "rollout_tokens"):
        if key in merged:
            merged[key] = [x for run in runs for x in run[key]]
    return merged


def warm_means(warm: list[dict[str, float]]) -> dict[str, float]:
    """Each key's mean over the warm iterations (every child's first iteration is a warm-up, left out)."""
    keys = {key for it in warm for key in it}
    return {key: statistics.fmean(it.get(key, 0.0) for it in warm) for key in sorted(keys)}


def report(args: argparse.Namespace, prepared: dict[str, Any], results: dict[str, Any]) -> dict[str, float]:
    """Print the time split, the generation comparison and the herd / TRL table; return the ratios."""
    herd = results["herd"]
    means = {side: warm_means(r["warm_iterations"]) for side, r in results.items()}
    lengths = [len(p) for p in prepared["prompt_ids"]]
    print(f"machine: {machine()}, {herd['threads']} threads")
    print(
        f"model: random Llama, SmolLM2-135M's vocabulary and tokenizer, shape {args.shape}, "
        f"{'fp32' if args.device == 'cpu' else 'bf16 autocast'} on {args.device}; reward and value models "
        f"of the same shape; {args.batch} prompts ({min(lengths)}-{max(lengths)} tokens) x 1 response of "
        f"<= {args.new_tokens} tokens, {args.mini_batches} mini-batch(es), {args.micro_batch} rows per "
        f"forward, {args.ppo_epochs} epoch(s); means of iterations 2-{args.iterations} of {args.rounds} "
        f"round(s) (herd, then TRL, in turn)"
    )
    h = means["herd"]
    print("\nherd: one PPO iteration")
    print(f"{'phase':<18}{'wall s':>9}{'share':>8}{'CPU s':>9}{'share':>8}")
    for phase in (*HERD_PHASES, "training", "iteration"):
        wall, cpu = h.get(phase, 0.0), h.get(f"{phase}_cpu", 0.0)
        print(
            f"{phase:<18}{wall:>9.2f}{wall / h['iteration']:>8.0%}{cpu:>9.2f}{cpu / h['iteration_cpu']:>8.0%}"
        )

    sampling_tps = h["response_tokens"] / h["generation"]
    phase_tps = h["response_tokens"] / h["rollout"]
    plain_tps = h["plain_tokens"] / h["plain_generation"]
    generation_tps = sum(herd["generation_tokens"]) / sum(herd["generation_seconds"])
    standalone_tps = sum(herd["rollout_tokens"]) / sum(herd["rollout_seconds"])
    print(
        f"\nresponse tokens/s in the run: rollout sampling {sampling_tps:.1f}, whole rollout (steps 1-5) "
        f"{phase_tps:.1f}, plain generate_ids beside each rollout {plain_tps:.1f}; after the run "
        f"({args.repeats} alternating pairs): standalone rollout() {standalone_tps:.1f}, "
        f"generate_ids {generation_tps:.1f}"
    )
    ratios = {
        "rollout_vs_generation": sampling_tps / plain_tps,
        "rollout_vs_generation_cpu": h["plain_generation_cpu"]
        / h["generation_cpu"]
        * h["response_tokens"]
        / h["plain_tokens"],
        "rollout_phase_vs_generation": phase_tps / plain_tps,
        "standalone_rollout_vs_generation": standalone_tps / generation_tps,
    }
    print(
        f"rollout / plain generation: {ratios['rollout_vs_generation']:.2f}x tokens/s in the run "
        f"(goal >= 0.8x; {ratios['rollout_vs_generation_cpu']:.2f}x per CPU second), "
        f"{ratios['rollout_phase_vs_generation']:.2f}x for the whole rollout phase "
        f"(steps 1-5), {ratios['standalone_rollout_vs_generation']:.2f}x after the run"
    )
    if "trl" not in results:
        return ratios

    t = means["trl"]
    print(f"\nherd against TRL {results['trl']['trl_version']} (trl.experimental.ppo.PPOTrainer), seconds:")
    columns = (
        "generation",
        "scoring",
        "reference",
        "values",
        "rollout",
        "training",
        "iteration",
        "iteration_cpu",
    )
    print("| side | " + " | ".join(columns) + " | response tokens | peak RSS MiB |")
    print("|---" * (len(columns) + 3) + "|")
    for side, m in (("herd", h), ("TRL", t)):
        cells = " | ".join(f"{m.get(c, 0.0):.2f}" for c in columns)
        rss = results[side.lower()]["peak_rss_mib"]
        print(f"| {side} | {cells} | {m['response_tokens']:.0f} | {rss:.0f} |")
    ratio_cells = " | ".join(f"{t[c] / h[c]:.2f}x" if h.get(c) and t.get(c) else "-" for c in columns)
    memory = herd["peak_rss_mib"] / results["trl"]["peak_rss_mib"]
    print(f"| TRL / herd time | {ratio_cells} | | {memory:.2f}x herd / TRL |")
    ratios["speed"] = t["iteration"] / h["iteration"]
    ratios["speed_cpu"] = t["iteration_cpu"] / h["iteration_cpu"]
    ratios["memory"] = memory
    print(
        f"herd / TRL: {ratios['speed']:.2f}x faster per PPO iteration in wall time, {ratios['speed_cpu']:.2f}x "
        f"in CPU time (goal >= 2x); {memory:.2f}x peak RSS (herd's includes the generation comparison)"
    )
    return ratios


def main() -> None:
    args = parse_args()
    if args.worker:
        worker(args)
        return
    prepared, results = run_sides(args)
    ratios = report(args, prepared, results)
    if args.json:
        posttrain.write_summary(args.json, args, results, ratios)


if __name__ == "__main__":
    main()
