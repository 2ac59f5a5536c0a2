"""The fast path for ``workflows <config> run`` parses exactly what click would."""

from __future__ import annotations

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
