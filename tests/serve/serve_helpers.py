"""Servers for the serving tests on a free loopback port: an in-process uvicorn in a thread, or a real
``herd serve`` process."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn

from herd.serve.app import ServeOptions, create_app
from herd.serve.scheduler import Scheduler

LISTENING = "herd serve: listening on"


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_server(scheduler: Scheduler, options: ServeOptions) -> Iterator[str]:
    """Serve ``scheduler`` at the yielded base URL until the block ends (then drain and stop)."""
    port = free_port()
    config = uvicorn.Config(create_app(scheduler, options), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


@dataclass
class ServerProcess:
    """A running ``herd serve`` process, where it listens and what it printed on stderr."""

    url: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def serving(log_dir: Path, preset: str, *flags: str, startup_s: float = 120) -> Iterator[ServerProcess]:
    """``herd serve PRESET --random FLAGS`` on a free port until the block ends (SIGTERM, then kill)."""
    port = free_port()
    log = log_dir / "stderr.log"
    command = [sys.executable, "-m", "herd", "serve", preset, "--random", "--threads", "1"]
    with log.open("wb") as sink:
        process = subprocess.Popen([*command, "--port", str(port), *flags], stdout=sink, stderr=sink)
    server = ServerProcess(f"http://127.0.0.1:{port}", port, process, log)
    try:
        deadline = time.monotonic() + startup_s
        while LISTENING not in server.stderr():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"herd serve did not start (exit {process.poll()}):\n{server.stderr()[-3000:]}")
            time.sleep(0.1)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
