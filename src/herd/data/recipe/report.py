"""``herd data stats``: a build's manifest as text tables and a PNG chart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from herd.data.checks import expect, expect_key
from herd.data.errors import DataInputError
from herd.data.stats import StepStats
from herd.io.plot import pyplot, save_png
from herd.io.token_shards import MANIFEST
from herd.paths import contained

# The folder of a build's output that holds the tokenizer of its token shards (the manifest's "tokenizer").
TOKENIZER_DIR = "tokenizer"


def load_manifest(directory: str | Path) -> dict[str, Any]:
    """The ``manifest.json`` of a build directory, its structure checked (see :func:`check_manifest`)."""
    path = Path(directory) / MANIFEST
    try:
        manifest = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise DataInputError(f"{path}: no manifest (run `herd data build` first)") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataInputError(f"{path}: unreadable manifest ({exc})") from None
    check_manifest(manifest, path)
    return manifest


def check_manifest(manifest: Any, path: Path) -> None:
    """Raise a :class:`DataInputError` naming the key when ``manifest`` lacks what the tables and chart read.

    That is: ``sources`` (per source ``weight``, ``epochs``, ``documents`` and
    optional ``sampled_documents``, ``tokens``, ``bytes``, ``val_documents``,
    ``val_tokens``), ``steps`` (per source a list of step stats), ``splits``
    (per split and source a list of ``shards`` naming their ``tokens`` and
    ``index`` files), and the optional ``tokenizer`` folder and
    ``documents_only`` table of strings.
    """
    expect(manifest, dict, str(path))
    if "tokenizer" in manifest:
        expect(manifest["tokenizer"], str, f"{path}: tokenizer")
    for key, value in expect(manifest.get("documents_only", {}), dict, f"{path}: documents_only").items():
        expect(value, str, f"{path}: documents_only.{key}")
    for name, source in expect(manifest.get("sources", {}), dict, f"{path}: sources").items():
        where = f"{path}: sources.{name}"
        expect(source, dict, where)
        for key, kind in (("weight", float), ("epochs", float), ("documents", int)):
            expect_key(source, key, kind, where)
        for key in ("sampled_documents", "tokens", "bytes", "val_documents", "val_tokens"):
            if key in source:
                expect(source[key], int, f"{where}.{key}")
    for name, steps in expect(manifest.get("steps", {}), dict, f"{path}: steps").items():
        for i, step in enumerate(expect(steps, list, f"{path}: steps.{name}")):
            StepStats.from_dict(step, f"{path}: steps.{name}[{i}]")
    for split, sources in expect(manifest.get("splits", {}), dict, f"{path}: splits").items():
        for name, entry in expect(sources, dict, f"{path}: splits.{split}").items():
            where = f"{path}: splits.{split}.{name}"
            for i, shard in enumerate(expect_key(expect(entry, dict, where), "shards", list, where)):
                expect(shard, dict, f"{where}.shards[{i}]")
                for key in ("tokens", "index"):
                    expect_key(shard, key, str, f"{where}.shards[{i}]")


def manifest_shards(manifest: dict[str, Any], path: Path) -> list[Path]:
    """The token and index files a checked manifest lists, each refused unless inside its directory."""
    root = path.parent
    return [
        contained(root, shard[key], path)
        for sources in manifest.get("splits", {}).values()
        for entry in sources.values()
        for shard in entry["shards"]
        for key in ("tokens", "index")
    ]


def format_tables(manifest: dict[str, Any]) -> str:
    """Per-source counts (tokens and the validation split's counts when there are any), then per-step
    in/kept/dropped-by-reason lines, then where the tokenizer is or, without one, what was made."""
    sources = manifest.get("sources", {})
    columns = [("weight", 8, ".3f"), ("epochs", 8, ".2f"), ("documents", 12, ",")]
    if any("tokens" in s for s in sources.values()):
        columns += [("sampled_documents", 12, ","), ("tokens", 14, ","), ("bytes", 14, ",")]
    if any("val_documents" in s for s in sources.values()):
        columns += [("val_documents", 10, ","), ("val_tokens", 12, ",")]
    titles = {"sampled_documents": "sampled", "val_documents": "val docs", "val_tokens": "val tokens"}
    lines = [f"recipe {manifest.get('recipe', '?')}", ""]
    lines.append(f"{'source':<16}" + "".join(f"{titles.get(key, key):>{width}}" for key, width, _ in columns))
    for name, s in sources.items():
        lines.append(
            f"{name:<16}" + "".join(f"{s.get(key, 0):>{width}{kind}}" for key, width, kind in columns)
        )
    lines += ["", f"{'source':<16}{'step':<24}{'in':>10}{'kept':>10}  dropped"]
    for name, steps in manifest.get("steps", {}).items():
        for step in steps:
            dropped = ", ".join(f"{reason} {n:,}" for reason, n in step["dropped"].items()) or "-"
            lines.append(f"{name:<16}{step['name']:<24}{step['docs_in']:>10,}{step['kept']:>10,}  {dropped}")
    if "tokenizer" in manifest:
        lines += ["", f"tokenizer: {manifest['tokenizer']}/ (the one that made the token ids)"]
    if "documents_only" in manifest:
        made = manifest["documents_only"]
        lines += [
            "",
            f"documents only: {made.get('documents', 'documents/')}; token shards: {made.get('token_shards', 'none')}",
            f"to pack token shards: {made.get('next', 'give herd data build a --tokenizer')}",
        ]
    return "\n".join(lines)


def draw_png(manifest: dict[str, Any], path: Path) -> Path:
    """Tokens per source and drops per step as a PNG at ``path``."""
    plt = pyplot()
    sources = manifest.get("sources", {})
    steps = [
        (f"{src}:{s['name']}", sum(s["dropped"].values()))
        for src, st in manifest["steps"].items()
        for s in st
    ]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, max(3, 0.3 * len(steps) + 1)))
    left.barh(list(sources), [s.get("tokens", s["documents"]) for s in sources.values()])
    left.set_title(
        "tokens per source" if any("tokens" in s for s in sources.values()) else "documents per source"
    )
    right.barh([n for n, _ in steps], [d for _, d in steps], color="tab:red")
    right.set_title("documents dropped per step")
    fig.tight_layout()
    return save_png(fig, path)
