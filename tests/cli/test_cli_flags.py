"""One flag vocabulary across the tree: -o/--output, --set, --json, --quiet, --dtype, and old spellings kept.

The structural tests walk every command of ``herd.cli.build_parser()``, so a
command added later with its own spelling of a shared flag fails here; the
others run the commands whose flags are new and check what they print or write.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from gguf import GGMLQuantizationType, GGUFReader
from infer_helpers import tiny_model

import herd.train.loop
from herd.checkpoint.base import CheckpointInfo
from herd.checkpoint.hf import write_hf
from herd.checkpoint.load import model_tensors
from herd.cli import COMMANDS, build_parser, main
from herd.cli.flags import DTYPE_SYNONYMS, FLOAT_DTYPES
from herd.model.build import DTYPES, SYNONYMS
from herd.train.config import PretrainConfig
from herd.train.loop import PretrainResult

ROOT = Path(__file__).resolve().parents[2]
STAGES = (
    "model",
    "tokenizer",
    "checkpoint",
    "data",
    "infer",
    "train",
    "posttrain",
    "eval",
    "scaling",
    "serve",
)
SHARED = {"output": ["-o", "--output"], "overrides": ["--set"], "json": ["--json"], "quiet": ["--quiet"]}


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The path of every runnable command below ``parser`` (``("data", "build")``, ``("convert",)``, ...)."""
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subparsers:
        yield path
    for action in subparsers:
        for name, child in action.choices.items():
            yield from commands(child, (*path, name))


def leaf(path: tuple[str, ...]) -> argparse.ArgumentParser:
    parser = build_parser()
    for name in path:
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    return parser


ALL = sorted(commands(build_parser()))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_tree_has_every_stage_and_no_other() -> None:
    leaves = {p[0] for p in ALL if len(p) == 1}
    assert leaves >= {
        "average",
        "chat",
        "convert",
        "generate",
        "pretrain",
        "sft",
        "rs",
        "rm",
        "dpo",
        "ppo",
        "rlhf",
        "eval",
        "plan",
        "serve",
    }
    assert {p[0] for p in ALL} == leaves | {"data", "gatt", "model", "scaling", "tokenizer"}
    assert {p[0] for p in ALL} == {c.name for c in COMMANDS}


@pytest.mark.parametrize("path", ALL, ids=[" ".join(p) for p in ALL])
def test_shared_flags_have_one_spelling(path: tuple[str, ...]) -> None:
    """Whatever a command calls an output, overrides, JSON or quiet, it spells it the shared way."""
    for action in leaf(path)._actions:
        if action.dest in SHARED and action.option_strings:
            assert action.option_strings == SHARED[action.dest], (path, action.option_strings)
        if action.dest in ("json", "quiet"):
            assert isinstance(action, argparse._StoreTrueAction), (path, action.dest)
        if "--dtype" in action.option_strings:
            assert action.metavar.startswith("{fp32,bf16,fp16"), (path, action.metavar)


@pytest.mark.parametrize("path", ALL, ids=[" ".join(p) for p in ALL])
def test_help_explains(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    """Every command says what it does beyond its one-line summary, and --help exits 0."""
    with pytest.raises(SystemExit) as exit_:
        main([*path, "--help"])
    assert exit_.value.code == 0
    assert leaf(path).description and leaf(path).description in capsys.readouterr().out.replace("\n", " ")


def test_dtype_names_are_the_librarys() -> None:
    """herd.cli.flags writes the dtype names out (a parser is built without PyTorch): herd.model.build's."""
    assert tuple(DTYPES) == FLOAT_DTYPES
    assert set(DTYPE_SYNONYMS) == {*SYNONYMS, "f32", "f16"}
    for name, dtype in SYNONYMS.items():
        assert DTYPES[DTYPE_SYNONYMS[name]] == dtype, name
    assert DTYPES[DTYPE_SYNONYMS["f32"]] == DTYPES["fp32"] and DTYPES[DTYPE_SYNONYMS["f16"]] == DTYPES["fp16"]


def test_stage_packages_hold_no_command_line_code() -> None:
    for stage in STAGES:
        for path in (ROOT / "src" / "herd" / stage).rglob("*.py"):
            assert "argparse" not in path.read_text(), path
            assert path.name != "cli.py", path


@pytest.mark.parametrize("module", ["herd", "herd.cli"])
def test_python_dash_m_runs_the_command_line(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", module, "model", "presets"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "llama3.1-405b" in result.stdout.split()


def test_old_output_spellings_work_but_are_not_shown(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(
        ["tokenizer", "train", "a.txt", "--out", "tok", "--style", "llama3", "--vocab-size", "9"]
    )
    assert args.output == Path("tok")
    assert build_parser().parse_args(["data", "stats", "d", "--png", "c.png"]).output == Path("c.png")
    with pytest.raises(SystemExit):
        main(["tokenizer", "train", "--help"])
    assert "--out " not in capsys.readouterr().out


@pytest.fixture
def tiny_hf(tmp_path: Path) -> Path:
    model = tiny_model("llama2-tiny")
    return write_hf(tmp_path / "hf", CheckpointInfo(model.config), model_tensors(model))


def test_convert_dtype_vocabulary(tiny_hf: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """fp16 and GGUF's own f16 are one name; q8_0 exists only for gguf, and asking hf for it writes nothing."""
    # The tiny checkpoint has no tokenizer: its GGUFs are written without a vocabulary (--no-vocab).
    code, out, err = run(
        capsys, "convert", str(tiny_hf), str(tmp_path / "m.gguf"), "--to", "gguf", "--no-vocab"
    )
    assert code == 0, err
    for dtype in ("fp16", "F16"):
        gguf = tmp_path / f"{dtype}.gguf"
        code, out, err = run(
            capsys,
            "convert",
            str(tiny_hf),
            str(gguf),
            "--to",
            "gguf",
            "--dtype",
            dtype,
            "--json",
            "--no-vocab",
        )
        assert code == 0, err
        assert json.loads(out) == {
            "source": str(tiny_hf),
            "output": str(gguf),
            "format": "gguf",
            "dtype": "fp16",
            "tokenizer": None,
        }
        types = {t.name: t.tensor_type for t in GGUFReader(gguf).tensors}
        assert types["blk.0.attn_q.weight"] == GGMLQuantizationType.F16
    code, out, err = run(
        capsys, "convert", str(tiny_hf), str(tmp_path / "q"), "--to", "hf", "--dtype", "q8_0"
    )
    assert code == 2 and err.strip() == "herd: error: --dtype q8_0: --to hf takes fp32, bf16, fp16"
    assert not (tmp_path / "q").exists()
    code, out, err = run(
        capsys, "convert", str(tiny_hf), str(tmp_path / "b"), "--to", "hf", "--dtype", "bfloat16"
    )
    assert code == 0 and out == f"wrote {tmp_path / 'b'}\n"
    assert json.loads((tmp_path / "b" / "config.json").read_text())["torch_dtype"] == "bfloat16"


def test_tokenizer_encode_and_decode_json(
    llama3_tokenizer_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tok = str(llama3_tokenizer_dir / "tokenizer.model")
    code, out, _ = run(capsys, "tokenizer", "encode", tok, "Hello world", "--json")
    ids = json.loads(out)["ids"]
    assert code == 0 and ids == [9906, 1917]
    code, out, _ = run(capsys, "tokenizer", "encode", tok, "Hello world", "--pieces", "--json")
    assert json.loads(out) == {"ids": ids, "pieces": ["Hello", "Ġworld"]}
    code, out, _ = run(capsys, "tokenizer", "decode", tok, *map(str, ids), "--json")
    assert code == 0 and json.loads(out) == {"text": "Hello world"}


def test_data_build_set_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--set reaches the recipe; build --json and stats --json print the manifest the build wrote."""
    (tmp_path / "in.jsonl").write_text(
        "".join(json.dumps({"text": f"document {i}"}) + "\n" for i in range(4))
    )
    (tmp_path / "r.toml").write_text('[[source]]\nname = "web"\nreader = "jsonl"\ninputs = ["in.jsonl"]\n')
    out_dir = tmp_path / "out"
    code, out, err = run(
        capsys,
        "data",
        "build",
        str(tmp_path / "r.toml"),
        "-o",
        str(out_dir),
        "--set",
        "source[0].weight=3",
        "--json",
    )
    assert code == 0, err
    manifest = json.loads((out_dir / "manifest.json").read_text())
    assert json.loads(out) == manifest and manifest["sources"]["web"]["weight"] == 3
    code, out, err = run(capsys, "data", "stats", str(out_dir), "--json", "-o", str(tmp_path / "chart.png"))
    assert code == 0 and json.loads(out) == manifest
    code, out, err = run(
        capsys, "data", "build", str(tmp_path / "r.toml"), "-o", str(out_dir), "--set", "source[1].weight=3"
    )
    assert code == 2 and "source has 1 entries, no [1]" in err


RESULT = PretrainResult(
    out_dir="runs/x",
    steps=3,
    tokens=3072,
    final_loss=5.25,
    val_loss=None,
    val_bpb=None,
    tokens_per_s=1234.5,
    mfu=0.012,
    goodput=0.9,
    skipped_steps=0,
    rollbacks=0,
    metrics="runs/x/metrics.jsonl",
    extra={"strategy": "none", "world_size": 1, "device": "cpu"},
)


@pytest.fixture
def pretrained(monkeypatch: pytest.MonkeyPatch) -> list[PretrainConfig]:
    """``herd.train.loop.pretrain`` replaced by one that records its config and returns :data:`RESULT`."""
    configs: list[PretrainConfig] = []

    def pretrain(config: PretrainConfig, **kwargs: bool) -> PretrainResult:
        configs.append(config)
        return RESULT

    monkeypatch.setattr(herd.train.loop, "pretrain", pretrain)
    return configs


def test_pretrain_summary_is_for_people_and_json_on_request(
    pretrained: list[PretrainConfig], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(ROOT / "configs" / "pretrain" / "demo.toml")
    code, out, _ = run(capsys, "pretrain", config)
    assert code == 0
    assert out.splitlines()[:3] == [
        "run directory                   runs/x",
        "steps                           3 (3,072 tokens)",
        "final train loss                5.2500",
    ]
    assert "parallelism                     none, 1 process(es) on cpu" in out
    code, out, _ = run(capsys, "pretrain", config, "--json")
    assert json.loads(out) == RESULT.to_dict()
    code, out, _ = run(capsys, "pretrain", config, "-o", str(tmp_path / "2024"), "--quiet", "--json")
    assert pretrained[-1].out_dir == str(tmp_path / "2024") and not pretrained[-1].log.progress
