"""The ``herd`` console script: Ctrl-C during start-up is exit 130, like Ctrl-C at any later moment.

Python starts, then imports :mod:`herd.cli` (argparse and herd's small
modules; the command modules and PyTorch come later, inside
:func:`herd.cli.main`, which installs its own SIGINT handling). A SIGINT in
this first window would otherwise surface as a ``KeyboardInterrupt``
traceback from inside some import. Until :func:`herd.cli.main` replaces it,
an interrupt prints the same line ``main`` prints and exits 130 at once.
"""

from __future__ import annotations

# The C core of the signal module: importing signal itself builds its enums (enum, functools,
# collections: about 15 ms), time during which Ctrl-C would still be a traceback.
import _signal
import os
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from types import FrameType


def _interrupted(signum: int, frame: FrameType | None) -> None:
    os.write(2, b"herd: error: interrupted\n")
    os._exit(130)


def main() -> int:
    """Import the command line under the start-up handler, then run it (it restores this handler at its end)."""
    _signal.signal(_signal.SIGINT, _interrupted)
    from herd.cli import main as run

    return run(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
