"""The house drawn from its imports: geo/ never imports api/ or frontend/, and no module
imports itself back through others (a circle makes the code hard to see and to change)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("api", "geo", "frontend")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports() -> dict[str, set[str]]:
    """Return, per module of ours, the modules of ours it imports (anywhere in the file)."""
    modules = {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            found: list[str] = []
            if isinstance(node, ast.Import):
                found = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            targets.update(f for f in found if f in modules and f != name)
        graph[name] = targets
    return graph


def test_geo_never_imports_api_or_frontend() -> None:
    offenders = {module: sorted(t for t in targets if t.split(".")[0] in ("api", "frontend"))
                 for module, targets in _imports().items() if module.startswith("geo")}
    assert {m: t for m, t in offenders.items() if t} == {}


def test_no_import_circles() -> None:
    graph = _imports()
    edges = graph
    circles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                circles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert circles == []


def test_the_test_sees_the_whole_house() -> None:
    graph = _imports()
    # if the parser missed the code, the two tests above would pass vacuously
    assert len(graph) > 60
    assert "geo.runs.lifecycle" in graph and "geo.runs.components" in graph["geo.runs.lifecycle"]
