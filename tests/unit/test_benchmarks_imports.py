"""The benchmarks use the package (``workflows_tick.testing``), never the test suite."""

from __future__ import annotations

import ast
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
    return modules


def test_no_benchmark_imports_the_tests() -> None:
    scripts = sorted(BENCHMARKS.rglob("*.py"))
    assert scripts
    offenders = {
        str(path.relative_to(BENCHMARKS)): sorted(
            m for m in imported_modules(path) if m == "tests" or m.startswith("tests.")
        )
        for path in scripts
    }
    assert {path: found for path, found in offenders.items() if found} == {}
