"""Deprecated alias of :mod:`herd.kernels.build`, where herd's C++ kernels are built and loaded."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

from herd.kernels.build import (
    AVX512F_FLAGS,
    SWITCH,
    NativeLibrary,
    cached_library,
    compile_command,
    compiled_library,
    cpu_has,
    load,
)

warnings.warn("herd.native moved to herd.kernels.build", DeprecationWarning, stacklevel=2)

__all__ = [
    "AVX512F_FLAGS",
    "SWITCH",
    "cached_library",
    "compile_command",
    "compiled_library",
    "cpu_has",
    "load",
    "load_once",
]


def load_once(
    answer: list[bool],
    source: Path,
    flags: list[str],
    cpu_flags: tuple[str, ...],
    register: Callable[[], None],
) -> bool:
    """Deprecated: a :class:`~herd.kernels.build.NativeLibrary`'s ``available``, its answer kept in
    ``answer`` instead of the library."""
    if not answer:
        answer.append(NativeLibrary(source, flags, cpu_flags, register).available())
    return answer[0]
