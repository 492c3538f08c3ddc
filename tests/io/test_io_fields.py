"""herd.io.fields: every value of a file others wrote is checked, and the error is the caller's class."""

from __future__ import annotations

from pathlib import Path

import pytest

from herd.errors import CheckpointError, HerdError, InputError
from herd.io.fields import Fields, read_json_object


def test_errors_are_the_callers_class_and_name_file_and_key(tmp_path: Path) -> None:
    fields = Fields({"dim": "64", "rope_scaling": {"factor": -1}}, "params.json", error=CheckpointError)
    with pytest.raises(
        CheckpointError, match=r"^params\.json: dim must be a positive integer, got str '64'$"
    ):
        fields.integer("dim")
    with pytest.raises(CheckpointError, match=r"^params\.json: missing key 'n_layers'$"):
        fields.integer("n_layers")
    section = fields.section("rope_scaling")
    assert section is not None
    with pytest.raises(
        CheckpointError, match=r"^params\.json: rope_scaling\.factor must be positive, got -1$"
    ):
        section.number("factor")
    with pytest.raises(HerdError, match="not one of"):
        Fields({"typo": 1}, "herd.json").unknown({"known"})


def test_read_json_object_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("[1, 2]")
    with pytest.raises(InputError, match=r"config\.json: expected a JSON object, got list \[1, 2\]"):
        read_json_object(path, InputError)
    with pytest.raises(HerdError, match="no such file"):
        read_json_object(tmp_path / "missing.json")
    path.write_text('{"dim": 64}')
    assert read_json_object(path) == {"dim": 64}


def test_integers_may_have_an_upper_bound_and_arrays_an_item_type() -> None:
    fields = Fields({"bos": 3, "ids": [0, 1, True], "scores": [0, -1.5], "tokens": ["a", 7]}, "v.gguf")
    assert fields.integer("bos", minimum=0, below=4) == 3
    with pytest.raises(HerdError, match=r"bos must be an integer from 0 to 2, got 3$"):
        fields.integer("bos", minimum=0, below=3)
    assert fields.array("scores", of=float) == [0, -1.5]  # an integer is a number
    with pytest.raises(HerdError, match=r"ids must be an array of integers, got bool True at index 2$"):
        fields.array("ids", of=int)  # a boolean is not
    with pytest.raises(HerdError, match=r"tokens must be an array of strings, got int 7 at index 1$"):
        fields.array("tokens", of=str)
    assert fields.array("absent", [], of=str) == []
