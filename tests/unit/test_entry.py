"""The fast path for ``workflows <config> run`` parses exactly what click would."""

from __future__ import annotations

import subprocess
import sys

import pytest

from workflows_tick.entry import parse_run


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["c.py", "run", "d"], ("c.py", 0, False, "d", {})),
        (["c.py", "run", "d", "-o", "t.sql"], ("c.py", 0, False, "d", {"only": "t.sql"})),
        (
            ["-v", "--log-json", "c", "run", "d", "-b", "a", "--end", "z"],
            ("c", 1, True, "d", {"begin": "a", "end": "z"}),
        ),
    ],
)
def test_plain_runs_take_the_fast_path(argv: list[str], expected: tuple) -> None:  # type: ignore[type-arg]
    assert parse_run(argv) == expected


@pytest.mark.parametrize(
    "argv",
    [
        ["c.py", "run", "d", "--help"],
        ["c.py", "run", "--help"],
        ["c.py", "run"],
        ["--version"],
        ["c.py", "list"],
        ["c.py", "run", "d", "-o"],
        ["c.py", "run", "d", "-o", "a", "-b", "b"],
        ["c.py", "run", "d", "-o", "a", "-o", "b"],
        ["c.py", "run", "d", "-x", "a"],
        ["c.py", "run", "d", "extra"],
    ],
)
def test_anything_else_goes_to_click(argv: list[str]) -> None:
    assert parse_run(argv) is None


def test_the_run_path_imports_no_click_and_no_database_library(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "workflow.yaml").write_text("description: x\n")
    (tmp_path / "d" / "a.yaml").write_text("type: no_op\n")
    (tmp_path / "config.py").write_text(
        "import os\nfrom workflows_tick import dags\nDAGS = dags.register_directory(os.path.dirname(__file__))\n"
    )
    code = (
        "import sys, runpy; sys.argv = ['workflows', sys.argv[1], 'run', 'd', '-o', 'a.yaml']\n"
        "from workflows_tick.entry import main\nmain()\n"
        "heavy = [m for m in ('click', 'sqlalchemy', 'alembic', 'kubernetes', 'psycopg2') if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "config.py")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "[]"
