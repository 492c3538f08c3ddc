"""A run's out_dir: a new run never writes over an old one; --overwrite and --resume; leftovers of killed runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import losses, tiny_config_dict, write_toml
from herd.cli import main
from herd.errors import CheckpointError, ConfigError, HerdError
from herd.train import checkpointing
from herd.train.config import config_from_dict
from herd.train.loop import Trainer, pretrain
from herd.train.metrics import METRICS_FILE, MetricsLogger, read_metrics


def _exit_code(argv: list[str]) -> int | str | None:
    """``herd.cli.main``'s exit status, returned or (for argparse's flag errors) raised as SystemExit."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def _snapshot(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_a_new_run_refuses_an_out_dir_that_holds_a_run(dataset_dir: Path, run_copy: Path) -> None:
    before = _snapshot(run_copy)
    config = config_from_dict(tiny_config_dict(dataset_dir, run_copy, train={"steps": 2}))
    with pytest.raises(ConfigError, match=rf"out_dir {run_copy} already holds a run .*--resume.*--overwrite"):
        pretrain(config)
    assert _snapshot(run_copy) == before
    # metrics.jsonl alone (a run killed before its first checkpoint) is a run too
    for _, path in checkpointing.list_checkpoints(run_copy):
        path.rename(run_copy / path.name)
    with pytest.raises(ConfigError, match=r"already holds a run \(metrics\.jsonl"):
        pretrain(config)


def test_overwrite_removes_only_the_old_runs_files(dataset_dir: Path, run_copy: Path) -> None:
    mine = [
        run_copy / "notes.txt",
        run_copy / "checkpoints" / "README",
        run_copy / "tensorboard" / "mine.txt",
    ]
    for path in mine:
        path.parent.mkdir(exist_ok=True)
        path.write_text("not herd's\n")
    old_events = run_copy / "tensorboard" / "events.out.tfevents.1.host"
    old_events.write_bytes(b"old run")
    pretrain(config_from_dict(tiny_config_dict(dataset_dir, run_copy, train={"steps": 2})), overwrite=True)
    assert sorted(losses(run_copy)) == [1, 2]
    assert [p.name for _, p in checkpointing.list_checkpoints(run_copy)] == ["step_00000002"]
    assert all(path.read_text() == "not herd's\n" for path in mine)
    assert not old_events.exists()


def test_resume_needs_a_checkpoint(dataset_dir: Path, tmp_path: Path) -> None:
    config = config_from_dict(tiny_config_dict(dataset_dir, tmp_path / "run"))
    with pytest.raises(CheckpointError, match=r"no checkpoint to resume from; run without --resume"):
        pretrain(config, resume=True)
    with pytest.raises(ConfigError, match="exclude each other"):
        pretrain(config, resume=True, overwrite=True)


def test_a_crash_before_the_first_checkpoint_restarts_from_step_0(
    dataset_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The crash restart resumes "if a checkpoint exists": here none does, and the run starts over."""
    pretrain(config_from_dict(tiny_config_dict(dataset_dir, tmp_path / "full")))
    original = Trainer.train_step
    crashed: list[int] = []

    def crash_once(self: Trainer) -> tuple[float, float, float]:
        if self.step == 2 and not crashed:
            crashed.append(self.step)
            raise RuntimeError("simulated node failure")
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", crash_once)
    raw = tiny_config_dict(dataset_dir, tmp_path / "run", fault={"max_restarts": 1})
    result = pretrain(config_from_dict(raw))
    assert crashed == [2] and result.restarts == 1
    assert losses(tmp_path / "run") == losses(tmp_path / "full")


def test_leftovers_of_a_killed_run_are_removed(dataset_dir: Path, run_copy: Path) -> None:
    checkpoints = run_copy / "checkpoints"
    killed_save = checkpoints / ".step_00000099.tmp"
    killed_save.mkdir()
    (killed_save / "__0_0.distcp").write_bytes(b"partial")
    killed_write = run_copy / f".{METRICS_FILE}.tmp"
    killed_write.write_text('{"step": 1')
    (checkpoints / "notes.txt").write_text("kept\n")
    pretrain(config_from_dict(tiny_config_dict(dataset_dir, run_copy, train={"steps": 6})), resume=True)
    assert not killed_save.exists() and not killed_write.exists()
    assert (checkpoints / "notes.txt").read_text() == "kept\n"


def test_a_checkpoint_moved_aside_by_a_killed_resave_is_put_back(run_copy: Path) -> None:
    """Saving a step again moves the old copy to .step_N.old for an instant; a kill then must not lose it."""
    step = checkpointing.latest_checkpoint(run_copy)
    files = sorted(p.name for p in step.iterdir())
    step.rename(step.with_name(f".{step.name}.old"))
    checkpointing.clean_temporaries(run_copy)
    assert sorted(p.name for p in step.iterdir()) == files
    assert [p.name for p in step.parent.iterdir()] == [step.name]


def test_resuming_a_finished_run_saves_its_last_step_again_in_place(
    dataset_dir: Path, run_copy: Path
) -> None:
    step = checkpointing.latest_checkpoint(run_copy)
    before = (step / "trainer.json").read_text()
    result = pretrain(
        config_from_dict(tiny_config_dict(dataset_dir, run_copy, train={"steps": 4})), resume=True
    )
    assert result.steps == 4
    assert [p.name for p in step.parent.iterdir()] == [step.name]  # replaced, no .old left
    assert (step / "trainer.json").read_text() != before  # the new copy: its wall time moved on


def test_metrics_log_drops_a_line_cut_short_and_names_a_corrupt_one(tmp_path: Path) -> None:
    path = tmp_path / METRICS_FILE
    records = [{"step": 1, "loss": 4.5}, {"step": 2, "loss": 4.25}, {"step": 3, "loss": 4.0}]
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"step": 4, "lo')
    logger = MetricsLogger(
        tmp_path, total_steps=8, start_step=2, enabled=True, progress=False, tensorboard=False
    )
    logger.close()
    assert read_metrics(path) == records[:2]
    assert [p.name for p in tmp_path.iterdir()] == [METRICS_FILE]  # no temporary left
    path.write_text('{"step": 1}\nnot json\n')
    with pytest.raises(HerdError, match=rf"{METRICS_FILE}:2: not a metrics record"):
        read_metrics(path)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--resume"], "no checkpoint to resume from"),
        (["--resume", "--overwrite"], "argument --overwrite: not allowed with argument --resume"),
        (["--max-restarts", "-1"], "argument --max-restarts: must be 0 or more, got -1"),
        (["--max-restarts", "two"], "argument --max-restarts: 'two' is not an integer"),
    ],
)
def test_cli_start_errors_are_one_line(
    dataset_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    config = write_toml(tmp_path / "c.toml", tiny_config_dict(dataset_dir, tmp_path / "run"))
    assert _exit_code(["pretrain", str(config), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and err[-1].startswith(("herd: error:", "herd pretrain: error:"))
    assert not any(line.startswith("Traceback") for line in err)
