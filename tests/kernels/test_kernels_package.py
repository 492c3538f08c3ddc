"""``herd.kernels`` sits below the model and inference packages (it imports no other part of herd), and
the modules' former paths remain as deprecated aliases."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from herd.kernels import build


def test_kernels_import_no_other_part_of_herd() -> None:
    """Importing every kernel module loads only ``herd`` itself and ``herd.kernels`` modules."""
    code = (
        "import sys\n"
        "import herd.kernels.attention, herd.kernels.build, herd.kernels.cross_entropy\n"
        "import herd.kernels.quantized_linear\n"
        "print(' '.join(sorted(name for name in sys.modules if name.startswith('herd'))))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert loaded.split() == [
        "herd",
        "herd.kernels",
        "herd.kernels.attention",
        "herd.kernels.build",
        "herd.kernels.cross_entropy",
        "herd.kernels.quantized_linear",
    ]


@pytest.mark.parametrize(
    ("old", "new", "names"),
    [
        (
            "herd.native",
            "herd.kernels.build",
            ["SWITCH", "AVX512F_FLAGS", "cpu_has", "load", "cached_library"],
        ),
        ("herd.model.cpu_attention", "herd.kernels.attention", ["applies", "causal_attention"]),
        ("herd.model.cpu_cross_entropy", "herd.kernels.cross_entropy", ["applies", "linear_cross_entropy"]),
        (
            "herd.infer.cpu_kernels",
            "herd.kernels.quantized_linear",
            ["INT8_GROUP", "int4_linear", "int8_linear"],
        ),
    ],
)
def test_old_module_paths_warn_and_re_export(old: str, new: str, names: list[str]) -> None:
    """The modules' former paths still import, with a DeprecationWarning naming the new one, and hand out
    the same objects (a kernel module's ``SOURCE``, ``FLAGS`` and ``available`` are its library's)."""
    module = importlib.import_module(old)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {new}"):
        module = importlib.reload(module)
    moved = importlib.import_module(new)
    for name in names:
        assert getattr(module, name) is getattr(moved, name), name
    if hasattr(moved, "LIBRARY"):
        assert module.SOURCE is moved.LIBRARY.source and module.FLAGS is moved.LIBRARY.flags
        assert module.available() == moved.LIBRARY.available()


def test_deprecated_load_once_keeps_its_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """``herd.native.load_once`` still loads and registers once, keeping the answer in the caller's list."""
    native = importlib.import_module("herd.native")
    monkeypatch.setattr(build, "load", lambda source, flags, cpu_flags: True)
    registered: list[int] = []
    answer: list[bool] = []
    for _ in range(2):
        assert native.load_once(answer, Path("k.cpp"), [], (), lambda: registered.append(1)) is True
    assert answer == [True] and registered == [1]
