"""``python -m herd``: the same command line as the ``herd`` console script.

The guard matters: the data pipeline's worker processes are spawned, and a
spawned child imports the parent's ``__main__`` module under another name.
"""

from __future__ import annotations

import sys

from herd.console import main

if __name__ == "__main__":
    sys.exit(main())
