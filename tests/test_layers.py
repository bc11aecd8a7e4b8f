"""The three floors of ARCHITECTURE.md, checked: imports only point down."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# What each floor may not import: everything above it (fleet/ and data/ share the bottom floor).
ABOVE = {"data": {"bentos", "training", "service", "benchmarks"},
         "fleet": {"bentos", "training", "service", "benchmarks"},
         "bentos": {"training", "service", "benchmarks"}}


def imported(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_imports_only_point_down() -> None:
    wrong = [f"{path.relative_to(ROOT)} imports {sorted(imported(path) & above)}"
             for floor, above in ABOVE.items() for path in sorted((ROOT / floor).rglob("*.py"))
             if imported(path) & above]
    assert not wrong, "\n".join(wrong)
