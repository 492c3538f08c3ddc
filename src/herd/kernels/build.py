"""Building and loading herd's C++ CPU kernels (the ``*.cpp`` files of :mod:`herd.kernels`).

Each kernel source defines ``torch.ops.herd`` operators. It is compiled on
first use with the C++ compiler that ``torch.compile`` already needs on a CPU
(``$CXX``, default ``g++``), against the installed torch's headers and
libraries, with ``-fopenmp`` so that ``at::parallel_for`` uses every core. The
library is cached per source (with the headers beside it), flags and torch version under
``$XDG_CACHE_HOME/herd`` (default ``~/.cache/herd``), so the ~10 s build
happens once per machine. ``HERD_CPU_KERNELS=0`` turns every kernel off; a
CPU without the instructions a kernel needs, a missing compiler, or one that
fails, leaves the portable PyTorch paths in place (the last two with a
warning).
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

log = logging.getLogger(__name__)

SWITCH = "HERD_CPU_KERNELS"
AVX512F_FLAGS = ["-O3", "-fopenmp", "-mavx512f", "-mfma"]  # the float kernels' instructions


def cpu_has(*flags: str) -> bool:
    """Whether this CPU advertises every one of ``flags`` in ``/proc/cpuinfo`` (Linux x86; else False)."""
    try:
        present = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return False
    return all(flag in present for flag in flags)


def constant_result(fn: Callable[..., bool]) -> Callable[..., bool]:
    """``torch.compiler.assume_constant_result`` without importing ``torch._dynamo`` on every start.

    Compiled code then takes ``fn``'s answer as given, without tracing the build.
    PyTorch's function imports the whole compiler stack (1.5 s) only to set this
    mark on ``fn``; tests/kernels checks the mark is the one PyTorch sets.
    """
    fn._dynamo_marked_constant = True  # type: ignore[attr-defined]
    return fn


@dataclass
class NativeLibrary:
    """One kernel source and what it takes to run: each kernel module's declaration (its ``LIBRARY``).

    ``available`` compiles and loads ``source`` with ``flags`` on its first call, on a CPU that advertises
    every one of ``cpu_flags``, then calls ``register`` (the operators' fake shapes for tracing, their
    autograd formulas) if that succeeded; the answer is kept in ``loaded`` for every later call (tests
    set it to force the kernel's path or PyTorch's).
    """

    source: Path
    flags: list[str]
    cpu_flags: tuple[str, ...]
    register: Callable[[], None]
    loaded: bool | None = None

    @constant_result
    def available(self) -> bool:
        """Whether this source's ``torch.ops.herd`` operators can run here; builds and loads them on the
        first call."""
        if self.loaded is None:
            loaded = load(self.source, self.flags, self.cpu_flags)
            if loaded:
                self.register()
            self.loaded = loaded
        return self.loaded


def load(source: Path, flags: list[str], cpu_flags: tuple[str, ...]) -> bool:
    """Compile ``source`` with ``flags`` (cached) and load its operators; False when it cannot run here."""
    if os.environ.get(SWITCH, "1") == "0" or not cpu_has(*cpu_flags):
        return False
    try:
        torch.ops.load_library(str(compiled_library(source, flags)))
    except (OSError, RuntimeError, subprocess.CalledProcessError) as error:
        # no compiler, one that rejects the flags, or a library that does not load: the PyTorch paths still work
        detail = error
        if isinstance(error, subprocess.CalledProcessError) and error.stderr.strip():
            detail = error.stderr.strip().splitlines()[-1]  # the compiler's last word
        log.warning("herd's CPU kernels (%s) are unavailable (%s); using PyTorch's", source.name, detail)
        return False
    return True


def compiled_library(source: Path, flags: list[str]) -> Path:
    """The shared library for this source, these flags and this torch, compiled if not cached.

    The compiler writes a staging file that is renamed into place (:func:`herd.io.atomic.atomic_file`),
    so processes that build at the same time (test workers) each get a whole library and an
    interrupted build leaves nothing behind (``torch.utils.cpp_extension.load``'s lock file, left
    by an interrupted build, would make every later run wait forever).
    """
    command = compile_command(source, flags)
    library = cached_library(source, command)
    if not library.exists():
        # imported here: importing the kernels loads no other part of herd (the model imports them)
        from herd.io.atomic import atomic_file

        log.info("compiling herd's %s (once; about 10 s)", source.name)
        with atomic_file(library) as partial:
            subprocess.run([*command, "-o", str(partial)], check=True, capture_output=True, text=True)
    return library


def compile_command(source: Path, flags: list[str]) -> list[str]:
    """The compiler's command line, without the output file: torch's headers and libraries, ``flags``."""
    from torch.utils import cpp_extension

    lib_dirs = cpp_extension.library_paths()
    return [
        os.environ.get("CXX", "g++"),
        *flags,
        "-shared",
        "-fPIC",
        "-std=c++17",
        f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}",
        *(f"-I{path}" for path in cpp_extension.include_paths()),
        str(source),
        *(f"-L{path}" for path in lib_dirs),
        *(f"-Wl,-rpath,{path}" for path in lib_dirs),
        "-lc10",
        "-ltorch_cpu",
    ]


def cached_library(source: Path, command: list[str]) -> Path:
    """Where the library built by ``command`` is cached: named by a hash of the source, the headers
    beside it (what it may include), torch's version and the command."""
    headers = [path.read_text() for path in sorted(source.parent.glob("*.h"))]
    digest = hashlib.sha256("\0".join([source.read_text(), *headers, torch.__version__, *command]).encode())
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "herd"
    return cache / f"{source.stem}-{digest.hexdigest()[:16]}.so"
