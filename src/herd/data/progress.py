"""The progress of a data build: one line per source on stderr with documents read and kept, bytes, rate.

A source's documents are read by its tasks, in worker processes
(:mod:`herd.data.executor.local`) or in the build's own. Each task adds what
it read and kept to counters that the build's process shares with its
workers (a ``multiprocessing`` array, handed to spawned workers by the pool's
initializer: they inherit nothing else), at most a few times a second; a
thread of the build's process redraws the line from them. A task whose
completion marker is reused adds what it recorded as documents *reused*, not
read, so the rate is that of the reading done now. Ray tasks share no memory
with the build, so a source run on Ray shows its totals when it ends. While a
source runs the counts are what its tasks have reported; when it ends the
line shows the totals of its merged stats (the documents its reader produced
and their UTF-8 bytes, the documents its last step kept).

On a terminal the line is a live tqdm bar, kept when the source ends; on
anything else (a log file, a pipe) only each source's final line is printed,
so a log holds no carriage-return redraws. ``herd data build --quiet`` prints
none. The thread holds :data:`STDERR_LOCK` while it draws, so that a library
banner silenced at the file-descriptor level (:func:`quiet_native_stderr`,
KenLM's) never swallows a redraw.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TextIO

from herd.data.document import Document
from herd.data.stats import StepStats

# The counters' slots: documents read now, documents kept, bytes read, documents of reused tasks.
READ, KEPT, BYTES, REUSED = range(4)
# How often a task adds to the shared counters, and the line is redrawn (seconds).
INTERVAL = 0.25
LINE = "{desc}: {n_fmt} documents read{postfix} [{elapsed}, {rate_fmt}]"
# The width and height of a terminal that reports 0 (a bare pseudo-terminal): tqdm would cut its line to
# 0 columns and hide it below row 0.
UNLIMITED = 1000
# Held while the progress thread writes to stderr and while fd 2 is redirected.
STDERR_LOCK = threading.Lock()

# This process's view of the counters of the source being built (None: nothing is counted).
_counters: Any = None


def share(counters: Any) -> None:
    """Make ``counters`` (or None) the ones this process's tasks add to; a worker's pool initializer calls it."""
    global _counters
    _counters = counters


def shared() -> Any:
    """The counters this process's tasks add to (None when no progress is shown): what workers must share."""
    return _counters


class TaskMeter:
    """What one task has read and kept since it last added to the shared counters.

    ``counting=False`` adds nothing (a pipeline whose documents another one counted).
    """

    def __init__(self, counting: bool = True) -> None:
        self.counting = counting
        self.pending = [0, 0, 0, 0]
        self.due = time.monotonic() + INTERVAL

    def reading(self, docs: Iterable[Document], stats: StepStats) -> Iterator[Document]:
        """``docs`` as a reader yields them, each counted as read with the bytes its ``stats`` added."""
        seen = stats.bytes_in
        for doc in docs:
            self.pending[READ] += 1
            self.pending[BYTES] += stats.bytes_in - seen
            seen = stats.bytes_in
            self._tick()
            yield doc

    def kept(self) -> None:
        """Count one document the task keeps (writes to its output)."""
        self.pending[KEPT] += 1
        self._tick()

    def reused(self, stats: list[StepStats]) -> None:
        """Count what a task whose completion marker is reused recorded: its reader's and last step's."""
        self.pending[REUSED] += stats[0].kept
        self.pending[BYTES] += stats[0].bytes_in
        self.pending[KEPT] += stats[-1].kept
        self.flush()

    def _tick(self) -> None:
        if time.monotonic() >= self.due:
            self.flush()

    def flush(self) -> None:
        """Add the pending counts to the shared counters (nothing when none are shared)."""
        self.due = time.monotonic() + INTERVAL
        if _counters is None or not self.counting or not any(self.pending):
            return
        with _counters.get_lock():
            for slot, count in enumerate(self.pending):
                _counters[slot] += count
        self.pending = [0, 0, 0, 0]


@dataclass(frozen=True)
class Counts:
    """What a source's line shows."""

    read: int = 0
    kept: int = 0
    num_bytes: int = 0
    reused: int = 0

    @property
    def postfix(self) -> str:
        """The part of the line after the documents read (tqdm puts ", " before it)."""
        from tqdm import tqdm

        reused = [f"{self.reused} reused from an earlier build"] if self.reused else []
        return ", ".join([*reused, f"{self.kept} kept", tqdm.format_sizeof(self.num_bytes, "B")])


class SourceProgress:
    """The progress line of one source on ``stream``: ``with SourceProgress(name):`` around its run.

    Inside the block the counters are shared (see the module) and, on a
    terminal, redrawn a few times a second; :meth:`finish` sets the totals the
    last line shows. ``enabled=False`` shows and counts nothing.
    """

    def __init__(self, name: str, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.name = name
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.totals: Counts | None = None
        self.counters: Any = None
        self.bar: Any = None
        self.start = time.monotonic()
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None

    def __enter__(self) -> SourceProgress:
        if not self.enabled:
            return self
        self.counters = multiprocessing.get_context("spawn").Array("q", 4)
        share(self.counters)
        self.start = time.monotonic()
        if _is_terminal(self.stream):
            from tqdm import tqdm

            self.bar = tqdm(
                desc=self.name,
                unit=" docs",
                bar_format=LINE,
                file=self.stream,
                postfix=Counts().postfix,
                **({} if _columns(self.stream) else {"ncols": UNLIMITED, "nrows": UNLIMITED}),
            )
            self.thread = threading.Thread(target=self._redraw_until_stopped, daemon=True)
            self.thread.start()
        return self

    def finish(self, read: int, kept: int, num_bytes: int) -> None:
        """The source's totals (documents its reader produced, reused ones included), which its last line shows."""
        reused = self.counts().reused if self.enabled else 0
        self.totals = Counts(read - reused, kept, num_bytes, reused)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self.enabled:
            return
        share(None)
        self.stopped.set()
        if self.thread is not None:
            self.thread.join()
        counts = self.totals or self.counts()
        if self.bar is not None:
            self._draw(counts)
            self.bar.close()
        elif exc is None:
            from tqdm import tqdm

            elapsed = time.monotonic() - self.start
            line = tqdm.format_meter(
                counts.read,
                None,
                elapsed,
                prefix=self.name,
                unit=" docs",
                bar_format=LINE,
                postfix=counts.postfix,
            )
            print(line, file=self.stream, flush=True)

    def counts(self) -> Counts:
        """The counters as they stand, read without their lock: a worker terminated while holding it
        (Ctrl-C) must not hang the build, and a line may lag a task's last addition."""
        values = self.counters.get_obj()
        return Counts(values[READ], values[KEPT], values[BYTES], values[REUSED])

    def _redraw_until_stopped(self) -> None:
        while not self.stopped.wait(INTERVAL):
            self._draw(self.counts())

    def _draw(self, counts: Counts) -> None:
        with STDERR_LOCK:
            self.bar.set_postfix_str(counts.postfix, refresh=False)
            self.bar.update(counts.read - self.bar.n)


def _columns(stream: TextIO) -> int:
    """The width of the terminal ``stream`` writes to; 0 when it does not say (a pseudo-terminal may not)."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return 0


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


@contextlib.contextmanager
def quiet_native_stderr(banner: re.Pattern[str]) -> Iterator[None]:
    """Run the block with file descriptor 2 sent to a temporary file, then pass on every line of it
    that ``banner`` does not match in full.

    For native libraries (KenLM) that print a loading banner from C++, where
    ``sys.stderr`` cannot catch it. Their warnings and error messages are not
    banners, so they still reach stderr, after the block (an exception included).
    """
    sys.stderr.flush()
    with STDERR_LOCK, tempfile.TemporaryFile() as capture:
        saved = os.dup(2)
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", "replace")
            kept = [line for line in text.splitlines() if line.strip() and not banner.fullmatch(line.strip())]
            if kept:
                print("\n".join(kept), file=sys.stderr, flush=True)
