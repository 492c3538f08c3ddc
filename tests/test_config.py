"""herd.config, the one TOML-to-dataclass loader: values checked by key, unknown keys named, --set overrides."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from herd.config import apply_overrides, coerce, from_dict, load_toml, parse_value
from herd.errors import ConfigError


@dataclass
class Inner:
    rate: float = 0.5
    mode: Literal["fast", "slow"] = "fast"


@dataclass
class Item:
    name: str
    weight: float = 1.0


@dataclass
class Outer:
    steps: int
    label: str | None = None
    inner: Inner = field(default_factory=Inner)
    weights: dict[str, float] = field(default_factory=dict)
    items: tuple[Item, ...] = ()
    sizes: list[int] = field(default_factory=list)
    pair: tuple[int, str] = (0, "")
    extra: dict[str, Any] = field(default_factory=dict)


def test_a_tree_of_dataclasses_from_a_table() -> None:
    data = {
        "steps": 3,
        "inner": {"rate": 2, "mode": "slow"},
        "weights": {"web": 2, "code": 0.5},
        "items": [{"name": "a"}, {"name": "b", "weight": 3}],
        "sizes": [1, 2],
        "pair": [4, "x"],
        "extra": {"anything": [1, "two"]},
    }
    config = from_dict(Outer, data)
    assert config == Outer(
        steps=3,
        inner=Inner(rate=2.0, mode="slow"),
        weights={"web": 2.0, "code": 0.5},
        items=(Item("a"), Item("b", 3.0)),
        sizes=[1, 2],
        pair=(4, "x"),
        extra={"anything": [1, "two"]},
    )
    assert isinstance(config.inner.rate, float) and isinstance(config.items[1].weight, float)
    assert from_dict(Outer, {"steps": 1}) == Outer(steps=1)  # left-out keys keep their defaults


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"steps": 1, "stpes": 2}, "unknown config key(s): stpes"),
        (
            {"steps": 1, "inner": {"rate": 1.0, "speed": 2, "colour": 3}},
            "unknown config key(s): inner.colour, inner.speed",
        ),
        ({"steps": 1, "items": [{"name": "a", "wieght": 2}]}, "unknown config key(s): items[0].wieght"),
        ({}, "missing config key(s): steps"),
        ({"steps": 1, "items": [{"weight": 2}]}, "missing config key(s): items[0].name"),
        ({"steps": "3"}, "steps: expected int, got '3'"),
        ({"steps": 2.5}, "steps: expected int, got 2.5"),
        ({"steps": True}, "steps: expected int, got True"),
        ({"steps": 1, "inner": {"rate": True}}, "inner.rate: expected float, got True"),
        ({"steps": 1, "inner": {"rate": math.inf}}, "inner.rate: expected a finite number, got inf"),
        ({"steps": 1, "inner": {"mode": "quick"}}, "inner.mode: 'quick' is not one of 'fast', 'slow'"),
        ({"steps": 1, "inner": 3}, "inner: expected a table, got 3"),
        ({"steps": 1, "label": 3}, "label: expected str, got 3"),
        ({"steps": 1, "weights": {"web": "many"}}, "weights.web: expected float, got 'many'"),
        ({"steps": 1, "weights": [1]}, "weights: expected a table, got [1]"),
        ({"steps": 1, "sizes": [1, "2"]}, "sizes[1]: expected int, got '2'"),
        ({"steps": 1, "sizes": 1}, "sizes: expected an array, got 1"),
        ({"steps": 1, "items": ["a"]}, "items[0]: expected a table, got 'a'"),
        ({"steps": 1, "pair": [1]}, "pair: expected an array of 2 values, got [1]"),
        ({"steps": 1, "pair": [1, 2]}, "pair[1]: expected str, got 2"),
    ],
)
def test_every_bad_value_is_named_by_its_dotted_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        from_dict(Outer, data)
    assert str(caught.value) == message


def test_the_prefix_names_where_the_table_is() -> None:
    with pytest.raises(ConfigError, match=r"^run\.inner\.rate: expected float"):
        from_dict(Outer, {"steps": 1, "inner": {"rate": "x"}}, prefix="run.")
    with pytest.raises(ConfigError, match=r"^config: expected a table, got \[1\]"):
        from_dict(Outer, [1])


def test_coerce_tries_each_member_of_a_union() -> None:
    assert coerce(3, int | str, "k") == 3 and coerce("x", int | str, "k") == "x"
    assert coerce(None, int | None, "k") is None
    with pytest.raises(ConfigError, match=r"^k: 1\.5 has the wrong type \(expected int \| str\)"):
        coerce(1.5, int | str, "k")


def test_parse_value_reads_toml_literals_else_strings() -> None:
    assert parse_value("3e-4") == 3e-4 and parse_value("true") is True and parse_value("[1, 2]") == [1, 2]
    assert parse_value("{web = 2}") == {"web": 2} and parse_value("'quoted'") == "quoted"
    assert (
        parse_value("fsdp") == "fsdp"
        and parse_value("x y") == "x y"
        and parse_value("[" * 5000) == "[" * 5000
    )


def test_overrides_set_dotted_keys_and_array_entries() -> None:
    data: dict[str, Any] = {"optim": {"lr": 1.0}, "source": [{"name": "a"}, {"name": "b"}]}
    result = apply_overrides(
        data,
        ["optim.lr=3e-4", "train.steps = 7", "out_dir=x y", "source[1].weight=0.5", "source[0]={name = 'c'}"],
    )
    assert result is data
    assert data == {
        "optim": {"lr": 3e-4},
        "train": {"steps": 7},
        "out_dir": "x y",
        "source": [{"name": "c"}, {"name": "b", "weight": 0.5}],
    }
    assert from_dict(Outer, apply_overrides({"steps": 1}, ["inner.mode=slow"])).inner.mode == "slow"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lr", "--set 'optim.lr': expected KEY=VALUE, e.g. optim.lr=3e-4"),
        ("=1", "--set '=1': expected KEY=VALUE"),
        ("optim..lr=1", "--set 'optim..lr=1': expected KEY=VALUE"),
        ("out_dir.x=1", "--set 'out_dir.x=1': out_dir is not a table"),
        ("optim.lr.x=1", "--set 'optim.lr.x=1': optim.lr is not a table"),
        ("optim[0]=1", "--set 'optim[0]=1': optim is not an array"),
        ("source[2].weight=1", "--set 'source[2].weight=1': source has 2 entries, no [2]"),
        ("source[0][0]=1", "--set 'source[0][0]=1': source[0] is not an array"),
    ],
)
def test_bad_overrides_are_named(override: str, message: str) -> None:
    data = {"out_dir": "x", "optim": {"lr": 1.0}, "source": [{"name": "a"}, {"name": "b"}]}
    with pytest.raises(ConfigError) as caught:
        apply_overrides(data, [override])
    assert str(caught.value).startswith(message)


def test_load_toml_names_the_file_and_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[optim]\nlr = 3e-4\n[[source]]\nname = 'a'\n")
    assert load_toml(path) == {"optim": {"lr": 3e-4}, "source": [{"name": "a"}]}
    cases = [
        (tmp_path / "missing.toml", None, f"{tmp_path / 'missing.toml'}: no such recipe file"),
        (path, "lr = \n", f"{path}: invalid TOML (Invalid value (at line 1, column 6))"),
        (path, "lr = " + "[" * 5000 + "\n", f"{path}: invalid TOML (nested too deeply)"),
        (path, b"name = '\xff'\n", f"{path}: invalid TOML (not UTF-8 at byte 8)"),
        (tmp_path, None, f"{tmp_path}: cannot read recipe (Is a directory)"),
    ]
    for target, text, message in cases:
        if isinstance(text, bytes):
            target.write_bytes(text)
        elif text is not None:
            target.write_text(text)
        with pytest.raises(ConfigError) as caught:
            load_toml(target, "recipe")
        assert str(caught.value) == message
