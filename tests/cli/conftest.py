"""The command-line tests run commands of every stage; some build their inputs with a stage's test helpers.

The test directories are not packages: a test imports a helper module by name
(``from infer_helpers import tiny_model``), so the directories holding the
helpers it needs are put on ``sys.path`` here.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "infer"))
