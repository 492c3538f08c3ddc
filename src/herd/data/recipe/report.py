"""``herd data stats``: a build's manifest as text tables and a PNG chart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from herd.data.errors import DataInputError


def load_manifest(directory: str | Path) -> dict[str, Any]:
    """The ``manifest.json`` of a build directory."""
    path = Path(directory) / "manifest.json"
    try:
        return json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise DataInputError(f"{path}: no manifest (run `herd data build` first)") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataInputError(f"{path}: unreadable manifest ({exc})") from None


def format_tables(manifest: dict[str, Any]) -> str:
    """Per-source counts, then per-step in/kept/dropped-by-reason lines."""
    lines = [f"recipe {manifest.get('recipe', '?')}", ""]
    lines.append(
        f"{'source':<16}{'weight':>8}{'epochs':>8}{'documents':>12}{'sampled':>12}{'tokens':>14}{'bytes':>14}"
    )
    for name, s in manifest.get("sources", {}).items():
        lines.append(
            f"{name:<16}{s['weight']:>8.3f}{s['epochs']:>8.2f}{s['documents']:>12,}"
            f"{s.get('sampled_documents', 0):>12,}{s.get('tokens', 0):>14,}{s.get('bytes', 0):>14,}"
        )
    lines += ["", f"{'source':<16}{'step':<24}{'in':>10}{'kept':>10}  dropped"]
    for name, steps in manifest.get("steps", {}).items():
        for step in steps:
            dropped = ", ".join(f"{reason} {n:,}" for reason, n in step["dropped"].items()) or "-"
            lines.append(f"{name:<16}{step['name']:<24}{step['docs_in']:>10,}{step['kept']:>10,}  {dropped}")
    return "\n".join(lines)


def draw_png(manifest: dict[str, Any], path: Path) -> bool:
    """Tokens per source and drops per step as a PNG; ``False`` when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
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
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
