"""The package layout is the architecture: imports flow one way, and no module imports in a circle.

docs/architecture.md draws the layers this test enforces. A module may import its own package
and the layers below it, never a layer above or a peer beside it; every import counts, the ones
inside functions and under ``TYPE_CHECKING`` too, because a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "cdrhub"

#: Lowest first. Packages on one layer are peers and do not import each other.
LAYERS: list[set[str]] = [
    {"settings", "errors", "__init__"},
    {"cdr"},
    {"store"},
    {"ops"},
    {"ingest", "pull", "reports", "auth"},
    {"forward"},
    {"alerts"},
    {"web", "api"},
    {"app"},
    {"server"},
    {"cli"},
    {"__main__"},
]
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def _unit(module: str) -> str:
    """``cdrhub.reports.stats`` -> ``reports``; ``cdrhub`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every ``cdrhub`` module this file imports, resolved to module names where possible."""
    found: set[str] = set()
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "cdrhub")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target.split(".")[0] != "cdrhub":
                continue
            for alias in node.names:  # `from cdrhub.reports import stats` imports a module
                candidate = f"{target}.{alias.name}"
                known = _path_of(candidate)
                found.add(candidate if known else target)
    found.discard(_module_name(path))
    return found


def _path_of(module: str) -> Path | None:
    base = SRC.parent.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.exists():
            return path
    return None


MODULES = {_module_name(p): p for p in SRC.rglob("*.py") if "migrations" not in p.parts}


def test_every_package_is_placed_on_a_layer() -> None:
    units = {_unit(m) for m in MODULES}
    assert units <= set(RANK), f"add {sorted(units - set(RANK))} to LAYERS and the docs"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_only_flow_down(module: str) -> None:
    mine = _unit(module)
    upward = sorted(
        target
        for target in _imports(MODULES[module])
        if _unit(target) != mine and RANK[_unit(target)] >= RANK[mine]
    )
    assert not upward, f"{module} imports a layer above it or a peer: {upward}"


def test_no_module_imports_in_a_circle() -> None:
    graph = {m: {t for t in _imports(p) if t in MODULES} for m, p in MODULES.items()}
    done: set[str] = set()

    def visit(node: str, trail: list[str]) -> None:
        if node in trail:
            cycle = [*trail[trail.index(node) :], node]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if node in done:
            return
        for target in sorted(graph[node]):
            visit(target, [*trail, node])
        done.add(node)

    for module in sorted(graph):
        visit(module, [])
