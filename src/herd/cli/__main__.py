"""``python -m herd.cli``: the ``herd`` command line, as torchrun launches it (``torchrun ... -m herd.cli``)."""

from __future__ import annotations

import sys

from herd.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
