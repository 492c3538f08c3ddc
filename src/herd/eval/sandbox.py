"""Run untrusted Python (a model's generated code) in a sandboxed subprocess, never in herd's own process.

Code benchmarks (HumanEval and MBPP, Code Llama §3 and the Llama 2/3 papers)
score a completion by running it with its unit tests. Generated code may loop
forever, exhaust memory, fork without end, open network connections or write
files, so each program runs in a fresh ``python -I`` (isolated mode: no
``PYTHON*`` variables, no user site, no script folder on ``sys.path``) started
through a small launcher that confines it before ``exec``:

- a new temporary folder is its cwd, ``HOME`` and ``TMPDIR``, deleted afterwards,
  and the environment is scrubbed (no proxies, no ``PYTHONPATH``);
- its own session and process group, killed as a group at the timeout;
- resource limits set in the child before ``exec``: ``RLIMIT_AS`` (memory),
  ``RLIMIT_CPU``, ``RLIMIT_NPROC``, ``RLIMIT_FSIZE`` and no core files;
- when unprivileged user namespaces work, new user, network and PID
  namespaces: no network device but a downed loopback, an ``RLIMIT_NPROC``
  that counts only the namespace's own processes (the limit counts all of a
  user's processes, so outside a namespace it is set relative to their number),
  and the kernel kills every process of the namespace when its first process
  ends, so a fork bomb's children die with it;
- when herd runs as root (RLIMIT_NPROC does not bind root) the program runs as
  the ``nobody`` user, under an interpreter that user can execute (herd's own
  if its folders are readable, else the system's ``python3``, so only the
  standard library is certain to be there), and cannot write files owned by
  root either; if ``nobody`` can run no interpreter, programs run as root and
  only the PID namespace and the process group stop a fork bomb;
- a preamble makes ``socket.socket`` and friends raise before the program runs.

What is not prevented: without root there is no ``chroot`` or mount namespace
here, so the program sees the whole file system and, when it runs as herd's own
user, can read and write whatever that user can (only when herd is root does the
switch to ``nobody`` keep it out of herd's files); it can write to world-writable
folders such as ``/tmp``. Without user namespaces the network is cut only by the
preamble, which code that imports ``_socket`` afresh can undo. Treat the
sandbox as a guard against accidents of generated code, not against an
adversary.

A program's :class:`Outcome` is ``passed`` (exit code 0), ``failed`` (any other
exit, such as a failing assert), ``timeout`` (wall clock or CPU limit),
``memory`` (a ``MemoryError`` under the memory limit) or ``crashed`` (killed by
a signal); its stdout and stderr are kept only as their last few kilobytes.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import pwd
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from typing import Literal

from herd.errors import HerdError

Status = Literal["passed", "failed", "timeout", "memory", "crashed"]

# Tasks (processes and threads) a program may add: enough for a pool of a few workers, not for a fork bomb.
PROCESS_BUDGET = 32
# The largest file a program may write, and how much of its stdout and stderr is kept (the tail).
FILE_LIMIT_MB = 64
TAIL_BYTES = 8192
# How long to read the pipes after the program ended (a straggler may still hold them open).
DRAIN_SECONDS = 1.0

# Runs with ``python -I -S -c`` as the sandboxed user, single-threaded: namespaces, then a child that is
# PID 1 of the new PID namespace (it reaps orphans), then the program under its resource limits.
_LAUNCHER = r"""
import ctypes, json, os, resource, sys
args = json.loads(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
isolated = libc.unshare(0x10000000 | 0x40000000 | 0x20000000) == 0
budget = args["nproc"]
if not isolated:
    uid = os.getuid()
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and os.stat("/proc/" + entry).st_uid == uid:
                budget += len(os.listdir("/proc/" + entry + "/task"))
        except OSError:
            pass

def code(status):
    value = os.waitstatus_to_exitcode(status)
    return value if value >= 0 else 128 - value

def lower(kind, value):
    hard = resource.getrlimit(kind)[1]
    value = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(kind, (value, value))

init = os.fork()
if init == 0:
    program = os.fork()
    if program == 0:
        try:
            lower(resource.RLIMIT_AS, args["memory"])
            lower(resource.RLIMIT_FSIZE, args["fsize"])
            lower(resource.RLIMIT_CORE, 0)
            lower(resource.RLIMIT_NPROC, budget)
            hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
            cpu = args["cpu"] if hard == resource.RLIM_INFINITY else min(args["cpu"], hard - 1)
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
            os.execv(args["python"], [args["python"], "-I", "-c", args["preamble"]])
        except Exception as exc:
            sys.stderr.write("herd sandbox: cannot start the program: %s\n" % exc)
        os._exit(127)
    while True:
        pid, status = os.wait()
        if pid == program:
            os._exit(code(status))
os._exit(code(os.waitpid(init, 0)[1]))
"""

# Runs in the program's interpreter before the program: no socket can be made, then main.py runs as __main__.
_PREAMBLE = r"""
import _socket, runpy, socket


def _no_network(*args, **kwargs):
    raise PermissionError("network access is disabled in herd's sandbox")


for _module in (_socket, socket):
    for _name in ("socket", "socketpair", "fromfd", "create_connection", "create_server", "getaddrinfo"):
        if hasattr(_module, _name):
            setattr(_module, _name, _no_network)
del _module, _name
runpy.run_path("main.py", run_name="__main__")
"""


@dataclass(frozen=True)
class Outcome:
    """How one program ended: ``passed`` iff it exited with 0; ``stdout``/``stderr`` are the last few KiB."""

    passed: bool
    status: Status
    seconds: float
    stderr: str = ""
    stdout: str = ""


@dataclass(frozen=True)
class Isolation:
    """What confines programs on this machine: the interpreter, the user it runs as, and the namespaces."""

    python: str
    uid: int
    gid: int
    namespaces: bool

    @property
    def other_user(self) -> bool:
        """Whether programs run as a user other than herd's own (herd is root, programs run as nobody)."""
        return self.uid != os.geteuid()


@cache
def isolation() -> Isolation:
    """The sandbox's set-up on this machine, probed once: as root, the first interpreter ``nobody`` can run."""
    if os.geteuid() != 0:
        return Isolation(sys.executable, os.getuid(), os.getgid(), _namespaces(sys.executable, None, None))
    try:
        entry = pwd.getpwnam("nobody")
        uid, gid = entry.pw_uid, entry.pw_gid
    except KeyError:
        uid = gid = 65534
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    system = _environment("/")["PATH"]
    for python in (sys.executable, shutil.which(version, path=system), shutil.which("python3", path=system)):
        if python and _runs(python, uid, gid, "pass"):
            return Isolation(python, uid, gid, _namespaces(python, uid, gid))
    return Isolation(sys.executable, 0, 0, _namespaces(sys.executable, None, None))


def _runs(python: str, uid: int | None, gid: int | None, code: str) -> bool:
    """Whether ``python -I -S -c code`` exits with 0 as user ``uid`` (None: herd's own user)."""
    try:
        done = subprocess.run(
            [python, "-I", "-S", "-c", code],
            user=uid,
            group=gid,
            extra_groups=[] if uid is not None else None,
            cwd="/",
            env=_environment("/"),
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def _namespaces(python: str, uid: int | None, gid: int | None) -> bool:
    """Whether new user, network and PID namespaces can be made (the launcher's first step)."""
    code = "import ctypes,sys; sys.exit(ctypes.CDLL(None).unshare(0x70000000) != 0)"
    return _runs(python, uid, gid, code)


def _environment(folder: str) -> dict[str, str]:
    """The program's whole environment: a plain PATH, a UTF-8 locale, ``folder`` as home and temp, and one
    thread for numerical libraries (their thread pools count against the memory and process limits)."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": folder,
        "TMPDIR": folder,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


def run_program(source: str, *, timeout: float = 10.0, memory_mb: int = 1024) -> Outcome:
    """Run the Python program ``source`` in the sandbox and say how it ended (see the module)."""
    if timeout <= 0:
        raise HerdError(f"sandbox timeout must be > 0 seconds, got {timeout}")
    if memory_mb < 64:
        raise HerdError(f"sandbox memory_mb must be >= 64 (a Python interpreter needs that), got {memory_mb}")
    setup = isolation()
    folder = tempfile.mkdtemp(prefix="herd-sandbox-")
    try:
        with open(os.path.join(folder, "main.py"), "w", encoding="utf-8") as script:
            script.write(source)
        if setup.other_user:
            os.chown(folder, setup.uid, setup.gid)
            os.chown(os.path.join(folder, "main.py"), setup.uid, setup.gid)
        return _run_in(folder, setup, timeout, memory_mb)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_programs(
    sources: Sequence[str], *, timeout: float = 10.0, memory_mb: int = 1024, workers: int = 0
) -> list[Outcome]:
    """:func:`run_program` on each source, ``workers`` at a time (0: one per CPU), outcomes in order."""
    if workers < 0:
        raise HerdError(f"sandbox workers must be >= 0, got {workers}")
    count = workers or os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(lambda s: run_program(s, timeout=timeout, memory_mb=memory_mb), sources))


def _run_in(folder: str, setup: Isolation, timeout: float, memory_mb: int) -> Outcome:
    """Launch the program in ``folder``, collect its output until it ends or ``timeout``, and classify it."""
    args = {
        "python": setup.python,
        "preamble": _PREAMBLE,
        "memory": memory_mb << 20,
        "fsize": FILE_LIMIT_MB << 20,
        "cpu": math.ceil(timeout) + 1,
        "nproc": PROCESS_BUDGET,
    }
    other = setup.other_user
    start = time.monotonic()
    process = subprocess.Popen(
        [setup.python, "-I", "-S", "-c", _LAUNCHER, json.dumps(args)],
        cwd=folder,
        env=_environment(folder),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        user=setup.uid if other else None,
        group=setup.gid if other else None,
        extra_groups=[] if other else None,
    )
    try:
        stdout, stderr, timed_out = _collect(process, start + timeout)
    finally:
        _kill_group(process)
        process.wait()
    seconds = time.monotonic() - start
    out, err = stdout.decode("utf-8", "replace"), stderr.decode("utf-8", "replace")
    status = _status(process.returncode, err, timed_out)
    return Outcome(status == "passed", status, seconds, err, out)


def _collect(process: subprocess.Popen[bytes], deadline: float) -> tuple[bytes, bytes, bool]:
    """The tails of the program's stdout and stderr, and whether ``deadline`` passed before it ended."""
    assert process.stdout is not None and process.stderr is not None
    tails = {process.stdout.fileno(): bytearray(), process.stderr.fileno(): bytearray()}
    with selectors.DefaultSelector() as selector:
        for fd in tails:
            os.set_blocking(fd, False)
            selector.register(fd, selectors.EVENT_READ)
        ended = timed_out = False
        while selector.get_map():
            now = time.monotonic()
            if not ended and process.poll() is not None:
                ended = True
                _kill_group(process)
                deadline = min(deadline, now + DRAIN_SECONDS)
            if now >= deadline:
                timed_out = not ended
                break
            for key, _ in selector.select(min(deadline - now, 0.05)):
                chunk = os.read(key.fd, 1 << 16)
                if not chunk:
                    selector.unregister(key.fd)
                    continue
                tail = tails[key.fd]
                tail += chunk
                del tail[:-TAIL_BYTES]
    return bytes(tails[process.stdout.fileno()]), bytes(tails[process.stderr.fileno()]), timed_out


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the program's whole process group (its launcher, the program and anything they forked)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _status(returncode: int, stderr: str, timed_out: bool) -> Status:
    """The outcome's status from the launcher's exit code (128 + n: the program died of signal n)."""
    if timed_out or returncode == 128 + signal.SIGXCPU:
        return "timeout"
    if returncode == 0:
        return "passed"
    lines = stderr.strip().splitlines()
    if lines and lines[-1].startswith("MemoryError"):
        return "memory"
    if returncode < 0 or returncode > 128:
        return "crashed"
    return "failed"
