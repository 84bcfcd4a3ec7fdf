"""The drills touch a system only through :class:`DrillSurface`: the drill package imports
nothing of ``haltguard.app`` (app → drill, never back), and the venue process, which the
app starts, imports nothing of the CLI that mounts its command."""

from __future__ import annotations

import ast
from pathlib import Path

import haltguard

SOURCE = Path(haltguard.__file__).parent


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            found.add(node.module)
    return found


def reaching(paths: list[Path], prefix: str) -> dict[str, list[str]]:
    return {str(path.relative_to(SOURCE)): sorted(m for m in imported_modules(path)
                                                  if m == prefix or m.startswith(prefix + "."))
            for path in paths
            if any(m == prefix or m.startswith(prefix + ".") for m in imported_modules(path))}


def test_the_drill_package_imports_nothing_of_the_app() -> None:
    assert reaching(sorted((SOURCE / "drill").rglob("*.py")), "haltguard.app") == {}


def test_the_app_imports_nothing_of_the_cli() -> None:
    assert reaching(sorted((SOURCE / "app").rglob("*.py")), "haltguard.cli") == {}
