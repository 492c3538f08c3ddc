"""The results of ``herd eval``: a JSON file, a markdown table, a bar chart, the per-example records.

One directory holds a run (``herd eval ... --output DIR``):

- ``results.json``: the model, the settings and every task's metrics with their
  95% intervals (Llama 3 §5.1.1), plus the published score when the model is a
  known preset;
- ``results.md``: the same as a table, one row per task, headline metric first;
- ``results.png``: the headline metric of each task as a bar with its interval,
  the published score as a marker;
- ``examples/<task>.jsonl``: one record per example (log-likelihoods, the gold
  answer's NLL per character, generations, test outcomes), which the scaling-law
  prediction (Llama 3 §3.2.1) fits;
- ``tasks/<task>.json``: a finished task's result and the settings it ran with.
  A run started again with the same model and settings reuses each finished task
  instead of scoring it again, so an interrupted evaluation resumes where it
  stopped; a task whose settings differ is run again.

Every file is written atomically. Published scores (``REFERENCE``) are the
Llama papers' base-model numbers (Llama 2 Table 3 and §A.2.2; Llama 3.1 Table 2),
in percent, keyed by herd preset and task name; they were measured on the full
test sets with the papers' own harness, so a ``--limit`` run or an
lm-evaluation-harness prompt is not expected to match them to the point.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from herd.errors import InputError
from herd.eval.result import Metric, TaskResult
from herd.io.atomic import atomic_file
from herd.io.plot import pyplot, save_png
from herd.model.config import ModelConfig
from herd.model.presets import get_preset, preset_names

#: The Llama papers' published scores (percent) per preset and task (SPEC §6).
REFERENCE: dict[str, dict[str, float]] = {
    "llama2-7b": {
        "mmlu": 45.3,
        "hellaswag": 77.2,
        "arc_challenge": 45.9,
        "piqa": 78.8,
        "gsm8k": 14.6,
        "humaneval": 12.8,
    },
    "llama3.1-8b": {"mmlu": 66.7, "arc_challenge": 79.7, "gsm8k": 57.2, "humaneval": 37.2},
}


def known_preset(config: ModelConfig) -> str | None:
    """The preset whose architecture ``config`` has, if any: every field but the name and the context length
    (a checkpoint may carry another), so Llama 1 and 2 7B still differ by their RMSNorm epsilon."""
    for name in preset_names():
        preset = get_preset(name)
        if replace(preset, name=config.name, max_seq_len=config.max_seq_len) == config:
            return name
    return None


def reference_score(preset: str | None, task: str) -> float | None:
    """The published score of ``preset`` on ``task`` as a fraction, or None."""
    value = REFERENCE.get(preset or "", {}).get(task)
    return None if value is None else value / 100


def task_file(out_dir: Path, task: str) -> Path:
    """Where a finished task's result is kept for reuse."""
    return out_dir / "tasks" / f"{task}.json"


def save_task(out_dir: Path, result: TaskResult, settings: dict[str, Any]) -> None:
    """Keep one finished task: its result (with the examples) and the settings it ran with."""
    record = {"settings": settings, **result.scores(), "examples": result.examples}
    _write_text(task_file(out_dir, result.task), json.dumps(record, ensure_ascii=False))
    lines = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in result.examples)
    _write_text(out_dir / "examples" / f"{result.task}.jsonl", lines)


def load_finished(out_dir: Path, task: str, settings: dict[str, Any]) -> TaskResult | None:
    """The kept result of ``task`` when it ran with exactly ``settings``; None otherwise."""
    path = task_file(out_dir, task)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: unreadable kept result ({exc}); delete it to run the task again") from None
    if record.get("settings") != settings:
        return None
    metrics = tuple(Metric(name, m["value"], m["ci95"]) for name, m in record["metrics"].items())
    return TaskResult(record["task"], record["kind"], record["n"], metrics, record["examples"])


def write_report(
    out_dir: Path, results: Sequence[TaskResult], info: dict[str, Any], preset: str | None
) -> dict[str, Path]:
    """Write ``results.json``, ``results.md`` and ``results.png``; returns their paths by kind."""
    rows = [{**r.scores(), "reference": reference_score(preset, r.task)} for r in results]
    summary = {**info, "preset": preset, "tasks": rows}
    paths = {
        "json": out_dir / "results.json",
        "markdown": out_dir / "results.md",
        "chart": out_dir / "results.png",
    }
    _write_text(paths["json"], json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    _write_text(paths["markdown"], markdown_table(results, preset))
    plot_results(results, preset, paths["chart"], title=str(info.get("model", "")))
    return paths


def _pct(value: float, ci: float | None) -> str:
    return f"{100 * value:.1f} ± {100 * ci:.1f}" if ci is not None else f"{value:.4g}"


def markdown_table(results: Sequence[TaskResult], preset: str | None) -> str:
    """One row per task: n, the headline metric with its 95% CI, the others, and the published score."""
    header = "| task | n | score (95% CI) | other metrics |"
    rule = "|---|---:|---|---|"
    if preset and preset in REFERENCE:
        header += f" {preset} published |"
        rule += "---:|"
    lines = [header, rule]
    for r in results:
        head = r.primary
        others = ", ".join(f"{m.name} {_pct(m.value, m.ci)}" for m in r.metrics[1:]) or "-"
        line = f"| {r.task} | {r.n} | {head.name} {_pct(head.value, head.ci)} | {others} |"
        if preset and preset in REFERENCE:
            ref = reference_score(preset, r.task)
            line += f" {100 * ref:.1f} |" if ref is not None else " - |"
        lines.append(line)
    note = "Scores in percent with the Llama 3 paper's 95% interval 1.96·sqrt(S(1−S)/N); other values as measured."
    return "\n".join(lines) + f"\n\n{note}\n"


def plot_results(results: Sequence[TaskResult], preset: str | None, path: Path, title: str = "") -> Path:
    """A bar per task with a proportion as headline metric (percent, 95% CI whiskers), published scores as marks."""
    shown = [r for r in results if r.primary.ci is not None]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(shown) + 2), 3.6))
    x = range(len(shown))
    ax.bar(
        x,
        [100 * r.primary.value for r in shown],
        yerr=[100 * (r.primary.ci or 0.0) for r in shown],
        capsize=4,
        color="#4c72b0",
        label="herd eval (95% CI)",
    )
    refs = [(i, reference_score(preset, r.task)) for i, r in enumerate(shown)]
    marks = [(i, 100 * v) for i, v in refs if v is not None]
    if marks:
        ax.scatter(*zip(*marks, strict=True), marker="_", s=600, color="#c44e52", label=f"{preset} published")
    ax.set_xticks(list(x), [f"{r.task}\n{r.primary.name}" for r in shown], fontsize=8)
    ax.set_ylabel("score (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return save_png(fig, path)


def spec_settings(spec: Any) -> dict[str, Any]:
    """A task spec as JSON values, part of the settings a kept result must match."""
    return json.loads(json.dumps(asdict(spec), default=str))


def _write_text(path: Path, text: str) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(text, "utf-8")
