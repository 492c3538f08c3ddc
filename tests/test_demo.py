"""``make demo`` end to end, shortened to a few pretraining steps."""

from __future__ import annotations

from pathlib import Path

import pytest

from herd.demo import main


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    assert main(["--out", str(tmp_path / "demo"), "--steps", "3", "--vocab-size", "512"]) == 0
    report = (tmp_path / "demo" / "report.md").read_text()
    for section in ("## Data", "## Tokenizer", "## Pretraining", "## Samples", "SmolLM2"):
        assert section in report
    assert "Paris" in report  # SmolLM2's greedy answer, loaded from its GGUF by herd
    assert (tmp_path / "demo" / "pretrain" / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "demo" / "data_stats.png").is_file()
