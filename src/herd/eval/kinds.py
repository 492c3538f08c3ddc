"""Every kind of evaluation task, chosen by the ``kind`` key of its TOML spec, and the task files by name.

A spec file's ``kind`` (``multiple_choice`` when absent) names the module that
defines its spec dataclass and its ``evaluate_<kind>`` function; every such
function takes the same arguments and returns a
:class:`~herd.eval.result.TaskResult`, so ``herd eval`` drives all kinds alike.
The module of a kind is imported when a spec of that kind is loaded, so a run
of multiple-choice tasks never imports the code sandbox or the plotting code.

Task names resolve to ``<tasks_dir>/<name>.toml`` (``configs/eval`` by default);
a path to a ``.toml`` file works too.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from herd.config import load_toml
from herd.data.checks import unknown_name
from herd.errors import ConfigError
from herd.eval.result import TaskResult
from herd.eval.tasks import spec_from_table
from herd.infer.engine import Engine
from herd.tokenizer import Tokenizer

#: Where ``herd eval --tasks NAME`` looks for ``NAME.toml`` unless ``--tasks-dir`` says otherwise.
TASKS_DIR = Path("configs/eval")


@dataclass(frozen=True)
class Kind:
    """Where a task kind lives: its module, its spec dataclass and its evaluate function (by name)."""

    module: str
    spec: str
    evaluate: str
    #: A function ``(result, path)`` drawing the kind's own figure (key retrieval's heatmap), or "".
    plot: str = ""

    def spec_class(self) -> type:
        """The kind's spec dataclass."""
        return getattr(importlib.import_module(self.module), self.spec)

    def evaluator(self) -> Callable[..., TaskResult]:
        """The kind's ``evaluate_<kind>(spec, engine, tokenizer, *, limit, batch_size, chat, data_dir, progress)``."""
        return getattr(importlib.import_module(self.module), self.evaluate)


KINDS: dict[str, Kind] = {
    "multiple_choice": Kind("herd.eval.multiple_choice", "TaskSpec", "evaluate_multiple_choice"),
    "generate": Kind("herd.eval.generation", "GenerationSpec", "evaluate_generation"),
    "code": Kind("herd.eval.code", "CodeSpec", "evaluate_code"),
    "perplexity": Kind("herd.eval.perplexity", "PerplexitySpec", "evaluate_perplexity"),
    "infilling": Kind("herd.eval.infilling", "InfillingSpec", "evaluate_infilling"),
    "key_retrieval": Kind(
        "herd.eval.key_retrieval", "KeyRetrievalSpec", "evaluate_key_retrieval", plot="plot_key_retrieval"
    ),
}


def plot_task(result: TaskResult, out_dir: Path) -> Path | None:
    """The kind's own figure of ``result`` as ``out_dir/<task>.png``, when the kind has one."""
    kind = KINDS[result.kind]
    if not kind.plot:
        return None
    return getattr(importlib.import_module(kind.module), kind.plot)(result, out_dir / f"{result.task}.png")


def load_spec(path: Path | str) -> Any:
    """The spec in the TOML file at ``path``, of the class its ``kind`` names; errors name the file."""
    table = load_toml(path, "task spec")
    kind = table.get("kind", "multiple_choice")
    if kind not in KINDS:
        raise ConfigError(f"{path}: unknown task kind {kind!r} {unknown_name(kind, KINDS)}")
    return spec_from_table(KINDS[kind].spec_class(), table, path)


def task_names(tasks_dir: Path = TASKS_DIR) -> list[str]:
    """The task names ``tasks_dir`` offers (its ``*.toml`` files), sorted."""
    return sorted(p.stem for p in tasks_dir.glob("*.toml")) if tasks_dir.is_dir() else []


def find_task(name: str, tasks_dir: Path = TASKS_DIR) -> Path:
    """The spec file of task ``name``: ``name`` itself when it is a ``.toml`` path, else ``tasks_dir/name.toml``."""
    if name.endswith(".toml"):
        if not Path(name).is_file():
            raise ConfigError(f"{name}: no such task spec file")
        return Path(name)
    path = tasks_dir / f"{name}.toml"
    if path.is_file():
        return path
    known = task_names(tasks_dir)
    if not known:
        raise ConfigError(
            f"unknown task {name!r}: {tasks_dir} holds no task specs (run from herd's checkout, or pass "
            "--tasks-dir DIR or a path to a .toml spec)"
        )
    raise ConfigError(f"unknown task {name!r} in {tasks_dir} {unknown_name(name, known)}")


def with_shots(spec: Any, shots: int) -> Any:
    """``spec`` with ``num_fewshot = shots``; a kind without few-shot examples refuses."""
    if not any(f.name == "num_fewshot" for f in dataclasses.fields(spec)):
        raise ConfigError(
            f"task {spec.name!r} ({spec.kind}) takes no few-shot examples, so --shots cannot apply"
        )
    if shots < 0:
        raise ConfigError(f"--shots must be >= 0, got {shots}")
    return dataclasses.replace(spec, num_fewshot=shots)


def run_task(
    spec: Any,
    engine: Engine,
    tokenizer: Tokenizer,
    *,
    limit: int = 0,
    batch_size: int = 16,
    chat: bool = False,
    data_dir: Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> TaskResult:
    """Evaluate one loaded spec with its kind's function."""
    return KINDS[spec.kind].evaluator()(
        spec,
        engine,
        tokenizer,
        limit=limit,
        batch_size=batch_size,
        chat=chat,
        data_dir=data_dir,
        progress=progress,
    )
