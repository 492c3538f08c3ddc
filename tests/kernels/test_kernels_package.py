"""``herd.kernels`` sits below the model and inference packages: it imports no other part of herd."""

from __future__ import annotations

import subprocess
import sys


def test_kernels_import_no_other_part_of_herd() -> None:
    """Importing every kernel module loads only ``herd`` itself and ``herd.kernels`` modules."""
    code = (
        "import sys\n"
        "import herd.kernels.attention, herd.kernels.build, herd.kernels.cross_entropy\n"
        "import herd.kernels.quantized_linear\n"
        "print(' '.join(sorted(name for name in sys.modules if name.startswith('herd'))))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert loaded.split() == [
        "herd",
        "herd.kernels",
        "herd.kernels.attention",
        "herd.kernels.build",
        "herd.kernels.cross_entropy",
        "herd.kernels.quantized_linear",
    ]
