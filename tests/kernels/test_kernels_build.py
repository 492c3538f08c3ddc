"""Building herd's C++ kernels: a failing compiler, the cache key, the off switch."""

from __future__ import annotations

from pathlib import Path

import pytest

from herd.kernels import attention, build
from herd.kernels.build import NativeLibrary


def test_failed_build_warns_and_leaves_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A compiler that fails (here ``false``) means the PyTorch paths, a warning naming the source,
    and no partial library in the cache."""
    monkeypatch.setenv("CXX", "false")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert build.load(attention.LIBRARY.source, attention.LIBRARY.flags, ()) is False
    assert "herd's CPU kernels (attention.cpp) are unavailable" in caplog.text
    assert list((tmp_path / "herd").iterdir()) == []


def test_switch_and_missing_instructions_skip_the_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """``HERD_CPU_KERNELS=0`` or a CPU without the instructions: no compiler runs at all."""
    monkeypatch.setenv("CXX", "/nonexistent/compiler")  # it would fail loudly if called
    assert build.load(attention.LIBRARY.source, attention.LIBRARY.flags, ("no_such_cpu_flag",)) is False
    monkeypatch.setenv(build.SWITCH, "0")
    assert build.load(attention.LIBRARY.source, attention.LIBRARY.flags, ()) is False


def test_library_registers_once_and_keeps_the_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first ``available`` loads and registers; later calls return the kept answer without loading
    again. A failed load registers nothing."""
    loads: list[Path] = []
    monkeypatch.setattr(build, "load", lambda source, flags, cpu_flags: loads.append(source) or True)
    registered: list[int] = []
    library = NativeLibrary(Path("k.cpp"), [], (), lambda: registered.append(1))
    for _ in range(3):
        assert library.available() is True
    assert loads == [Path("k.cpp")] and registered == [1] and library.loaded is True
    monkeypatch.setattr(build, "load", lambda source, flags, cpu_flags: False)
    assert NativeLibrary(Path("k.cpp"), [], (), lambda: registered.append(1)).available() is False
    assert registered == [1]


def test_cache_key_follows_source_headers_and_flags(tmp_path: Path) -> None:
    """Editing the source, a header beside it, or the flags names another library (a rebuild);
    nothing changed, the same one (a cache hit)."""
    source, header = tmp_path / "k.cpp", tmp_path / "k.h"
    source.write_text('#include "k.h"\n')
    header.write_text("// one\n")

    def name(flags: list[str]) -> str:
        return build.cached_library(source, build.compile_command(source, flags)).name

    first = name(["-O3"])
    assert name(["-O3"]) == first and first.startswith("k-") and first.endswith(".so")
    assert name(["-O2"]) != first
    header.write_text("// two\n")
    second = name(["-O3"])
    assert second != first
    source.write_text('#include "k.h"\n// edited\n')
    assert name(["-O3"]) not in (first, second)


def test_constant_result_sets_the_mark_pytorch_sets() -> None:
    """herd marks NativeLibrary.available as PyTorch's assume_constant_result would, without importing dynamo."""
    import torch._dynamo.decorators

    def ours() -> bool:
        return True

    def theirs() -> bool:
        return True

    build.constant_result(ours)
    torch._dynamo.decorators.assume_constant_result(theirs)
    assert vars(ours) == vars(theirs) and vars(theirs)
    assert vars(NativeLibrary.available) == vars(theirs)
