#!/usr/bin/env python3
"""Size and complexity of the production code (hub, connectors, scheduler; migrations left out).

    python scripts/code_metrics.py            # the summary the architecture issue asks for
    python scripts/code_metrics.py --list     # also every function over the targets

Counts: modules at the root of ``hub/``, functions (and methods) over 50, 80 and 100 lines,
the highest cyclomatic complexity (radon), and every function above complexity 20 or 80 lines.
Exit status 1 when a function is over a target and not in ``DECLARATIVE`` (tables written as
code, which are long by nature and simple to read).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from radon.complexity import cc_visit
from radon.visitors import Function

ROOTS = ("hub", "connectors", "scheduler")
MAX_COMPLEXITY = 20
MAX_LINES = 80
# Functions allowed over the line target because they are declarative tables, not logic.
DECLARATIVE: set[str] = set()


def functions(root: Path) -> list[tuple[str, int, int]]:
    """(qualified name, lines, complexity) of every function and method."""
    found: list[tuple[str, int, int]] = []
    for top in ROOTS:
        for path in sorted((root / top).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            module = ".".join(path.relative_to(root).with_suffix("").parts)
            # cc_visit lists functions and methods (a class's methods once more inside it).
            for item in cc_visit(path.read_text(encoding="utf-8")):
                if isinstance(item, Function):
                    name = f"{module}:{item.fullname}"
                    found.append((name, item.endline - item.lineno + 1, item.complexity))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--list", action="store_true", help="list every function over a target")
    args = parser.parse_args()
    found = functions(args.root)
    root_modules = sorted(p.name for p in (args.root / "hub").glob("*.py"))
    over = [f for f in found if (f[1] > MAX_LINES or f[2] > MAX_COMPLEXITY)]
    failing = [f for f in over if f[0] not in DECLARATIVE]
    top = max(found, key=lambda f: f[2])
    print(f"modules at the root of hub/: {len(root_modules)} ({', '.join(root_modules)})")
    print(
        f"functions: {len(found)}; over 50 lines: {sum(f[1] > 50 for f in found)}; "
        f"over 80: {sum(f[1] > 80 for f in found)}; over 100: {sum(f[1] > 100 for f in found)}"
    )
    print(f"highest complexity: {top[2]} ({top[0]})")
    print(
        f"over complexity {MAX_COMPLEXITY} or {MAX_LINES} lines: {len(over)} "
        f"({len(over) - len(failing)} declarative)"
    )
    if args.list:
        for name, lines, complexity in sorted(over, key=lambda f: (-f[2], -f[1])):
            print(f"  {complexity:3d} cc {lines:4d} lines  {name}")
    return 1 if failing else 0


if __name__ == "__main__":
    raise SystemExit(main())
