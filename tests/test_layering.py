"""The import rule, checked on the source: ``loop → connectors → storage → policies``, and no circles.

Every module of the four packages is parsed (never imported) and every
``import`` in it is an edge, wherever it stands: at the top, under ``if
TYPE_CHECKING``, in a ``try``, or inside a function (a lazy import is still a
dependency).  A package may import itself and the packages to its right only,
and no chain of imports may lead from a module back to itself.  A package's
``__init__`` is reached only by what names it: Python's loading of a parent
package before its submodule is not an edge.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("loop", "connectors", "storage", "policies")


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    file: str  # relative to the root, with forward slashes
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.source} imports {self.target}"


def module_files(root: Path, packages: tuple[str, ...] = LAYERS) -> dict[str, Path]:
    """Every module of ``packages`` under ``root``, by dotted name (a package by its ``__init__``)."""
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _targets(node: ast.Import | ast.ImportFrom, module: str, path: Path, modules: dict[str, Path]) -> list[str]:
    """The modules of ours that one import statement names (``from p import m`` names ``p.m`` if that is a module)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:  # relative: from the module's own package upwards
            package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
            package = package[: len(package) - (node.level - 1)]
            base = ".".join([*package, base] if base else package)
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
    out = []
    for name in names:
        # `import a.b.c` where a.b.c is ours but not a file of ours (a name in a module): its nearest module.
        while name and name not in modules:
            name = name.rpartition(".")[0]
        if name:
            out.append(name)
    return out


def import_edges(root: Path, packages: tuple[str, ...] = LAYERS) -> list[Edge]:
    """Every import between modules of ``packages``, function-level and ``TYPE_CHECKING`` ones included."""
    modules = module_files(root, packages)
    edges: dict[tuple[str, str, int], Edge] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in _targets(node, module, path, modules):
                    if target != module:  # `from p import a, b` names p.a and p.b once each, p once
                        edges[(module, target, node.lineno)] = Edge(
                            module, target, path.relative_to(root).as_posix(), node.lineno
                        )
    return list(edges.values())


def layer_violations(edges: list[Edge], layers: tuple[str, ...] = LAYERS) -> list[Edge]:
    """The edges that point leftwards (e.g. storage importing connectors)."""
    rank = {name: i for i, name in enumerate(layers)}
    return [e for e in edges if rank[e.target.split(".")[0]] < rank[e.source.split(".")[0]]]


def cycles(edges: list[Edge]) -> list[list[str]]:
    """The import circles: each strongly connected group of two or more modules, sorted (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.source, set()).add(e.target)
        graph.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(start: str) -> None:
        # Iterative, so a deep chain of imports cannot hit the recursion limit.
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(groups)


def _describe(group: list[str], edges: list[Edge]) -> str:
    inside = set(group)
    return "\n".join(f"    {e}" for e in edges if e.source in inside and e.target in inside)


@pytest.fixture(scope="module")
def edges() -> list[Edge]:
    return import_edges(ROOT)


def test_every_import_points_rightwards_along_the_layers(edges: list[Edge]) -> None:
    bad = layer_violations(edges)
    assert not bad, "imports against loop → connectors → storage → policies:\n" + "\n".join(f"  {e}" for e in bad)


def test_no_module_imports_itself_back_through_others(edges: list[Edge]) -> None:
    found = cycles(edges)
    assert not found, "import circles:\n" + "\n".join(
        f"  {' ↔ '.join(group)}\n{_describe(group, edges)}" for group in found
    )


def test_the_walk_sees_every_module_and_function_level_imports(edges: list[Edge]) -> None:
    # The checks above are only as good as the edges they are given: known ones of each kind must be there.
    pairs = {(e.source, e.target) for e in edges}
    assert ("loop.tick", "loop.experiments") in pairs  # module level
    assert ("loop.cli", "loop.simulate") in pairs  # inside the `simulate` command
    assert ("loop.cli", "policies.bandit") in pairs  # inside a function, under an `if`
    assert ("storage.migrations.env", "storage.models") in pairs  # Alembic's script is checked too
    sources = {e.source for e in edges}
    assert {"loop.cli", "connectors.meta.platform", "storage.ledger", "policies.bandit"} <= sources


# -- the checker itself, on a small tree written for the purpose ------------------------------------------
def _tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_checker_finds_a_leftward_import_even_inside_a_function(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {
            "loop/__init__.py": "",
            "loop/a.py": "from connectors import b\n",
            "connectors/__init__.py": "",
            "connectors/b.py": "import storage.c\n",
            "storage/__init__.py": "",
            "storage/c.py": "def f():\n    from connectors.b import thing\n",
            "policies/__init__.py": "",
        },
    )
    bad = layer_violations(import_edges(tmp_path))
    assert [(e.source, e.target, e.line) for e in bad] == [("storage.c", "connectors.b", 2)]
    assert str(bad[0]) == "storage/c.py:2: storage.c imports connectors.b"


def test_the_checker_finds_circles_through_lazy_relative_and_type_checking_imports(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {
            "loop/__init__.py": "",
            "loop/pkg/__init__.py": "from loop.pkg.x import X\n",  # a package re-exporting its module: no circle
            "loop/pkg/x.py": "from . import y\nX = 1\n",
            "loop/pkg/y.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .x import X\n",
            "loop/tick.py": "from loop import experiments\n",
            "loop/experiments.py": "def advance():\n    from loop.tick import tick\n",
            "loop/alone.py": "import loop.tick\n",
            "connectors/__init__.py": "",
            "storage/__init__.py": "",
            "policies/__init__.py": "",
        },
    )
    edges = import_edges(tmp_path)
    assert cycles(edges) == [["loop.experiments", "loop.tick"], ["loop.pkg.x", "loop.pkg.y"]]
    assert not layer_violations(edges)
