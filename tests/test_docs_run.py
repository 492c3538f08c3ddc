"""Every shell command and Python snippet in README.md and docs/*.md runs as written.

Each page's ```sh / ```bash blocks, ``$ ...`` lines of ```console blocks and ```python
blocks run in the order they appear, from a workspace that looks like the repository root
(``configs/`` copied, ``data/`` linked, ``runs/`` empty), with the virtual environment's
``herd`` and ``python`` first on ``PATH``. Shell blocks run under ``bash -euo pipefail``, so
any failing command fails the page; a page's Python blocks share one namespace, like a
notebook. The only edits are :data:`SHORTER`'s, to the workspace's copies of the demo configs
and to a few of the pages' flags: smaller step batches, fewer rows, pairs, samples and tokens,
smaller validation sets, so the documented runs take seconds rather than minutes on two cores;
every command still runs, and as the page has it but for those numbers.

A long page may be run as several cases, one per ``## `` section or group of sections
(``PAGE#Section``, :data:`GROUPS`), each in a workspace of its own, so that pytest-xdist runs
them side by side; a section whose blocks need another's outputs is in the same case.

Lines that cannot run in a test are skipped by prefix (:data:`NOT_RUN`, each with its reason):
``make`` (the test suite is what ``make test`` runs), benchmarks, multi-process or GPU runs
(tests/train covers them), and the paper-scale recipes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# Line prefixes that are not run, with why.
NOT_RUN = {
    "make ": "make test is what runs this test",
    "torchrun ": "multi-process training (tests/train/test_train_distributed.py)",
    "python bench/": "a benchmark (minutes, compared with peers)",
    "python -P bench/": "a benchmark (minutes, compared with peers)",
    "PYTHONPATH=src bench/": "the GPU checks (CUDA only)",
    "python data/samples/paper_recipes.py": "the paper-scale recipes (minutes)",
    "herd data build configs/data/llama1.toml": "the paper-scale recipes (minutes)",
    "herd data build configs/data/llama3.toml": "the paper-scale recipes (minutes)",
}
# Edits for the test, each (old, new), asserted to be there: to the workspace's copy of a config, or
# to a page's text before its blocks are read (the command still runs, on fewer rows or tokens).
SHORTER = {
    # The pretraining demo's step batch: 32 sequences of 128 tokens → 8.
    "configs/pretrain/demo.toml": [("batch_tokens = 4096", "batch_tokens = 1024")],
    # SFT: 1 packed sequence per step instead of 2, validation on 1 sequence instead of 4.
    "configs/posttrain/sft-demo.toml": [
        ("batch_tokens = 512", "batch_tokens = 256"),
        ("val_batches = 4", "val_batches = 1"),
    ],
    # Reward model: 2 pairs per step instead of 8 (the page's run: 8 pairs in 1 step → 2 pairs in 1 step).
    "configs/posttrain/rm-demo.toml": [("batch_tokens = 2048", "batch_tokens = 512")],
    # DPO: 2 rows of 256 tokens per step instead of 4 (the page's run: 4 pairs in 1 step → 2 in 1 step).
    "configs/posttrain/dpo-demo.toml": [("batch_tokens = 1024", "batch_tokens = 512")],
    # Rejection sampling: 2 samples of at most 8 tokens per prompt instead of 4 of 48.
    "configs/posttrain/rs-demo.toml": [
        ("samples = 4", "samples = 2"),
        ("max_new_tokens = 48", "max_new_tokens = 8"),
    ],
    "docs/posttrain.md": [
        (
            "--set data.max_pairs=8 --set data.max_val_pairs=8",
            "--set data.max_pairs=2 --set data.max_val_pairs=2",
        ),
        (
            "--set data.max_pairs=4 --set data.max_val_pairs=2",
            "--set data.max_pairs=2 --set data.max_val_pairs=1",
        ),
        ('France is" --max-new-tokens 8', 'France is" --max-new-tokens 2'),
        # GAtt with and without on SmolLM2: 2 dialogues of 4-token answers and 1 SFT step, not 32, 48 and 16.
        (
            "--limit 32 --categories language --max-new-tokens 48",
            "--limit 2 --categories language --max-new-tokens 4",
        ),
        (
            "--set train.steps=16 --set train.batch_tokens=1024",
            "--set train.steps=1 --set train.batch_tokens=512",
        ),
        (
            "--limit 24 --categories language --max-new-tokens 32",
            "--limit 2 --categories language --max-new-tokens 4",
        ),
    ],
}
# Pages that need another page's outputs run after it, in one workspace; ``PAGE#Section`` is the
# blocks of one ``## `` section. The longest cases come first, so that they start first.
POSTTRAIN = "docs/posttrain.md"
GROUPS = [
    (f"{POSTTRAIN}#SFT",),
    (f"{POSTTRAIN}#Training a reward model",),
    (f"{POSTTRAIN}#DPO",),
    (f"{POSTTRAIN}#Ghost Attention",),  # SmolLM2 samples, fine-tunes and is evaluated, with and without GAtt
    ("docs/data.md", "docs/pretrain.md"),
    (f"{POSTTRAIN}#Rejection sampling",),
    ("README.md",),  # its pretraining run is a newcomer's first, into the out_dir pretrain.md has used
    ("docs/inference.md",),
    (f"{POSTTRAIN}#PPO", f"{POSTTRAIN}#The iterative loop (herd rlhf)"),  # herd rlhf on PPO's tiny models
    (f"{POSTTRAIN}#Reward model head", f"{POSTTRAIN}#Model averaging"),
    ("docs/checkpoints.md",),
    ("docs/tokenizer.md",),
    ("docs/eval.md",),
    ("docs/scaling.md",),
    ("docs/serve.md",),  # starts a server in the background and stops it at the end
]
FENCE = re.compile(r"\s*```(\S*)")


@dataclass(frozen=True)
class Block:
    """One runnable code block: its page and first line, its language (sh or python), its text and
    the ``## `` section it is in ("" before the first)."""

    where: str
    language: str
    text: str
    section: str = ""


def blocks(page: Path) -> list[Block]:
    """The runnable blocks of ``page`` in order; skipped lines (and their continuations) left out."""
    found: list[Block] = []
    language: str | None = None
    lines: list[str] = []
    start = 0
    section = ""
    name, source = str(page.relative_to(ROOT)), page.read_text(encoding="utf-8")
    for old, new in SHORTER.get(name, []):
        assert old in source, f"{name} no longer says {old!r}: update SHORTER"
        source = source.replace(old, new)
    for number, line in enumerate(source.splitlines(), 1):
        fence = FENCE.match(line)
        if language is None and line.startswith("## "):
            section = line[3:].strip()
            continue
        if fence and language is None:
            language, lines, start = fence.group(1), [], number
            continue
        if fence:
            kind = {"sh": "sh", "bash": "sh", "shell": "sh", "console": "console", "python": "python"}.get(
                language
            )
            if kind == "console":
                lines = [text.strip()[2:] for text in lines if text.strip().startswith("$ ")]
                kind = "sh"
            if kind:
                text = "\n".join(_runnable(lines)) if kind == "sh" else "\n".join(lines)
                if text.strip():
                    found.append(Block(f"{page.relative_to(ROOT)}:{start}", kind, text, section))
            language = None
            continue
        if language is not None:
            lines.append(line)
    return found


def _runnable(lines: list[str]) -> list[str]:
    """Shell lines without the commands of :data:`NOT_RUN` (a skipped command's ``\\`` continuations too)."""
    kept: list[str] = []
    skipping = False
    for line in lines:
        if not skipping:
            skipping = any(line.strip().startswith(prefix) for prefix in NOT_RUN)
        if not skipping:
            kept.append(line)
        skipping = skipping and line.rstrip().endswith("\\")
    return kept


def _workspace(root: Path) -> Path:
    """A directory that looks like the repository root for the docs' commands."""
    shutil.copytree(ROOT / "configs", root / "configs")
    (root / "data").symlink_to(ROOT / "data")
    for name, edits in SHORTER.items():
        if name.endswith(".md"):
            continue  # a page: edited as its blocks are read
        path = root / name
        text = path.read_text(encoding="utf-8")
        for old, new in edits:
            assert old in text, f"{name} no longer says {old!r}: update SHORTER"
            text = text.replace(old, new)
        path.write_text(text, encoding="utf-8")
    return root


DRIVER = """
import subprocess, sys
namespace = {"__name__": "__main__"}
for where, language, text in BLOCKS:
    print(f"--- {where} ({language})", flush=True)
    if language == "sh":
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", text])
        if done.returncode:
            sys.exit(f"{where}: the shell block exited {done.returncode}")
    else:
        exec(compile(text, where, "exec"), namespace)
"""


def selected(entry: str) -> list[Block]:
    """The blocks of a :data:`GROUPS` entry: a whole page, or one section of it (``PAGE#Section``)."""
    page, _, section = entry.partition("#")
    found = blocks(ROOT / page)
    if not section:
        return found
    assert section in {b.section for b in found}, f"{page} has no section {section!r} with runnable blocks"
    return [b for b in found if b.section == section]


def _case_id(entries: tuple[str, ...]) -> str:
    names = []
    for entry in entries:
        page, _, section = entry.partition("#")
        names.append(Path(page).stem + (f"-{section.lower().replace(' ', '-')}" if section else ""))
    return "+".join(names)


@pytest.mark.slow
@pytest.mark.parametrize("pages", GROUPS, ids=_case_id)
def test_every_documented_command_and_snippet_runs(pages: tuple[str, ...], tmp_path: Path) -> None:
    work = _workspace(tmp_path / "work")
    todo = [(b.where, b.language, b.text) for entry in pages for b in selected(entry)]
    assert todo, f"{pages}: no runnable blocks found"
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", PYTHONWARNINGS="ignore")
    driver = f"BLOCKS = {todo!r}\n{DRIVER}"
    done = subprocess.run(
        [sys.executable, "-c", driver], cwd=work, env=env, capture_output=True, text=True, timeout=1800
    )
    assert done.returncode == 0, f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"


def test_every_page_is_run_or_has_nothing_to_run() -> None:
    """A new page (or section of a page run by sections) with code is added to :data:`GROUPS`."""
    entries = {entry for group in GROUPS for entry in group}
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    missing = []
    for page in pages:
        name = str(page.relative_to(ROOT))
        if name in entries:
            continue
        missing += [f"{name}#{b.section}" for b in blocks(page) if f"{name}#{b.section}" not in entries]
    assert not missing, f"pages or sections with runnable blocks not in GROUPS: {sorted(set(missing))}"
