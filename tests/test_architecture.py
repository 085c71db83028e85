"""The tree keeps the shape of the design: packages that say what they own, no import cycle."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_import_cycle_counting_imports_inside_functions() -> None:
    cycles = _script("import_cycles")
    graph = cycles.build_graph(ROOT)
    found = cycles.strongly_connected(graph)
    loops = [" -> ".join(cycles.shortest_loop(graph, members)) for members in found]
    assert not loops, "import cycles (run python3 scripts/import_cycles.py):\n" + "\n".join(loops)


def test_hub_root_holds_only_the_composition_root_and_the_error_tree() -> None:
    modules = sorted(p.name for p in (ROOT / "hub").glob("*.py"))
    assert modules == ["__init__.py", "__main__.py", "app.py", "errors.py"]


def test_every_package_says_what_it_owns() -> None:
    missing = []
    for init in sorted(ROOT.glob("hub/**/__init__.py")):
        if "migrations" in init.parts or "locale" in init.parts:
            continue
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        if not doc or len(doc.split()) < 8:
            missing.append(str(init.relative_to(ROOT)))
    assert not missing, f"packages without a docstring saying what they own: {missing}"


def test_hub_never_imports_connectors_and_only_the_root_imports_the_scheduler() -> None:
    cycles = _script("import_cycles")
    graph = cycles.build_graph(ROOT)
    wrong = sorted(
        f"{module} -> {target}"
        for module, targets in graph.items()
        if module.startswith("hub")
        for target in targets
        if target.startswith("connectors")
        or (target.startswith("scheduler") and module != "hub.app")
    )
    assert not wrong, f"hub/ finds connectors through entry points, never by import: {wrong}"


def test_no_function_over_complexity_20_or_80_lines() -> None:
    metrics = _script("code_metrics")
    over = [
        f"{name}: complexity {complexity}, {lines} lines"
        for name, lines, complexity in metrics.functions(ROOT)
        if (lines > metrics.MAX_LINES or complexity > metrics.MAX_COMPLEXITY)
        and name not in metrics.DECLARATIVE
    ]
    assert not over, "split these (python scripts/code_metrics.py --list):\n" + "\n".join(over)
