"""The architecture of common/: each subpackage sits on a layer, and imports point down only
(function-level imports included), so the import graph has no cycles."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

COMMON = REPO / "common"
# Lower number = lower layer. A module may import its own layer's package or a lower one.
LAYERS = {
    "choices": 0, "errors": 0, "files": 0, "options": 0, "signals": 0,
    "inputs": 1, "device": 1,
    "model": 2, "ranks": 2,
    "engine": 3,
    "measure": 4, "outputs": 4,
    "checks": 5, "report": 5,
    "job": 6,
    "cli": 7, "api": 7, "serve": 7,
}


def unit_of(module: str) -> str:
    """'common.engine.batched' -> 'engine'; 'common.errors' -> 'errors'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("common"):
                found.add(target)
                found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("common"))
    return {m for m in found if _exists(m)}


def _exists(module: str) -> bool:
    path = REPO.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def test_every_module_belongs_to_a_layer():
    units = {unit_of(module_name(p)) for p in COMMON.rglob("*.py")} - {"__init__"}
    assert units <= set(LAYERS), f"modules outside any layer: {units - set(LAYERS)}"


def test_imports_point_down_only():
    upward = []
    for path in COMMON.rglob("*.py"):
        source = unit_of(module_name(path))
        if source == "__init__":
            continue  # the package root only re-exports the API, lazily
        for target in imported_modules(path):
            if unit_of(target) != "__init__" and LAYERS[unit_of(target)] > LAYERS[source]:
                upward.append(f"{module_name(path)} imports {target}")
    assert not upward, "\n".join(upward)


def test_no_import_cycles():
    graph = {module_name(p): imported_modules(p) for p in COMMON.rglob("*.py")}
    state: dict[str, int] = {}

    def visit(node, trail):
        if state.get(node) == 1:
            raise AssertionError("import cycle: " + " -> ".join(trail + [node]))
        if state.get(node) == 2:
            return
        state[node] = 1
        for nxt in graph.get(node, ()):
            if nxt != "common":
                visit(nxt, trail + [node])
        state[node] = 2

    for node in graph:
        visit(node, [])


def test_every_subpackage_says_its_job():
    for init in COMMON.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and len(doc) > 60 and "import" in doc.lower(), f"{init}: docstring must say its job and its imports"
