"""The sandbox that runs generated code: each way a program can end, and each thing it must not be able to do
(fork without end, outlive its run, reach the network, touch herd's files, kill herd)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from herd.errors import HerdError
from herd.eval.sandbox import TAIL_BYTES, isolation, run_program, run_programs

THREAD_VARIABLES = ["OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"]


def survivors(folder: str) -> list[psutil.Process]:
    """Processes still running in the sandbox folder ``folder`` (the program's children would be)."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.cwd().startswith(folder):
                found.append(process)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            pass
    return found


def test_a_passing_program_passes_with_its_output() -> None:
    outcome = run_program("print('hello from the sandbox')")
    assert outcome.passed and outcome.status == "passed"
    assert outcome.stdout == "hello from the sandbox\n"
    assert 0 < outcome.seconds < 10


def test_a_failing_assert_fails_with_its_traceback() -> None:
    outcome = run_program("def f():\n    return 1\nassert f() == 2, 'wrong'")
    assert not outcome.passed and outcome.status == "failed"
    assert "AssertionError: wrong" in outcome.stderr


def test_an_infinite_loop_times_out_on_time() -> None:
    start = time.monotonic()
    outcome = run_program("while True:\n    pass", timeout=1.0)
    assert outcome.status == "timeout" and not outcome.passed
    assert 1.0 <= outcome.seconds < 2.0
    assert time.monotonic() - start < 2.5


def test_a_fork_bomb_fails_and_leaves_no_process_behind() -> None:
    outcome = run_program(
        "import os\nprint(os.getcwd(), flush=True)\nwhile True:\n    os.fork()", timeout=5.0
    )
    assert outcome.status in ("failed", "crashed"), outcome
    assert outcome.seconds < 5.0, outcome  # stopped by the process limit, not by the timeout
    assert (
        subprocess.run([sys.executable, "-c", "print(1)"], capture_output=True, check=True).stdout == b"1\n"
    )
    folder = outcome.stdout.splitlines()[0]
    assert "herd-sandbox-" in folder and survivors(folder) == []


def test_children_that_outlive_the_program_are_killed() -> None:
    source = (
        "import os, time\nprint(os.getcwd(), flush=True)\n"
        "for _ in range(3):\n    if os.fork() == 0:\n        time.sleep(60)\nprint('done')"
    )
    outcome = run_program(source, timeout=5.0)
    assert outcome.passed and outcome.stdout.endswith("done\n")
    assert outcome.seconds < 5.0
    folder = outcome.stdout.splitlines()[0]
    deadline = time.monotonic() + 2
    while survivors(folder) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "herd-sandbox-" in folder and survivors(folder) == []


def test_a_memory_hog_runs_out_of_memory() -> None:
    outcome = run_program("block = bytearray(512 * 1024 * 1024)\nprint(len(block))", memory_mb=256)
    assert outcome.status == "memory" and not outcome.passed
    assert "MemoryError" in outcome.stderr


def test_the_network_is_unreachable() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(0.5)
        port = server.getsockname()[1]
        # The same program reaches the server from outside the sandbox: the test can fail.
        connect = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2).close()"
        subprocess.run([sys.executable, "-c", connect], check=True)
        server.accept()[0].close()
        outcome = run_program(connect)
        assert outcome.status == "failed"
        assert "network access is disabled" in outcome.stderr
        with pytest.raises(TimeoutError):
            server.accept()


def test_the_network_namespace_has_only_loopback() -> None:
    if not isolation().namespaces:
        pytest.skip("user namespaces are not available here: only the socket preamble cuts the network")
    outcome = run_program("print(open('/proc/net/dev').read())")
    interfaces = {line.split(":")[0].strip() for line in outcome.stdout.splitlines()[2:] if ":" in line}
    assert interfaces == {"lo"}


def test_writing_outside_the_folder(tmp_path: Path) -> None:
    """As root, programs run as ``nobody`` and cannot write herd's files; as a plain user they can (no chroot)."""
    target = tmp_path / "escaped.txt"
    outcome = run_program(f"open({str(target)!r}, 'w').write('escaped')")
    if isolation().other_user:
        assert outcome.status == "failed" and "PermissionError" in outcome.stderr
        assert not target.exists()
    else:
        assert outcome.passed and target.read_text() == "escaped"


def test_the_program_runs_in_a_fresh_folder_that_is_deleted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", "/nowhere")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    source = "import os, sys\nprint(os.getcwd())\nprint(sorted(os.environ))\nprint(sys.flags.isolated)"
    outcome = run_program(source)
    folder, names, isolated = outcome.stdout.splitlines()
    assert folder.startswith("/") and "herd-sandbox-" in folder
    assert not Path(folder).exists()
    assert "PYTHONPATH" not in eval(names) and "HTTPS_PROXY" not in eval(names)
    assert eval(names) == sorted(["HOME", "TMPDIR", "PATH", "LANG", "LC_ALL", *THREAD_VARIABLES])
    assert isolated == "1"


def test_herds_process_survives_a_program_that_kills() -> None:
    for source in (
        f"import os, signal\nos.kill({os.getpid()}, signal.SIGKILL)",
        "import os, signal\nos.killpg(0, signal.SIGKILL)",
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nraise SystemExit(3)",
    ):
        outcome = run_program(source, timeout=5.0)
        assert not outcome.passed
        assert outcome.seconds < 5.0
    assert run_program("pass").passed


def test_a_signal_is_a_crash() -> None:
    outcome = run_program("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)")
    assert outcome.status == "crashed"


def test_output_keeps_only_its_tail() -> None:
    outcome = run_program("for i in range(200000):\n    print(i)")
    assert outcome.passed
    assert len(outcome.stdout) <= TAIL_BYTES
    assert outcome.stdout.endswith("199998\n199999\n")


def test_run_programs_keeps_the_order() -> None:
    sources = ["pass", "assert False", "while True: pass", "print(3)", "raise SystemExit(1)", "x = 1"]
    outcomes = run_programs(sources, timeout=1.0, memory_mb=512, workers=3)
    assert [o.status for o in outcomes] == ["passed", "failed", "timeout", "passed", "failed", "passed"]


def test_bad_limits_are_refused() -> None:
    with pytest.raises(HerdError, match="timeout"):
        run_program("pass", timeout=0)
    with pytest.raises(HerdError, match="memory_mb"):
        run_program("pass", memory_mb=8)
    with pytest.raises(HerdError, match="workers"):
        run_programs(["pass"], workers=-1)
