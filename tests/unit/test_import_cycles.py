"""No import cycle among the modules of ``workflows_tick``.

Read with :mod:`ast`, without importing anything. A module depends on another when
any of its ``import`` statements names it, wherever the statement sits: at the top,
inside a function, or under ``if TYPE_CHECKING:``. ``from pkg import name`` depends
on ``pkg.name`` when that is a module, else on ``pkg``. A package's ``__init__`` run
as a side effect of importing one of its submodules is not counted as a dependency.
A cycle is then any path of such dependencies leading from a module back to itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

import workflows_tick

PACKAGE_DIR = Path(workflows_tick.__file__).parent


def module_files(package_dir: Path) -> dict[str, Path]:
    modules = {}
    for path in package_dir.rglob("*.py"):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def imported_names(module: str, path: Path) -> set[str]:
    """Every dotted name the module's import statements name, relative ones resolved."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def dependency_graph(package_dir: Path) -> dict[str, set[str]]:
    modules = module_files(package_dir)
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = set()
        for name in imported_names(module, path):
            while name and name not in modules:  # an attribute of a module, or outside
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        graph[module] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path (first module repeated last), or None."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path = [start]
        on_path = {start}
        stack = [(start, iter(sorted(graph[start])))]
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                on_path.discard(node)
                done.add(node)
            elif child in on_path:
                return [*path[path.index(child) :], child]
            elif child not in done:
                stack.append((child, iter(sorted(graph[child]))))
                path.append(child)
                on_path.add(child)
    return None


def test_no_module_of_the_package_imports_itself_back() -> None:
    graph = dependency_graph(PACKAGE_DIR)
    assert "workflows_tick.tick" in graph
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_a_function_level_import_closing_a_loop_is_a_cycle(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.sub import b\n")
    (package / "sub" / "b.py").write_text("def f():\n    from .. import c\n")
    (package / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.a.name\n"
    )
    graph = dependency_graph(package)
    assert find_cycle(graph) == ["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]
    (package / "c.py").write_text("import os\n")
    assert find_cycle(dependency_graph(package)) is None
