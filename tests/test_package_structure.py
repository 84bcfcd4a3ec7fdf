"""The package layout's rules, checked on the source so they stay true.

Read as text (``ast``), never imported: an import cycle is found whether or not it happens to
work at run time. Every ``import haltguard.x`` counts, at the top of a module or inside a
function, because a function-level import is how a cycle usually hides.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src" / "haltguard"

DOMAINS = ("incidents", "security", "responders", "detection", "status", "notify", "drill",
           "reports", "gateway", "impact")
"""The operations domains and the venue's runtime: the packages ``web/`` must not import."""

ENTRY_SCRIPTS = (SOURCE / "db" / "migrations",)
"""Scripts a tool runs by path, never imported by haltguard: Alembic's ``env.py`` and the
revisions. Like the CLI they are an entry point, so ``env.py`` may ask ``app/config.py`` for
the database a bare ``alembic`` command should open; they are left out of the import graph."""


def _modules() -> list[tuple[Path, ast.Module]]:
    return [(path, ast.parse(path.read_text(encoding="utf-8"), str(path)))
            for path in sorted(SOURCE.rglob("*.py"))]


def _package_of(path: Path) -> str:
    parts = path.relative_to(SOURCE).parts
    return parts[0] if len(parts) > 1 else ""


def _imported_packages(tree: ast.Module) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        found += [(name.split(".")[1], node.lineno) for name in names
                  if name.startswith("haltguard.") and name.count(".") >= 1]
    return found


def _package_graph() -> dict[str, dict[str, list[str]]]:
    """package → imported package → where (``file:line``)."""
    graph: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path, tree in _modules():
        if any(path.is_relative_to(script) for script in ENTRY_SCRIPTS):
            continue
        package = _package_of(path)
        for imported, line in _imported_packages(tree):
            if imported != package:
                graph[package][imported].append(f"{path.relative_to(SOURCE)}:{line}")
    return graph


def _cycles(graph: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """The strongly connected components of more than one package (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in list(graph):
        if node not in index:
            visit(node)
    return components


def test_no_import_cycle_between_packages() -> None:
    graph = _package_graph()
    described = []
    for component in _cycles(graph):
        edges = [f"  {source} -> {target} ({', '.join(graph[source][target][:2])})"
                 for source in component for target in component if target in graph[source]]
        described.append(" <-> ".join(component) + "\n" + "\n".join(edges))
    assert not described, "import cycles between packages:\n" + "\n".join(described)


def test_the_venue_imports_nothing_of_the_rest() -> None:
    graph = _package_graph()
    assert set(graph.get("venue", {})) <= {"common"}, dict(graph["venue"])


def test_web_holds_only_shared_http_plumbing() -> None:
    graph = _package_graph()
    reached = {package: where for package, where in graph.get("web", {}).items()
               if package in DOMAINS or package == "app"}
    assert not reached, f"web/ imports domains: {reached}"


def test_http_exceptions_stay_in_the_web_layer() -> None:
    users = []
    for path, tree in _modules():
        if _package_of(path) == "web":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id == "HTTPException":
                users.append(f"{path.relative_to(SOURCE)}:{node.lineno}")
            elif isinstance(node, ast.alias) and node.name.endswith("HTTPException"):
                users.append(f"{path.relative_to(SOURCE)}")
    assert not users, f"HTTPException outside web/: {sorted(set(users))}"
