"""The import direction of docs/architecture.md: every stage imports only downward, and no cycles.

The layers are read from the ``layers`` block of docs/architecture.md, so the
page and the rule cannot drift apart. Every import in ``src/herd`` counts,
including those inside functions (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "herd"
PAGE = ROOT / "docs" / "architecture.md"


def layers() -> dict[str, int]:
    """Package name → layer number (0 is the ground floor), from the page's ``layers`` block."""
    block = re.search(r"```text layers\n(.*?)```", PAGE.read_text(), re.S)
    assert block, f"{PAGE} has no ```text layers block"
    order: dict[str, int] = {}
    for number, line in enumerate(block.group(1).strip().splitlines()):
        names = line.split(":", 1)[-1].split()
        for name in names:
            order[name] = number
    return order


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The herd modules ``path`` imports (``from herd.x import y`` counts ``herd.x.y`` when it is a module).

    herd uses absolute imports only, so a relative one is reported rather than resolved.
    """
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("herd")}
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{path}:{node.lineno}: relative import; herd imports absolutely"
            if node.module and node.module.startswith("herd"):
                found.add(node.module)
                found |= {f"{node.module}.{a.name}" for a in node.names if _exists(f"{node.module}.{a.name}")}
    return found


def _exists(module: str) -> bool:
    path = SRC.parent.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def stage(module: str) -> str:
    """``herd.data.io.jsonl`` → ``data``; ``herd.errors`` → ``errors``."""
    return module.split(".")[1]


def upward(graph: dict[str, set[str]], order: dict[str, int]) -> list[str]:
    """``a -> b`` for every import from a package to one in a higher layer."""
    return [
        f"{module} -> {target}"
        for module in sorted(graph)
        for target in sorted(graph[module])
        if stage(module) != stage(target) and order[stage(target)] > order[stage(module)]
    ]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of more than one module: modules that import each other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = stack[stack.index(node) :]
            del stack[stack.index(node) :]
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


# The root package is a lazy facade (``herd.load_model`` imports on first use; ``__version__``), not a stage.
MODULES = {module_name(p): p for p in sorted(SRC.rglob("*.py")) if module_name(p) != "herd"}
GRAPH = {name: {m for m in imports(path) if m in MODULES and m != name} for name, path in MODULES.items()}


def test_every_package_has_a_layer() -> None:
    missing = sorted({stage(m) for m in MODULES} - set(layers()))
    assert not missing, f"packages missing from the layers block of {PAGE.name}: {missing}"


def test_imports_go_downward() -> None:
    found = upward(GRAPH, layers())
    assert not found, "imports from a higher layer:\n" + "\n".join(found)


def test_no_import_cycles() -> None:
    assert not cycles(GRAPH), f"modules that import each other: {cycles(GRAPH)}"


def test_the_checks_find_what_they_look_for(tmp_path: Path) -> None:
    """On a made-up graph: model importing train is upward, a three-module loop is a cycle."""
    order = layers()
    graph = {
        "herd.model.x": {"herd.train.loop", "herd.errors"},
        "herd.train.loop": {"herd.model.x"},
        "herd.data.a": {"herd.data.b"},
        "herd.data.b": {"herd.data.c"},
        "herd.data.c": {"herd.data.a"},
    }
    assert upward(graph, order) == ["herd.model.x -> herd.train.loop"]
    assert cycles(graph) == [
        ["herd.data.a", "herd.data.b", "herd.data.c"],
        ["herd.model.x", "herd.train.loop"],
    ]
    probe = tmp_path / "herd" / "tokenizer"
    probe.mkdir(parents=True)
    (probe / "corpus.py").write_text("from herd.data.io import compression\nimport herd.errors\n")
    assert {"herd.data.io", "herd.errors"} <= imports(probe / "corpus.py")
