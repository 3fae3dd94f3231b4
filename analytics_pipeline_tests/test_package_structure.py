"""The package's layers: no import cycle between the parts of `analytics_pipeline`.

Why: a cycle between two subpackages (warehouse/migrate.py importing the rollup registry while the
rollup tables imported warehouse/) means neither can be understood, tested or moved without the
other, and an import-order change can break start-up. The graph is read from the source itself
(every `import` statement, including those inside functions), so a new cycle fails here whoever
adds it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "analytics_pipeline"
ROOT_NAME = PACKAGE.name


def _part(module: str) -> str | None:
    """The subpackage of analytics_pipeline that `module` belongs to (None: not in one)."""
    names = module.split(".")
    if names[0] != ROOT_NAME or len(names) < 2 or not (PACKAGE / names[1]).is_dir():
        return None
    return names[1]


def _imports(path: Path, module: str) -> Iterator[str]:
    """Every module `path` imports, as absolute names (relative imports resolved)."""
    package = module.split(".")[:-1] if path.name != "__init__.py" else module.split(".")
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join([*base, *([node.module] if node.module else [])])
            yield target
            # `from analytics_pipeline import telemetry` imports the module telemetry.
            yield from (f"{target}.{alias.name}" for alias in node.names)


def import_graph() -> dict[str, set[str]]:
    """Subpackage -> the other subpackages its modules import."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(relative.parts).removesuffix(".__init__")
        source = _part(module)
        if source is None:
            continue
        graph.setdefault(source, set())
        for imported in _imports(path, module):
            target = _part(imported)
            if target is not None and target != source:
                graph[source].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a path [a, b, ..., a], or None when it has none."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" once explored
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    """The check below can fail: a graph with a cycle is reported, with the cycle's path."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "d": {"a", "c"}}) is None


def test_the_graph_is_read_from_the_source():
    """The graph holds edges we know exist (so an empty or broken reader cannot pass)."""
    graph = import_graph()
    assert {"rollups", "assets", "automation", "warehouse", "instance"} <= set(graph)
    assert "rollups" in graph["warehouse"], "migrate.py creates the registered rollup tables"
    assert "rollups" in graph["assets"], "the asset factory builds on the rollup specs"


def test_no_import_cycle_between_subpackages():
    """No subpackage of analytics_pipeline imports, directly or through other subpackages, one
    that imports it back."""
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])
