"""Model averaging (Llama 3 §4.1.5): tensor by tensor, any input format, nothing written on a mismatch.

The reference is the average computed by hand in fp64 from the models' own
tensors; the outputs are read back through herd's readers and transformers.
"""

from __future__ import annotations

import argparse
import json
import shutil
import weakref
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

import herd.posttrain.average as average_module
from herd.checkpoint.base import CheckpointInfo, CheckpointReader
from herd.checkpoint.gguf import write_gguf
from herd.checkpoint.hf import write_hf
from herd.checkpoint.load import load_model, model_tensors, open_checkpoint
from herd.checkpoint.meta import write_meta
from herd.cli.posttrain import register
from herd.errors import CheckpointError, ConfigError, HerdError
from herd.model.build import build_model
from herd.model.presets import get_preset
from herd.model.transformer import Transformer
from herd.posttrain.average import average_checkpoints
from herd.posttrain.reward_model import RewardModel

CONFIG = get_preset("llama2-tiny-gqa").replace(n_layers=1)
PAD = 0


def hand_average(
    models: list[list[tuple[str, torch.Tensor]]], weights: list[float]
) -> dict[str, torch.Tensor]:
    """Σ wᵢ·tensorᵢ / Σ wᵢ for each tensor, in fp64."""
    total = sum(weights)
    names = [name for name, _ in models[0]]
    tensors = [dict(m) for m in models]
    return {n: sum(w / total * t[n].double() for w, t in zip(weights, tensors, strict=True)) for n in names}


def read(path: Path) -> dict[str, torch.Tensor]:
    with open_checkpoint(path) as reader:
        return dict(reader.tensors())


def assert_close(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], atol: float = 1e-6) -> None:
    assert list(got) == list(want)
    for name in want:
        assert (got[name].double() - want[name]).abs().max() <= atol, name


@pytest.fixture(scope="module")
def models() -> list[Transformer]:
    return [build_model(CONFIG, seed=seed) for seed in (1, 2, 3)]


@pytest.fixture(scope="module")
def hf_dirs(models: list[Transformer], tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("inputs")
    return [write_hf(root / f"m{i}", CheckpointInfo(CONFIG), model_tensors(m)) for i, m in enumerate(models)]


@pytest.mark.parametrize("weights", [None, [0.25, 0.75], [1.0, 3.0, 0.0], [2.0, 1.0, 1.0]])
def test_average_equals_the_hand_average(
    weights: list[float] | None, models: list[Transformer], hf_dirs: list[Path], tmp_path: Path
) -> None:
    count = len(weights) if weights else 2
    out = average_checkpoints(hf_dirs[:count], tmp_path / "avg", weights)
    expected = hand_average([model_tensors(m) for m in models[:count]], weights or [1.0] * count)
    assert_close(read(out), expected)
    tokens = torch.randint(0, CONFIG.vocab_size, (1, 12))
    with torch.no_grad():
        hf = AutoModelForCausalLM.from_pretrained(out).eval()
        assert (hf(tokens).logits - load_model(out)(tokens)).abs().max() <= 1e-4


def test_inputs_in_different_formats(models: list[Transformer], hf_dirs: list[Path], tmp_path: Path) -> None:
    """A GGUF and a Meta copy of the same weights average to the same result as the Hugging Face dirs."""
    gguf = write_gguf(tmp_path / "m1.gguf", CheckpointInfo(CONFIG), model_tensors(models[1]))
    meta = write_meta(tmp_path / "m2-meta", CheckpointInfo(CONFIG), model_tensors(models[2]), shards=2)
    out = average_checkpoints([hf_dirs[0], gguf, meta], tmp_path / "avg", [0.5, 0.25, 0.25])
    assert_close(read(out), hand_average([model_tensors(m) for m in models], [0.5, 0.25, 0.25]))
    same = average_checkpoints([hf_dirs[1], gguf], tmp_path / "same", [0.3, 0.7])
    assert_close(read(same), hand_average([model_tensors(models[1])], [1.0]))
    first_gguf = average_checkpoints([gguf, hf_dirs[0]], tmp_path / "from-gguf")
    assert_close(read(first_gguf), hand_average([model_tensors(m) for m in models[:2]], [1.0, 1.0]))


def test_streams_one_tensor_per_input(
    hf_dirs: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every input is read tensor by tensor, and its previous tensor is gone before it is asked for the next."""
    calls: list[tuple[int, str]] = []
    alive: dict[int, weakref.ref[torch.Tensor]] = {}
    opened: list[CheckpointReader] = []
    real_open = average_module.open_checkpoint

    def tracking_open(path: Path | str) -> CheckpointReader:
        reader = real_open(path)
        index, real_get = len(opened), reader.get
        opened.append(reader)

        def get(name: str) -> torch.Tensor:
            previous = alive.get(index)
            assert previous is None or previous() is None, f"input {index} still holds a tensor"
            tensor = real_get(name).clone()
            alive[index] = weakref.ref(tensor)
            calls.append((index, name))
            return tensor

        reader.get = get  # type: ignore[method-assign]
        return reader

    monkeypatch.setattr(average_module, "open_checkpoint", tracking_open)
    average_checkpoints(hf_dirs, tmp_path / "avg")
    names = [name for name, _ in model_tensors(build_model(CONFIG))]
    assert calls == [(i, name) for name in names for i in range(3)]


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_output_dtype(dtype: str, models: list[Transformer], hf_dirs: list[Path], tmp_path: Path) -> None:
    out = average_checkpoints(hf_dirs[:2], tmp_path / "avg", [0.25, 0.75], dtype=dtype)
    torch_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    assert json.loads((out / "config.json").read_text())["torch_dtype"] == str(torch_dtype).removeprefix(
        "torch."
    )
    expected = hand_average([model_tensors(m) for m in models[:2]], [0.25, 0.75])
    got = read(out)
    for name, want in expected.items():
        assert got[name].dtype == torch_dtype and torch.equal(got[name], want.to(torch_dtype)), name


def test_reward_models_average_into_a_reward_model(tmp_path: Path) -> None:
    rms = [RewardModel.random(CONFIG, seed=seed, pad_id=PAD) for seed in (1, 2)]
    paths = [rm.save_pretrained(tmp_path / f"rm{i}") for i, rm in enumerate(rms)]
    out = average_checkpoints(paths, tmp_path / "avg", [1.0, 3.0])
    averaged = RewardModel.from_pretrained(out)
    assert averaged.pad_id == PAD
    expected = hand_average([rm.tensors() for rm in rms], [1.0, 3.0])
    assert_close(dict(averaged.tensors()), expected)
    assert "score.weight" in expected
    other_pad = RewardModel.random(CONFIG, seed=3, pad_id=1).save_pretrained(tmp_path / "pad1")
    with pytest.raises(CheckpointError, match=r"different pad_token_id \(0 vs 1\)"):
        average_checkpoints([paths[0], other_pad], tmp_path / "bad")
    lm = write_hf(tmp_path / "lm", CheckpointInfo(CONFIG), model_tensors(build_model(CONFIG)))
    with pytest.raises(CheckpointError, match=f"only {paths[0]} is a reward model"):
        average_checkpoints([lm, paths[0]], tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_tokenizer_of_the_first_input_is_copied(
    hf_dirs: list[Path], llama3_tokenizer_dir: Path, tmp_path: Path
) -> None:
    first = shutil.copytree(hf_dirs[0], tmp_path / "with-tokenizer")
    shutil.copyfile(llama3_tokenizer_dir / "tokenizer.model", first / "tokenizer.model")
    out = average_checkpoints([first, hf_dirs[1]], tmp_path / "avg")
    assert (out / "tokenizer.model").read_bytes() == (llama3_tokenizer_dir / "tokenizer.model").read_bytes()
    assert not (average_checkpoints([hf_dirs[1], first], tmp_path / "avg2") / "tokenizer.model").exists()


def entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"dim": 32}, r"tensor tok_embeddings.weight has shape \(512, 64\) in {a} but \(512, 32\) in {b}"),
        (
            {"hidden_dim": 96},
            r"tensor layers.0.feed_forward.w1.weight has shape \(\d+, 64\) in {a} but \(96, 64\)",
        ),
        ({"n_layers": 2}, r"tensor layers.1.attention.wq.weight is in {b} but not in {a}"),
        ({"tie_embeddings": True}, r"tensor output.weight is in {a} but not in {b}"),
        ({"rope_theta": 5e5}, r"{a} and {b}: different architectures \(rope_theta 10000.0 vs 500000.0\)"),
    ],
)
def test_mismatched_inputs_are_refused_and_nothing_is_written(
    change: dict, message: str, hf_dirs: list[Path], tmp_path: Path
) -> None:
    config = CONFIG.replace(**change)
    other = write_hf(tmp_path / "other", CheckpointInfo(config), model_tensors(build_model(config)))
    before = entries(tmp_path)
    pattern = message.format(a=hf_dirs[0], b=other)
    with pytest.raises(CheckpointError, match=pattern) as error:
        average_checkpoints([hf_dirs[0], other], tmp_path / "avg")
    assert len(str(error.value).splitlines()) == 1
    assert entries(tmp_path) == before


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ([0.5], "1 given for 2 checkpoints"),
        ([1.0, -0.5], "finite and at least 0, got -0.5"),
        ([0.0, 0.0], "all zero"),
        ([1.0, float("nan")], "finite and at least 0, got nan"),
    ],
)
def test_bad_weights_are_refused(
    weights: list[float], message: str, hf_dirs: list[Path], tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=message):
        average_checkpoints(hf_dirs[:2], tmp_path / "avg", weights)
    assert entries(tmp_path) == []


def test_destination_rules(hf_dirs: list[Path], tmp_path: Path) -> None:
    """As herd convert: an input is never the output, an earlier output is replaced only with force."""
    with pytest.raises(ConfigError, match="at least two checkpoints, got 1"):
        average_checkpoints(hf_dirs[:1], tmp_path / "avg")
    with pytest.raises(HerdError, match="the destination is the source"):
        average_checkpoints(hf_dirs[:2], hf_dirs[1], force=True)
    out = average_checkpoints(hf_dirs[:2], tmp_path / "avg")
    with pytest.raises(HerdError, match="pass --force to replace it"):
        average_checkpoints(hf_dirs[:2], out, [0.1, 0.9])
    average_checkpoints(hf_dirs[:2], out, [0.1, 0.9], force=True)
    users = tmp_path / "users"
    users.mkdir()
    (users / "notes.txt").write_text("mine")
    with pytest.raises(HerdError, match="not a checkpoint herd wrote"):
        average_checkpoints(hf_dirs[:2], users, force=True)
    assert entries(users) == ["notes.txt"] and entries(tmp_path) == ["avg", "users"]


@pytest.fixture
def herd_average(capsys: pytest.CaptureFixture[str]) -> Callable[[list[str]], tuple[int, str]]:
    """Run ``herd average ARGV`` through its own parser: the exit code and stdout."""
    parser = argparse.ArgumentParser(prog="herd")
    register(parser.add_subparsers(dest="command"))

    def run(argv: list[str]) -> tuple[int, str]:
        args = parser.parse_args(["average", *argv])
        return args.func(args), capsys.readouterr().out

    return run


def test_command_line(
    herd_average: Callable[[list[str]], tuple[int, str]],
    models: list[Transformer],
    hf_dirs: list[Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "avg"
    code, text = herd_average([str(out), *map(str, hf_dirs[:2]), "--weights", "1,3", "--quiet"])
    assert code == 0 and text == f"wrote {out}\n"
    assert_close(read(out), hand_average([model_tensors(m) for m in models[:2]], [0.25, 0.75]))
    code, text = herd_average(
        [
            str(out),
            *map(str, hf_dirs[:2]),
            "--weights",
            "1, 3",
            "--dtype",
            "F16",
            "--force",
            "--json",
            "--quiet",
        ]
    )
    assert json.loads(text) == {
        "inputs": list(map(str, hf_dirs[:2])),
        "weights": [0.25, 0.75],
        "output": str(out),
        "dtype": "fp16",
    }
    assert json.loads((out / "config.json").read_text())["torch_dtype"] == "float16"
    with pytest.raises(SystemExit):
        herd_average([str(out), *map(str, hf_dirs[:2]), "--weights", "0.5,x"])
    assert "argument --weights: 'x' is not a number" in capsys.readouterr().err
