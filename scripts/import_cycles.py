#!/usr/bin/env python3
"""Import cycles among the hub's own modules, counting imports placed inside functions.

    python scripts/import_cycles.py            # list every cycle, exit 1 if there is one
    python scripts/import_cycles.py --edges    # also print each module's imports

Every ``import`` and ``from ... import`` anywhere in a module counts (module level, inside
functions, inside ``try``), because an import moved into a function to dodge a cycle is still a
cycle in the design. Only imports under ``if TYPE_CHECKING:`` are left out: they never run.
``from pkg import name`` counts as importing ``pkg.name`` when that is a module, else ``pkg``.
A package's ``__init__`` is not counted as imported by its own submodules' relative imports of
siblings. Cycles are reported as strongly connected components (Tarjan), each with one shortest
loop through it so the edge to cut is easy to find.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import deque
from pathlib import Path

ROOTS = ("hub", "connectors", "scheduler")


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(tree: ast.Module, name: str, is_package: bool) -> list[tuple[str, list[str]]]:
    """(module, names) for every import that runs, with relative imports made absolute."""
    found: list[tuple[str, list[str]]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".") if is_package else name.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join(package + ([base] if base else []))
            found.append((base, [alias.name for alias in node.names]))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def build_graph(root: Path) -> dict[str, set[str]]:
    files: dict[str, Path] = {}
    for top in ROOTS:
        for path in sorted((root / top).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            files[module_name(root, path)] = path
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        is_package = path.name == "__init__.py"
        for module, names in imports_of(tree, name, is_package):
            targets = [f"{module}.{n}" for n in names if f"{module}.{n}" in files]
            if len(targets) < len(names) or not names:
                targets.append(module)
            for target in targets:
                if target in files and target != name:
                    graph[name].add(target)
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0
    sys.setrecursionlimit(10_000)

    def connect(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                connect(target)
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

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return components


def shortest_loop(graph: dict[str, set[str]], members: list[str]) -> list[str]:
    inside = set(members)
    best: list[str] = []
    for start in members:
        previous: dict[str, str] = {}
        queue = deque([start])
        while queue:
            node = queue.popleft()
            for target in sorted(graph[node] & inside):
                if target == start:
                    loop = [node]
                    while loop[-1] != start:
                        loop.append(previous[loop[-1]])
                    loop = [start, *reversed(loop[:-1]), start] if node != start else [start]
                    if not best or len(loop) < len(best):
                        best = loop
                    queue.clear()
                    break
                if target not in previous:
                    previous[target] = node
                    queue.append(target)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--edges", action="store_true", help="print each module's imports")
    args = parser.parse_args()
    graph = build_graph(args.root)
    if args.edges:
        for name in sorted(graph):
            print(f"{name}: {', '.join(sorted(graph[name]))}")
    components = strongly_connected(graph)
    for members in components:
        print(f"cycle of {len(members)} modules: {', '.join(members)}")
        print(f"  e.g. {' -> '.join(shortest_loop(graph, members))}")
    print(
        f"{len(graph)} modules, {sum(map(len, graph.values()))} imports, {len(components)} cycles"
    )
    return 1 if components else 0


if __name__ == "__main__":
    raise SystemExit(main())
