"""Command-line mistakes are refused before anything runs: exit code 2 and one line."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.support import write_project
from workflows_tick import cli, entry


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The command sets up the root logger for its own stderr; later tests need it back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize("option", ["--interval", "--lease", "--reload-interval"])
def test_schedule_refuses_nan_durations(
    option: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_project(tmp_path, {"d": {"workflow.yaml": "description: d\n"}})
    started = []
    monkeypatch.setattr("workflows_tick.loop.run_scheduler", lambda *a, **k: started.append(a))
    result = CliRunner().invoke(
        cli.cli, [str(tmp_path / "config.py"), "schedule", "worker", option, "nan"]
    )
    assert result.exit_code == 2
    assert f"Invalid value for '{option}': nan is not a number of seconds" in result.output
    assert not started


def test_run_with_begin_downstream_of_end_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = {"workflow.yaml": "description: d\n", "a.yaml": "", "b.yaml": "inputs: [a.yaml]\n"}
    write_project(tmp_path, {"d": files})
    # b.yaml is downstream of a.yaml: nothing is downstream of b and upstream of a.
    with pytest.raises(SystemExit) as exc:
        entry.main([str(tmp_path / "config.py"), "run", "d", "-b", "b.yaml", "-e", "a.yaml"])
    assert exc.value.code == 2
    assert capsys.readouterr().err == (
        "workflows: no task of DAG 'd' is both downstream of 'b.yaml' and upstream of 'a.yaml'\n"
    )
