"""herd.io.compression: its former path in herd.data still imports, with a warning naming the new one."""

from __future__ import annotations

import importlib

import pytest

from herd.io import compression


def test_old_module_path_warns_and_re_exports() -> None:
    old = importlib.import_module("herd.data.io.compression")
    with pytest.warns(DeprecationWarning, match="herd.data.io.compression moved to herd.io.compression"):
        old = importlib.reload(old)
    for name in old.__all__:
        assert getattr(old, name) is getattr(compression, name), name
