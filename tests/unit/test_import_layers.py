"""The import layers, read from the source with ``ast``: every import statement counts,
those inside functions and under ``TYPE_CHECKING`` too (a function-level import is still a
dependency, only a deferred one).

(a) The offline package's modules import each other without a cycle.
(b) No tier imports another: ``offline``, ``nearline`` and ``online`` import none of the
    other two tiers (nor the ``recsys`` command line), and ``shared`` imports none of them.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {
    "offline": {"nearline", "online", "recsys"},
    "nearline": {"offline", "online", "recsys"},
    "online": {"offline", "nearline", "recsys"},
    "shared": {"offline", "nearline", "online", "recsys"},
}


def module_name(path: Path, root: Path = ROOT) -> str:
    """``offline/job.py`` -> ``offline.job``; ``offline/__init__.py`` -> ``offline``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_statements(
    source: str, module: str, is_package: bool = False
) -> list[tuple[str, list[str]]]:
    """Every import statement of ``module``'s source, anywhere in the file, as (the module
    imported from, the names imported from it): ``import a.b`` is ``("a.b", [])``,
    ``from a import b, c`` is ``("a", ["b", "c"])``; relative imports are resolved."""
    out: list[tuple[str, list[str]]] = []
    package = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            out.append((target, [alias.name for alias in node.names]))
    return out


def import_graph(sources: Mapping[str, tuple[str, bool]]) -> dict[str, set[str]]:
    """Module -> the modules among ``sources`` it imports. ``sources`` maps a module name
    to (its source, whether it is a package's ``__init__``). ``from a import b`` is an
    edge to ``a.b`` when that is a module, else to ``a``."""
    graph: dict[str, set[str]] = {}
    for module, (source, is_package) in sources.items():
        edges: set[str] = set()
        for target, names in import_statements(source, module, is_package):
            for name in names or [""]:
                sub = f"{target}.{name}"
                edges.add(sub if name and sub in sources else target)
        graph[module] = (edges & set(sources)) - {module}
    return graph


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """One cycle as ``[a, b, ..., a]``, or None when the graph is acyclic."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def package_sources(package: str, root: Path = ROOT) -> dict[str, tuple[str, bool]]:
    return {
        module_name(path, root): (path.read_text("utf-8"), path.name == "__init__.py")
        for path in sorted((root / package).rglob("*.py"))
    }


def test_the_offline_package_imports_without_a_cycle() -> None:
    graph = import_graph(package_sources("offline"))
    assert graph.get("offline.job")  # the graph was read
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle in offline: " + " -> ".join(cycle or [])


def test_the_cycle_finder_names_a_cycle() -> None:
    sources = {
        "p.a": ("from p.b import x", False),
        "p.b": ("def f():\n    from p import c\n", False),
        "p.c": ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import p.a\n", False),
        "p.d": ("from .a import y", False),
    }
    graph = import_graph(sources)
    assert graph == {"p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": {"p.a"}, "p.d": {"p.a"}}
    assert find_cycle(graph) == ["p.a", "p.b", "p.c", "p.a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_tier_imports_another() -> None:
    bad = []
    for package, forbidden in FORBIDDEN.items():
        for module, (source, is_package) in package_sources(package).items():
            for target, _ in import_statements(source, module, is_package):
                if target.split(".")[0] in forbidden:
                    bad.append(f"{module} imports {target}")
    assert not bad, "imports across tiers:\n" + "\n".join(sorted(set(bad)))
