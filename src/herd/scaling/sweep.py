"""The IsoFLOP sweep (Llama 3 §3.2.1; Chinchilla's approach 2): train every model size at every compute budget.

Llama 3 trains models of 40M to 16B parameters at budgets of 6×10¹⁸ to 10²²
FLOPs, each with a cosine schedule after a short linear warmup, and fits the
compute-optimal size and the loss to the validation losses (and, to predict
benchmarks, to the correct answer's NLL per character on an eval task). This
module plans and runs such a grid with herd's own pretraining.

A run's tokens come from its budget ``C`` and herd's exact training FLOPs
per token ``F`` (:func:`herd.model.info.model_info`: ``6·N`` over the matmul
weights plus the attention's ``12·L·H·Q·T``): ``D = C / F``, reported beside
Chinchilla's approximation ``C / (6N)``, and trained as ``round(D / batch)``
steps of the base config's ``train.batch_tokens``. A pair whose ``D/N`` falls
outside ``[min_tokens_per_param, max_tokens_per_param]`` or whose steps fall
below ``min_steps`` is skipped with its reason.

Each run is a normal pretraining run (:func:`herd.train.loop.pretrain`) in
``out_dir/runs/<name>``, whose derived config is written there as
``config.toml`` (``herd pretrain`` reads it as it is): the base config with the
model's shape, ``train.steps``, a warmup of ``warmup_fraction`` of the steps and
cosine decay to ``min_lr_ratio`` of the peak. Its final validation (the
trainer's own: ``log.val_batches`` held-out batches) gives ``val_loss``; with an
``eval_task`` (multiple choice) the exported model is evaluated by
:mod:`herd.eval` for the gold answer's mean NLL per character and the accuracy.
Then one row is appended to ``out_dir/runs.csv`` (:mod:`herd.scaling.runs`).

Resuming is the default: a run with a row is skipped; a run directory with a
checkpoint but no row continues from it (the trainer's exact resume), so its
row equals an uninterrupted run's; a run killed before its first checkpoint
starts again.
"""

from __future__ import annotations

import copy
import json
import math
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from herd.config import apply_overrides, coerce, from_dict, load_toml
from herd.errors import ConfigError, HerdError
from herd.io.atomic import write_atomically
from herd.model.config import ModelConfig
from herd.model.info import model_info
from herd.scaling.runs import Run, append_run, read_runs
from herd.train.config import PretrainConfig, config_from_dict

RUNS_CSV = "runs.csv"
RUNS_DIR = "runs"
RUN_CONFIG = "config.toml"


@dataclass
class SweepConfig:
    """An IsoFLOP grid: ``budgets`` (FLOPs) × ``models``, trained from the pretraining config ``base``.

    ``models``: each entry a preset name or a table of ModelConfig fields
    (``preset``, ``dim``, ``n_layers``, ``n_heads``, ``n_kv_heads``, ...) that
    replace the base config's ``[model]`` keys, plus optionally ``name`` (used in
    run names; default ``d<dim>-l<n_layers>``) and ``lr`` (its peak learning
    rate; default the base's ``optim.lr``). ``overrides``: ``KEY=VALUE`` settings
    applied to the base config (as ``herd pretrain --set`` would). ``0`` turns a
    tokens-per-parameter bound off; ``eval_limit`` 0 evaluates every question.
    """

    base: str
    budgets: list[float]
    models: list[Any]
    out_dir: str = "runs/scaling"
    overrides: list[str] = field(default_factory=list)
    warmup_fraction: float = 0.05
    min_lr_ratio: float = 0.1
    min_steps: int = 10
    min_tokens_per_param: float = 0.0
    max_tokens_per_param: float = 0.0
    eval_task: str = ""
    eval_limit: int = 0

    def checks(self) -> list[tuple[bool, str]]:
        """Cross-field checks as (holds, message when it does not)."""
        return [
            (bool(self.base), "base must name a pretraining config file"),
            (bool(self.out_dir), "out_dir must not be empty"),
            (bool(self.budgets), "budgets must list at least one FLOP budget"),
            (all(c > 0 for c in self.budgets), "budgets must be positive"),
            (len(set(self.budgets)) == len(self.budgets), "budgets must not repeat"),
            (bool(self.models), "models must list at least one model"),
            (0 <= self.warmup_fraction < 1, "warmup_fraction must be in [0, 1)"),
            (0 <= self.min_lr_ratio <= 1, "min_lr_ratio must be in [0, 1]"),
            (self.min_steps > 0, "min_steps must be positive"),
            (self.min_tokens_per_param >= 0, "min_tokens_per_param must be >= 0 (0: no bound)"),
            (self.max_tokens_per_param >= 0, "max_tokens_per_param must be >= 0 (0: no bound)"),
            (
                not (0 < self.max_tokens_per_param < self.min_tokens_per_param),
                "max_tokens_per_param must not be below min_tokens_per_param",
            ),
            (self.eval_limit >= 0, "eval_limit must be >= 0 (0: every question)"),
        ]


def sweep_from_dict(data: dict[str, Any], source: str = "sweep config") -> SweepConfig:
    """A checked :class:`SweepConfig` from a raw table; errors name ``source``."""
    try:
        sweep = from_dict(SweepConfig, data)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    for ok, message in sweep.checks():
        if not ok:
            raise ConfigError(f"{source}: {message}")
    for i, entry in enumerate(sweep.models):
        if not isinstance(entry, str | dict):
            raise ConfigError(f"{source}: models[{i}]: expected a preset name or a table, got {entry!r}")
    return sweep


def load_sweep(path: Path | str, overrides: Sequence[str] = ()) -> SweepConfig:
    """Read a sweep TOML file and apply ``--set KEY=VALUE`` overrides to it."""
    return sweep_from_dict(apply_overrides(load_toml(path, "sweep config"), overrides), str(path))


@dataclass(frozen=True)
class PlannedRun:
    """One (budget, model) pair of the grid: its sizes, tokens and steps, or why it is skipped.

    ``tokens`` is ``C / F`` with herd's exact FLOPs per token ``F``;
    ``tokens_6n`` is ``C / (6N)``, the approximation's; ``config`` the derived
    pretraining config (None when skipped).
    """

    name: str
    budget: float
    model: str
    params: int
    non_embedding_params: int
    flops_per_token: int
    tokens: float
    tokens_6n: float
    steps: int
    batch_tokens: int
    skipped: str = ""
    config: PretrainConfig | None = field(default=None, compare=False, repr=False)

    @property
    def flops_6nd(self) -> float:
        """``6·N·D`` at the planned ``D = C / F``: how far the approximation strays from the budget."""
        return 6 * self.params * self.tokens


def budget_label(budget: float) -> str:
    """A budget as it appears in run names: ``1e17``, ``2.5e15``."""
    return re.sub(r"e\+?0*(\d)", r"e\1", f"{budget:.3g}")


def _entry_table(entry: str | dict[str, Any], index: int) -> tuple[str | None, float | None, dict[str, Any]]:
    """A ``models`` entry as (name, peak LR, the model keys it sets); keys are checked to exist."""
    if isinstance(entry, str):
        return entry, None, {"preset": entry}
    table = dict(entry)
    where = f"models[{index}]"
    name = coerce(table.pop("name", None), str | None, f"{where}.name")
    lr = coerce(table.pop("lr", None), float | None, f"{where}.lr")
    known = set(get_type_hints(ModelConfig)) | {"preset"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)} (ModelConfig fields, preset, name, lr)"
        )
    if lr is not None and lr <= 0:
        raise ConfigError(f"{where}.lr must be positive, got {lr}")
    return name, lr, table


def _base_table(sweep: SweepConfig) -> dict[str, Any]:
    """The base pretraining config as a raw table, with the sweep's ``overrides`` applied and checked."""
    table = apply_overrides(load_toml(sweep.base), sweep.overrides)
    config_from_dict(copy.deepcopy(table))
    return table


def _derived(
    base: dict[str, Any], model: dict[str, Any], lr: float | None, steps: int, sweep: SweepConfig, name: str
) -> dict[str, Any]:
    """The raw pretraining config of one run: ``base`` with the model's keys, steps and schedule."""
    table = copy.deepcopy(base)
    table["out_dir"] = str(Path(sweep.out_dir) / RUNS_DIR / name)
    table["model"] = {**table.get("model", {}), **model}
    table.setdefault("train", {})["steps"] = steps
    table.setdefault("schedule", {}).update(
        warmup_steps=0, warmup_ratio=sweep.warmup_fraction, min_lr_ratio=sweep.min_lr_ratio
    )
    if lr is not None:
        table.setdefault("optim", {})["lr"] = lr
    if sweep.eval_task:
        table.setdefault("checkpoint", {})["export_hf"] = True  # the eval task reads the exported model
    return table


def _skip_reason(sweep: SweepConfig, tokens: float, params: int, steps: int) -> str:
    ratio = tokens / params
    if sweep.min_tokens_per_param and ratio < sweep.min_tokens_per_param:
        return f"D/N {ratio:.3g} < min_tokens_per_param {sweep.min_tokens_per_param:g}"
    if sweep.max_tokens_per_param and ratio > sweep.max_tokens_per_param:
        return f"D/N {ratio:.3g} > max_tokens_per_param {sweep.max_tokens_per_param:g}"
    if steps < sweep.min_steps:
        return f"{steps} steps < min_steps {sweep.min_steps}"
    return ""


def plan(sweep: SweepConfig) -> list[PlannedRun]:
    """Every (budget, model) pair, budgets in order then models in order, with its sizes and steps.

    Reads the base config and, when it leaves ``model.vocab_size`` to the data,
    the dataset's manifest; trains nothing.
    """
    from herd.io.token_shards import TokenDataset
    from herd.train.pretrain_objective import with_data_vocab

    base = _base_table(sweep)
    dataset = None
    planned: list[PlannedRun] = []
    for index, entry in enumerate(sweep.models):
        label, lr, model = _entry_table(entry, index)
        probe = config_from_dict(_derived(base, model, lr, 1, sweep, "probe"))
        if probe.vocab_from_data:
            dataset = dataset or TokenDataset.open(probe.data.path)
            probe = with_data_vocab(probe, dataset)
        shape = probe.model_config()
        info = model_info(shape, probe.data.seq_len)
        label = label or f"d{shape.dim}-l{shape.n_layers}"
        batch = probe.train.batch_tokens
        for budget in sweep.budgets:
            name = f"{label}-{budget_label(budget)}"
            tokens = budget / info.training_flops_per_token
            steps = round(tokens / batch)
            reason = _skip_reason(sweep, tokens, info.parameters, steps)
            config = None if reason else config_from_dict(_derived(base, model, lr, steps, sweep, name))
            planned.append(
                PlannedRun(
                    name=name,
                    budget=budget,
                    model=label,
                    params=info.parameters,
                    non_embedding_params=info.non_embedding_parameters,
                    flops_per_token=info.training_flops_per_token,
                    tokens=tokens,
                    tokens_6n=budget / (6 * info.parameters),
                    steps=steps,
                    batch_tokens=batch,
                    skipped=reason,
                    config=config,
                )
            )
    names = [p.name for p in planned]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"two runs of the sweep are named {repeated[0]!r}: give the models distinct names")
    planned.sort(key=lambda p: sweep.budgets.index(p.budget))
    return planned


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"


def plan_table(planned: Sequence[PlannedRun]) -> str:
    """The plan as a Markdown table: budget, model, N, F, D = C/F, C/(6N), 6ND, steps, and skipped reasons."""
    header = [
        "run",
        "budget",
        "model",
        "N",
        "F (FLOPs/token)",
        "D = C/F",
        "C/(6N)",
        "6ND",
        "steps",
        "skipped",
    ]
    rows = [
        [
            p.name,
            f"{p.budget:.3g}",
            p.model,
            f"{p.params:,}",
            f"{p.flops_per_token:,}",
            f"{p.tokens:.4g}",
            f"{p.tokens_6n:.4g}",
            f"{p.flops_6nd:.4g}",
            str(p.steps),
            p.skipped,
        ]
        for p in planned
    ]
    return _table(header, rows)


def results_table(runs: Sequence[Run]) -> str:
    """The finished runs as a Markdown table."""
    header = ["run", "budget", "N", "D", "FLOPs", "6ND", "val_loss", "eval_nll", "eval_acc"]

    def number(value: float | None, spec: str) -> str:
        return "" if value is None else format(value, spec)

    rows = [
        [
            r.run,
            number(r.budget, ".3g"),
            number(r.params, ","),
            number(r.tokens, ","),
            number(r.flops, ".4g"),
            number(r.flops_6nd, ".4g"),
            number(r.val_loss, ".4f"),
            number(r.eval_nll, ".4f"),
            number(r.eval_acc, ".3f"),
        ]
        for r in runs
    ]
    return _table(header, rows)


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def to_toml(table: dict[str, Any], prefix: str = "") -> str:
    """A config table as TOML: scalars and arrays as JSON literals (valid TOML), tables as ``[section]``s.

    None values (TOML has no null) are left out: they are the defaults.
    """
    lines = [
        f"{_toml_key(key)} = {json.dumps(value)}"
        for key, value in table.items()
        if value is not None and not isinstance(value, dict)
    ]
    for key, value in table.items():
        if isinstance(value, dict):
            name = f"{prefix}{_toml_key(key)}"
            lines.append(f"\n[{name}]\n{to_toml(value, name + '.')}".rstrip("\n"))
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class EvalScores:
    """The eval task's name, the gold answer's mean NLL per character and the accuracy."""

    task: str
    nll: float
    acc: float


def load_eval_task(sweep: SweepConfig) -> Any | None:
    """The spec of ``sweep.eval_task`` (None without one); it must be multiple choice, whose records hold
    the gold answer's NLL per character. Loaded before anything trains, so a bad name fails first."""
    from herd.eval.kinds import find_task, load_spec

    if not sweep.eval_task:
        return None
    spec = load_spec(find_task(sweep.eval_task))
    if spec.kind != "multiple_choice":
        raise ConfigError(
            f"eval_task {sweep.eval_task!r} is a {spec.kind} task: the sweep needs a multiple-choice one "
            "(its records hold the gold answer's NLL per character)"
        )
    return spec


def _evaluate(spec: Any, limit: int, hf_dir: str, device: str) -> EvalScores:
    """Run the multiple-choice task ``spec`` on the exported model in ``hf_dir``."""
    from herd.eval.kinds import run_task
    from herd.infer.engine import Engine
    from herd.infer.loading import load_for_inference

    model, tokenizer = load_for_inference(hf_dir, device=device)
    result = run_task(spec, Engine(model), tokenizer, limit=limit)
    nll = [float(example["gold_nll_per_char"]) for example in result.examples]
    return EvalScores(spec.name, math.fsum(nll) / len(nll), result.metric("acc").value)


def _device(config: PretrainConfig) -> str:
    """Where the trainer ran (and so where the eval runs): ``train.device``, auto being cuda when present."""
    import torch

    if config.train.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return config.train.device


def _train(planned: PlannedRun, say: Callable[[str], None]) -> Any:
    """Pretrain one planned run in its directory: resumed from its checkpoint, restarted, or new."""
    from herd.train import checkpointing
    from herd.train.loop import pretrain
    from herd.train.outdir import existing_run

    config = planned.config
    assert config is not None
    out_dir = Path(config.out_dir)
    latest = checkpointing.latest_checkpoint(out_dir)
    if latest is not None:
        say(f"{planned.name}: resuming from {latest}")
        return pretrain(config, resume=True)
    restart = bool(existing_run(out_dir))
    if restart:
        say(f"{planned.name}: no checkpoint, starting again")
    return pretrain(config, overwrite=restart)


def run_planned(
    sweep: SweepConfig, planned: PlannedRun, say: Callable[[str], None], eval_spec: Any | None = None
) -> Run:
    """Train (or resume) one run, evaluate it on ``eval_spec`` (:func:`load_eval_task`) if given and return
    its row (not yet appended)."""
    config = planned.config
    assert config is not None
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(out_dir / RUN_CONFIG, lambda f: f.write(to_toml(config.to_dict()).encode("utf-8")))
    result = _train(planned, say)
    if result.val_loss is None:
        raise HerdError(f"run {planned.name} reported no validation loss (see {out_dir})")
    scores = None
    if eval_spec is not None:
        scores = _evaluate(eval_spec, sweep.eval_limit, result.hf_dir, _device(config))
    return Run(
        run=planned.name,
        budget=planned.budget,
        params=planned.params,
        non_embedding_params=planned.non_embedding_params,
        tokens=result.tokens,
        flops=float(planned.flops_per_token * result.tokens),
        flops_6nd=float(6 * planned.params * result.tokens),
        val_loss=result.val_loss,
        eval_task=scores.task if scores else None,
        eval_nll=scores.nll if scores else None,
        eval_acc=scores.acc if scores else None,
    )


def _check_held_out(planned: Sequence[PlannedRun]) -> None:
    """Refuse, before training anything, a base config whose runs would report no validation loss."""
    from herd.io.token_shards import TokenDataset

    config = next((p.config for p in planned if p.config is not None), None)
    if config is None:
        return
    if config.log.val_batches == 0:
        raise ConfigError(
            "log.val_batches is 0 in the base config: the sweep needs each run's validation loss"
        )
    if not TokenDataset.open(config.data.path).splits.get("val"):
        raise ConfigError(
            f"{config.data.path}: no held-out split (val), so the runs would have no validation loss; build "
            "the data with one (herd data build ... --set recipe.val_fraction=0.01)"
        )


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run_sweep(sweep: SweepConfig, *, say: Callable[[str], None] = _stderr) -> list[Run]:
    """Train every planned run that has no row in ``out_dir/runs.csv`` yet, appending a row after each.

    ``say`` receives one progress line per run (skipped, resumed, finished).
    Returns the rows of ``runs.csv`` after the sweep, in the file's order.
    """
    planned = plan(sweep)
    _check_held_out(planned)
    eval_spec = load_eval_task(sweep)
    csv_path = Path(sweep.out_dir) / RUNS_CSV
    done = {run.run for run in read_runs(csv_path, ["run"])} if csv_path.is_file() else set()
    for i, p in enumerate(planned, start=1):
        where = f"[{i}/{len(planned)}] {p.name}"
        if p.skipped:
            say(f"{where}: skipped ({p.skipped})")
            continue
        if p.name in done:
            say(f"{where}: done (row in {csv_path})")
            continue
        say(f"{where}: N={p.params:,}, D={p.steps * p.batch_tokens:,} tokens, {p.steps} steps")
        started = time.perf_counter()
        row = run_planned(sweep, p, say, eval_spec)
        append_run(csv_path, row)
        nll = f", eval NLL/char {row.eval_nll:.4f}" if row.eval_nll is not None else ""
        say(f"{where}: val_loss {row.val_loss:.4f}{nll} ({time.perf_counter() - started:.1f} s)")
    return read_runs(csv_path, ["run"]) if csv_path.is_file() else []
