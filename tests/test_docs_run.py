"""Every shell command and Python snippet in README.md and docs/*.md runs as written.

Each page's ```sh / ```bash blocks, ``$ ...`` lines of ```console blocks and ```python
blocks run in the order they appear, from a workspace that looks like the repository root
(``configs/`` copied, ``data/`` linked, ``runs/`` empty), with the virtual environment's
``herd`` and ``python`` first on ``PATH``. Shell blocks run under ``bash -euo pipefail``, so
any failing command fails the page; a page's Python blocks share one namespace, like a
notebook. The only edit: the pretraining demo config's step batch is shrunk
(:data:`SHORTER`), so the documented runs take seconds rather than minutes on two cores.

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
# The pretraining demo's step batch, shrunk for the test (32 sequences of 128 tokens → 8).
SHORTER = {"configs/pretrain/demo.toml": [("batch_tokens = 4096", "batch_tokens = 1024")]}
# Pages that need another page's outputs run after it, in one workspace.
GROUPS = [
    ("docs/tokenizer.md",),
    ("docs/data.md", "docs/pretrain.md"),
    ("README.md",),  # its pretraining run is a newcomer's first, into the out_dir pretrain.md has used
    ("docs/checkpoints.md",),
    ("docs/inference.md",),
    ("docs/posttrain.md",),
]
FENCE = re.compile(r"\s*```(\S*)")


@dataclass(frozen=True)
class Block:
    """One runnable code block: its page and first line, its language (sh or python) and its text."""

    where: str
    language: str
    text: str


def blocks(page: Path) -> list[Block]:
    """The runnable blocks of ``page`` in order; skipped lines (and their continuations) left out."""
    found: list[Block] = []
    language: str | None = None
    lines: list[str] = []
    start = 0
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        fence = FENCE.match(line)
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
                    found.append(Block(f"{page.relative_to(ROOT)}:{start}", kind, text))
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


@pytest.mark.slow
@pytest.mark.parametrize("pages", GROUPS, ids=lambda pages: "+".join(Path(p).stem for p in pages))
def test_every_documented_command_and_snippet_runs(pages: tuple[str, ...], tmp_path: Path) -> None:
    work = _workspace(tmp_path / "work")
    todo = [(b.where, b.language, b.text) for page in pages for b in blocks(ROOT / page)]
    assert todo, f"{pages}: no runnable blocks found"
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", PYTHONWARNINGS="ignore")
    driver = f"BLOCKS = {todo!r}\n{DRIVER}"
    done = subprocess.run(
        [sys.executable, "-c", driver], cwd=work, env=env, capture_output=True, text=True, timeout=1800
    )
    assert done.returncode == 0, f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"


def test_every_page_is_run_or_has_nothing_to_run() -> None:
    """A new page with code is added to :data:`GROUPS`, so its examples are run too."""
    grouped = {page for group in GROUPS for page in group}
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    missing = [
        str(p.relative_to(ROOT)) for p in pages if blocks(p) and str(p.relative_to(ROOT)) not in grouped
    ]
    assert not missing, f"pages with runnable blocks not in GROUPS: {missing}"
