"""Task kinds: every shipped spec loads as its kind's dataclass, names resolve to files, --shots applies."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib

from herd.errors import ConfigError
from herd.eval.kinds import KINDS, find_task, load_spec, plot_task, task_names, with_shots
from herd.eval.result import Metric, TaskResult

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "eval"
SHIPPED = sorted(CONFIGS.glob("*.toml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_spec_loads_as_its_kind(path: Path) -> None:
    spec = load_spec(path)
    kind = tomllib.loads(path.read_text()).get("kind", "multiple_choice")
    assert spec.kind == kind and type(spec) is KINDS[kind].spec_class()
    assert spec.name  # results are filed under it
    assert callable(KINDS[kind].evaluator())


def test_every_kind_is_shipped_and_names_resolve() -> None:
    assert {load_spec(p).kind for p in SHIPPED} == set(KINDS)
    assert task_names(CONFIGS) == [p.stem for p in SHIPPED]
    assert find_task("arc_easy", CONFIGS) == CONFIGS / "arc_easy.toml"
    assert find_task(str(CONFIGS / "piqa.toml")) == CONFIGS / "piqa.toml"


def test_bad_names_and_kinds_are_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown task 'arc_esay' .*did you mean 'arc_easy'"):
        find_task("arc_esay", CONFIGS)
    with pytest.raises(ConfigError, match="holds no task specs"):
        find_task("arc_easy", tmp_path)
    with pytest.raises(ConfigError, match="no such task spec file"):
        find_task(str(tmp_path / "x.toml"))
    (tmp_path / "k.toml").write_text('kind = "multiple_chioce"\nname = "k"\n')
    with pytest.raises(ConfigError, match=r"k.toml: unknown task kind 'multiple_chioce' .*'multiple_choice'"):
        load_spec(tmp_path / "k.toml")


def test_shots_replace_the_specs_own() -> None:
    mmlu = load_spec(CONFIGS / "mmlu.toml")
    assert mmlu.num_fewshot == 5 and with_shots(mmlu, 0).num_fewshot == 0
    with pytest.raises(ConfigError, match="--shots must be >= 0"):
        with_shots(mmlu, -2)
    with pytest.raises(ConfigError, match="takes no few-shot examples"):
        with_shots(load_spec(CONFIGS / "key_retrieval.toml"), 3)


def test_a_kind_with_its_own_figure_draws_it_beside_the_results(tmp_path: Path) -> None:
    """herd eval calls plot_task after each task: key retrieval's heatmap, nothing for the other kinds."""
    records = [
        {"id": f"k/{i}", "length": length, "depth": depth, "hit": hit}
        for i, (length, depth, hit) in enumerate([(256, 0.0, True), (256, 1.0, False), (512, 0.0, True)])
    ]
    needle = TaskResult(
        "needle", "key_retrieval", 3, (Metric.proportion("acc", [True, False, True]),), records
    )
    assert plot_task(needle, tmp_path) == tmp_path / "needle.png"
    assert (tmp_path / "needle.png").read_bytes()[:4] == b"\x89PNG"
    mc = TaskResult("mc", "multiple_choice", 1, (Metric("acc", 1.0, 0.0),))
    assert plot_task(mc, tmp_path) is None and not (tmp_path / "mc.png").exists()
