"""``make demo`` end to end, shortened to a few pretraining steps; its configs come from its flags."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from herd.demo import main

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the configs are found through the flags, not the source tree
    (tmp_path / "data").symlink_to(CONFIGS.parent / "data")  # post-training's data paths are the cwd's
    argv = ["-o", "demo", "--steps", "3", "--vocab-size", "512", "--pairs", "2", "--rs-prompts", "1"]
    configs = ["--data-recipe", str(CONFIGS / "data" / "demo.toml")]
    configs += ["--pretrain-config", str(CONFIGS / "pretrain" / "demo.toml")]
    # The post-training configs as shipped, but for rejection sampling's sample count and length (4 samples
    # of 48 tokens → 2 of 16, in each of its 2 rounds): what is checked is that every stage runs and reports.
    posttrain = shutil.copytree(CONFIGS / "posttrain", tmp_path / "posttrain-configs")
    rs = (posttrain / "rs-demo.toml").read_text()
    for old, new in (("samples = 4", "samples = 2"), ("max_new_tokens = 48", "max_new_tokens = 16")):
        assert old in rs, f"rs-demo.toml no longer says {old!r}"
        rs = rs.replace(old, new)
    (posttrain / "rs-demo.toml").write_text(rs)
    configs += ["--posttrain-configs", str(posttrain)]
    configs += ["--eval-task", str(CONFIGS / "eval" / "arc_easy.toml"), "--arc-questions", "3"]
    assert main([*argv, *configs]) == 0
    demo = tmp_path / "demo"
    report = (demo / "report.md").read_text()
    sections = ("## Data", "## Tokenizer", "## Pretraining", "## Samples", "SmolLM2", "## Post-training")
    for section in (*sections, "## Evaluation"):
        assert section in report
    assert "Paris" in report  # SmolLM2's greedy answer, loaded from its GGUF by herd
    assert "herd serve demo/pretrain/hf" in report and "SmolLM2-135M-Instruct.Q4_1.gguf" in report
    for png in (
        "pretrain/loss.png",
        "data_stats.png",
        "posttrain/dpo/rewards.png",
        "posttrain/rs/reward_vs_k.png",
        "eval/mc.png",
        "eval/tiny/results.png",
    ):
        assert (demo / png).read_bytes()[:4] == b"\x89PNG", png
    rm = json.loads((demo / "posttrain/rm/summary.json").read_text())
    dpo = json.loads((demo / "posttrain/dpo/summary.json").read_text())
    rs = json.loads((demo / "posttrain/rs/summary.json").read_text())
    assert rm["pairs"] == {"train": 2, "val": 2} and dpo["pairs"] == {"train": 2, "val": 2}
    assert len(rs["rounds"]) == 2 and len((demo / "posttrain/rs/sft.jsonl").read_text().splitlines()) == 1
    for model in ("tiny", "smollm2"):
        scores = json.loads((demo / "eval" / model / "results.json").read_text())
        assert [t["task"] for t in scores["tasks"]] == ["heldout_bits_per_byte", "arc_easy"]
        assert scores["tasks"][0]["n"] >= 1 and scores["tasks"][1]["n"] == 3
        bpb = scores["tasks"][0]["metrics"]["bits_per_byte"]["value"]
        assert 0 < bpb < 16 and f"{bpb:.3f}" in report
    row = f"| DPO ({dpo['pairs']['train']} pairs, {dpo['steps']} steps) | reward accuracy (2 pairs) | 0.0% |"
    assert row in report


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
