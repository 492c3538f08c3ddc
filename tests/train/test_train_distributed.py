"""CPU processes (torchrun, gloo): DDP, FSDP2, tensor parallelism and FSDP2 × TP follow the single-process loss curve; DCP resharding.

Tolerance: the data-parallel runs see exactly the same global batches and
start from the same weights; only the order in which gradients are summed
differs (per-process sums, then an all-reduce), so losses agree up to float32
rounding compounded over the steps: 1e-4 relative.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest

from conftest import losses, run_herd, tiny_config_dict, write_toml
from herd.train import checkpointing
from herd.train.config import config_from_dict
from herd.train.distributed import init_runtime
from herd.train.loop import pretrain

TOLERANCE = 1e-4
STEPS = 8


@pytest.fixture(scope="module")
def single_run(dataset_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[int, float]:
    """The reference: one process (this one), 2 micro-batches of 4 per step."""
    out = tmp_path_factory.mktemp("single") / "run"
    pretrain(config_from_dict(tiny_config_dict(dataset_dir, out, train={"steps": STEPS})))
    return losses(out)


def _assert_close(got: dict[int, float], expected: dict[int, float]) -> None:
    assert sorted(got) == sorted(expected)
    for step, loss in expected.items():
        assert got[step] == pytest.approx(loss, rel=TOLERANCE), step


@pytest.mark.slow
@pytest.mark.parametrize(
    ("parallel", "strategy"),
    [({"strategy": "ddp"}, "ddp"), ({"strategy": "fsdp"}, "fsdp"), ({"tp": 2}, "none")],
    ids=["ddp", "fsdp", "tensor-parallel"],
)
def test_two_processes_match_one(
    dataset_dir: Path, tmp_path: Path, single_run: dict[int, float], parallel: dict, strategy: str
) -> None:
    raw = tiny_config_dict(dataset_dir, tmp_path / "run", train={"steps": STEPS}, parallel=parallel)
    out = run_herd("pretrain", str(write_toml(tmp_path / "c.toml", raw)), "--json", nproc=2)
    assert f'"strategy": "{strategy}"' in out.stdout and '"world_size": 2' in out.stdout
    _assert_close(losses(tmp_path / "run"), single_run)


@pytest.mark.slow
def test_fsdp_with_tensor_parallel_on_four_processes_matches_one(
    dataset_dir: Path, tmp_path: Path, single_run: dict[int, float]
) -> None:
    """The 2-D layout of GPU clusters (Llama 3 §3.3.2): FSDP2 over 2 data-parallel ranks × TP of 2."""
    raw = tiny_config_dict(dataset_dir, tmp_path / "run", train={"steps": STEPS}, parallel={"tp": 2})
    out = run_herd("pretrain", str(write_toml(tmp_path / "c.toml", raw)), "--json", nproc=4)
    assert '"strategy": "fsdp"' in out.stdout and '"world_size": 4' in out.stdout
    _assert_close(losses(tmp_path / "run"), single_run)


@pytest.mark.slow
def test_fsdp_checkpoint_resumes_on_one_process(
    dataset_dir: Path, tmp_path: Path, single_run: dict[int, float]
) -> None:
    """A sharded (DCP) checkpoint written by 2 FSDP processes, resumed by 1 process."""
    out = tmp_path / "run"
    raw = tiny_config_dict(
        dataset_dir, out, train={"steps": STEPS}, parallel={"strategy": "fsdp"}, checkpoint={"keep": 3}
    )
    config = write_toml(tmp_path / "c.toml", raw)
    run_herd("pretrain", str(config), nproc=2)
    first, *later = [p for _, p in checkpointing.list_checkpoints(out)]
    assert sorted(f.name for f in first.iterdir() if f.suffix == ".distcp") == [
        "__0_0.distcp",
        "__1_0.distcp",
    ]
    for path in later:
        shutil.rmtree(path)
    pretrain(config_from_dict(raw), resume=True)
    _assert_close(losses(out), single_run)


@pytest.mark.slow
@pytest.mark.parametrize("parallel", [{"strategy": "fsdp"}, {"tp": 2}], ids=["fsdp", "tensor-parallel"])
def test_sharded_tied_embeddings_match_one_process(dataset_dir: Path, tmp_path: Path, parallel: dict) -> None:
    """Sharded runs build on the meta device and allocate their shards; tied embeddings stay one parameter."""
    sections = {"train": {"steps": 4}, "model": {"tie_embeddings": True}}
    pretrain(config_from_dict(tiny_config_dict(dataset_dir, tmp_path / "single", **sections)))
    raw = tiny_config_dict(dataset_dir, tmp_path / "sharded", parallel=parallel, **sections)
    run_herd("pretrain", str(write_toml(tmp_path / "c.toml", raw)), nproc=2)
    _assert_close(losses(tmp_path / "sharded"), losses(tmp_path / "single"))


@pytest.mark.parametrize(("rank", "shown"), [("0", 1), ("1", 0)])
def test_library_warnings_show_on_rank_0_only(monkeypatch: pytest.MonkeyPatch, rank: str, shown: int) -> None:
    """Every process runs the same code: rank 0 shows a library's warning once for all of them."""
    monkeypatch.setenv("RANK", rank)  # WORLD_SIZE stays 1: no process group is joined
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        init_runtime("cpu")
        warnings.warn("a library's warning", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["a library's warning"] * shown
