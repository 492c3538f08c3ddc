"""The newcomer's path, end to end through the ``herd`` command line, with no hand edits between stages.

data build (documents) → tokenizer train → data build --tokenizer (token shards, the tokenizer
saved beside them) → pretrain (vocabulary size from the manifest) → SIGKILL mid-run →
pretrain --resume with no --set (the saved config) → convert to GGUF (the tokenizer travels
with the weights) → generate from that GGUF, and llama.cpp loads the same file and agrees on
the tokens and the greedy continuation.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN_SETS = [
    "--set", "train.steps=12",
    "--set", "checkpoint.every=4",
    "--set", "train.batch_tokens=1024",
    "--set", "log.val_batches=1",
]  # fmt: skip


def herd(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``herd ARGS`` from the repository root, as a user would type it."""
    result = subprocess.run(
        [sys.executable, "-m", "herd", *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    if check and result.returncode != 0:
        raise AssertionError(f"herd {' '.join(map(str, args))} exited {result.returncode}:\n{result.stderr}")
    return result


@pytest.mark.slow
def test_data_to_tokenizer_to_pretrain_to_resume_to_gguf_to_generate(tmp_path: Path) -> None:
    data, tok, run, gguf = tmp_path / "data", tmp_path / "tok", tmp_path / "run", tmp_path / "model.gguf"
    first = herd("data", "build", "configs/data/demo.toml", "-o", data, "--quiet")
    assert "documents only" in first.stdout and not (data / "tokens").exists()

    documents = sorted((data / "documents").glob("*/00000.jsonl.gz"))
    herd("tokenizer", "train", *documents, "--style", "llama3", "--vocab-size", "1024", "-o", tok)
    herd("data", "build", "configs/data/demo.toml", "-o", data, "--tokenizer", tok, "--quiet")
    manifest = json.loads((data / "manifest.json").read_text())
    assert manifest["tokenizer"] == "tokenizer" and manifest["vocab_size"] > 1024

    # Pretrain with no model.vocab_size (it comes from the manifest); kill -9 after the first checkpoint.
    args = [sys.executable, "-m", "herd", "pretrain", "configs/pretrain/demo.toml", "-o", str(run)]
    args += ["--set", f"data.path={data}", *RUN_SETS, "--quiet"]
    child = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (run / "checkpoints" / "step_00000004").is_dir():
        assert child.poll() is None, f"pretrain ended before its first checkpoint: {child.stderr.read()}"
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.2)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert not (run / "summary.json").exists()

    # The same command plus --resume, and nothing else: the run continues with its saved config.
    resumed = herd("pretrain", "configs/pretrain/demo.toml", "-o", run, "--resume", "--json")
    assert "not applied from configs/pretrain/demo.toml" in resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["steps"] == 12
    saved = json.loads((run / "hf" / "config.json").read_text())
    assert saved["vocab_size"] == manifest["vocab_size"]

    # The export carries the tokenizer, so the GGUF has a vocabulary without --tokenizer.
    herd("convert", run / "hf", gguf, "--to", "gguf", "--quiet")
    ours = herd("generate", gguf, "--prompt", "The rust book", "--max-new-tokens", "8", "--greedy", "--json")
    completion = json.loads(ours.stdout)

    llama_cpp = pytest.importorskip("llama_cpp")
    reference = llama_cpp.Llama(model_path=str(gguf), n_ctx=64, verbose=False)
    import herd as herd_lib

    tokenizer = herd_lib.load_tokenizer(gguf)
    assert reference.tokenize(b"The rust book", add_bos=False) == tokenizer.encode("The rust book")
    theirs = reference("The rust book", max_tokens=8, temperature=0.0)["choices"][0]["text"]
    assert completion["text"] == theirs
