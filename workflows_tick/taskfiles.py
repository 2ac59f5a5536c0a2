"""Finding the YAML spec (the "header") inside a task file, per extension.

Pure string functions: no I/O, no YAML. Each returns a :class:`Header` with the
header text, the 1-based file line its first line sits on (so a YAML error on
header line ``n`` is reported at file line ``first_line + n``), and the body.

- ``.sql``: the first ``/* ... */`` comment, when the file opens with one (leading
  blank lines allowed). Later comments stay in the SQL.
- ``.sh``: the block of ``#`` lines at the top, after an optional ``#!`` line and
  blank lines; each line loses its ``#`` and one following space.
- ``.yaml``/``.yml``: the whole file.
- ``.py``: the module docstring, found with :mod:`ast` (see :func:`python_header`).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Any

from workflows_tick.model import TaskType

TASK_EXTENSIONS: dict[str, TaskType] = {
    ".sql": TaskType.SQL,
    ".py": TaskType.PYTHON,
    ".sh": TaskType.SHELL,
    ".yaml": TaskType.NO_OP,
    ".yml": TaskType.NO_OP,
}
"""The extensions that make a file a task, and the task type each implies."""


class HeaderError(ValueError):
    """The header cannot be found or cut out; ``line`` is 1-based, or None."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


@dataclass(frozen=True)
class Header:
    text: str | None
    """The YAML text, or None when the file has no header."""
    first_line: int
    """The 1-based file line holding the header's first line (0 when there is none)."""
    body: str
    """The SQL (``.sql``) or the whole script (``.sh``); empty otherwise."""
    has_run: bool = False
    """``.py`` only: whether the module defines ``run`` at top level."""
    async_run: bool = False


def sql_header(source: str) -> Header:
    stripped = source.lstrip()
    if not stripped.startswith("/*"):
        return Header(None, 0, source)
    start = len(source) - len(stripped)
    first_line = source.count("\n", 0, start) + 1
    end = source.find("*/", start + 2)
    if end < 0:
        raise HeaderError("the /* header comment is never closed with */", first_line)
    text = source[start + 2 : end]
    body = source[end + 2 :]
    if body.startswith("\r\n"):
        body = body[2:]
    elif body.startswith("\n"):
        body = body[1:]
    return Header(text, first_line, body)


def shell_header(source: str) -> Header:
    lines = source.splitlines()
    index = 0
    if lines and lines[0].startswith("#!"):
        index = 1
    while index < len(lines) and not lines[index].strip():
        index += 1
    header: list[str] = []
    first = index
    while index < len(lines) and lines[index].lstrip().startswith("#"):
        line = lines[index].lstrip()[1:]
        header.append(line[1:] if line.startswith(" ") else line)
        index += 1
    if not header:
        return Header(None, 0, source)
    return Header("\n".join(header), first + 1, source)


def yaml_header(source: str) -> Header:
    return Header(source, 1, "")


def python_header(source: str, filename: str = "<task>") -> Header:
    """The docstring and whether ``run`` is defined; raises HeaderError on bad syntax.

    The module is parsed, never imported: loading a DAG must not run user code.
    """
    import ast

    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError as exc:
        raise HeaderError(f"Python syntax error: {exc.msg}", exc.lineno) from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise HeaderError(f"cannot parse Python: {exc}") from None
    has_run, async_run = _defines_run(tree.body)
    first = tree.body[0] if tree.body else None
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        # The raw value keeps line breaks where the file has them, so header line n
        # is file line (docstring start + n); dedent keeps the line count.
        text = textwrap.dedent(first.value.value)
        return Header(text, first.lineno, "", has_run, async_run)
    return Header(None, 0, "", has_run, async_run)


def _defines_run(body: list[Any]) -> tuple[bool, bool]:
    import ast

    for node in body:
        if isinstance(node, ast.AsyncFunctionDef) and node.name == "run":
            return True, True
        if isinstance(node, ast.FunctionDef | ast.ClassDef) and node.name == "run":
            return True, False
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "run" for t in node.targets
        ):
            return True, False
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and node.target.id == "run"
        ):
            return True, False
        if isinstance(node, ast.Import | ast.ImportFrom) and any(
            (alias.asname or alias.name) == "run" for alias in node.names
        ):
            return True, False
        if isinstance(node, ast.If | ast.Try | ast.With):
            inner: list[Any] = list(node.body)
            if isinstance(node, ast.If | ast.Try):
                inner += node.orelse
            if isinstance(node, ast.Try):
                inner += node.finalbody
                for handler in node.handlers:
                    inner += handler.body
            found = _defines_run(inner)
            if found[0]:
                return found
    return False, False


def extract_header(extension: str, source: str, filename: str = "<task>") -> Header:
    """The header of a task file with this extension (one of :data:`TASK_EXTENSIONS`)."""
    if extension == ".sql":
        return sql_header(source)
    if extension == ".sh":
        return shell_header(source)
    if extension == ".py":
        return python_header(source, filename)
    return yaml_header(source)
