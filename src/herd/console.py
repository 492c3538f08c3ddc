"""The ``herd`` console script: Ctrl-C during start-up is exit 130, like Ctrl-C at any later moment.

Importing the command tree (argparse, then PyTorch for most commands) takes a
noticeable time on a loaded machine. A SIGINT in that window would otherwise
surface as a ``KeyboardInterrupt`` traceback from inside some library's import.
Until :func:`herd.cli.main` is running, with its own handling, an interrupt
prints the same line it prints and exits 130 at once.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType


def _interrupted(signum: int, frame: FrameType | None) -> None:
    os.write(2, b"herd: error: interrupted\n")
    os._exit(130)


def main() -> int:
    """Import the command tree under the start-up handler, then run it with Python's own."""
    previous = signal.signal(signal.SIGINT, _interrupted)
    from herd.cli import main as run

    signal.signal(signal.SIGINT, previous)
    return run(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
