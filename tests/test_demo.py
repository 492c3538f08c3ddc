"""``make demo`` end to end, shortened to a few pretraining steps; its configs come from its flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from herd.demo import main

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the configs are found through the flags, not the source tree
    argv = ["-o", "demo", "--steps", "3", "--vocab-size", "512"]
    configs = ["--data-recipe", str(CONFIGS / "data" / "demo.toml")]
    configs += ["--pretrain-config", str(CONFIGS / "pretrain" / "demo.toml")]
    assert main([*argv, *configs]) == 0
    report = (tmp_path / "demo" / "report.md").read_text()
    for section in ("## Data", "## Tokenizer", "## Pretraining", "## Samples", "SmolLM2"):
        assert section in report
    assert "Paris" in report  # SmolLM2's greedy answer, loaded from its GGUF by herd
    assert (tmp_path / "demo" / "pretrain" / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "demo" / "data_stats.png").is_file()


@pytest.mark.parametrize("flag", ["--data-recipe", "--pretrain-config"])
def test_a_missing_config_is_one_line_naming_its_flag(
    flag: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Run outside the repository, the default configs are not there: exit 2 before anything is written."""
    monkeypatch.chdir(tmp_path)
    other = "--pretrain-config" if flag == "--data-recipe" else "--data-recipe"
    (tmp_path / "present.toml").write_text("")
    with pytest.raises(SystemExit) as exit_:
        main(["-o", "demo", other, "present.toml"])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1
    assert f"argument {flag}: " in err and "no such file" in err
    assert list(tmp_path.iterdir()) == [tmp_path / "present.toml"]
