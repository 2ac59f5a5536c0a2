"""dag-workflows' logging flags on the real command: ``--quiet``, ``--log-text``, the
``LOG_JSON`` variable and the JSON field ``severity``, on the fast ``run`` path and
through the full command line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support import workflows, write_project


@pytest.fixture
def config(tmp_path: Path) -> str:
    write_project(tmp_path, {"d": {"workflow.yaml": "description: d\n", "a.yaml": ""}})
    return str(tmp_path / "config.py")


def environ(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LOG_JSON", "WORKFLOWS_LOG_JSON")}
    return {**env, **extra}


# The first form is parsed without click; click parses the second (option first).
RUN_FORMS = [["run", "d", "-o", "a.yaml"], ["run", "--only", "a.yaml", "d"]]


@pytest.mark.parametrize("command", RUN_FORMS, ids=["fast path", "click"])
def test_log_json_variable_gives_json_lines_with_severity(config: str, command: list[str]) -> None:
    result = workflows(config, *command, env=environ(LOG_JSON="true"))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert lines and all(line["severity"] == "INFO" for line in lines)
    assert any("task d/a.yaml: starting" in line["message"] for line in lines)


@pytest.mark.parametrize("command", RUN_FORMS, ids=["fast path", "click"])
def test_log_text_overrides_the_variable(config: str, command: list[str]) -> None:
    result = workflows("--log-text", config, *command, env=environ(LOG_JSON="1"))
    assert result.returncode == 0, result.stderr
    assert " INFO workflows_tick.runner: task d/a.yaml: starting" in result.stderr


@pytest.mark.parametrize("command", RUN_FORMS, ids=["fast path", "click"])
def test_quiet_logs_only_warnings(config: str, command: list[str]) -> None:
    result = workflows("--quiet", config, *command, env=environ())
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_quiet_is_a_flag_of_the_full_command_line_too(config: str) -> None:
    result = workflows("--quiet", "--log-json", config, "list", env=environ())
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("d: 1 task")
