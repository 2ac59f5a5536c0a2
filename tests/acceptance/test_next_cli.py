"""``workflows CONFIG next``: the real command prints a DAG's next fire times, with
its DST policy applied, without a database."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support import workflows, write_project

NY = "timezone: America/New_York\n"
NO_DATABASE = "postgresql://nobody@127.0.0.1:1/nothing"
"""Nothing listens on port 1: a command that tried to connect would fail."""


@pytest.fixture
def config(tmp_path: Path) -> str:
    write_project(
        tmp_path,
        {
            "hourly": {"workflow.yaml": "description: d\nschedule: '30 * * * *'\n" + NY},
            "hourly_once": {
                "workflow.yaml": "description: d\nschedule: '30 * * * *'\ndst_repeat: once\n" + NY
            },
            "daily_both": {
                "workflow.yaml": "description: d\nschedule: '30 1 * * *'\ndst_repeat: both\n" + NY
            },
            "daily_skip": {
                "workflow.yaml": "description: d\nschedule: '30 2 * * *'\ndst_gap: skip\n" + NY
            },
            "unscheduled": {"workflow.yaml": "description: d\n"},
            "broken": {"workflow.yaml": "description: d\nschedule: 'every day'\n"},
        },
    )
    return str(tmp_path / "config.py")


def run_next(config: str, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "WORKFLOWS_DATABASE_URL": NO_DATABASE}
    env.pop("DATABASE_URL", None)
    done = workflows(config, "next", *args, env=env)
    return done.returncode, done.stdout, done.stderr


def test_next_shows_the_fall_back_day_in_the_dag_zone_then_in_utc(config: str) -> None:
    code, out, err = run_next(config, "hourly", "--after", "2024-11-03T00:00:00-04:00")
    assert (code, err) == (0, "")
    # The default for a wildcard hour: 01:30 runs in both repeated hours.
    assert out.splitlines() == [
        "2024-11-03T00:30:00-04:00  2024-11-03T04:30:00Z",
        "2024-11-03T01:30:00-04:00  2024-11-03T05:30:00Z",
        "2024-11-03T01:30:00-05:00  2024-11-03T06:30:00Z",
        "2024-11-03T02:30:00-05:00  2024-11-03T07:30:00Z",
        "2024-11-03T03:30:00-05:00  2024-11-03T08:30:00Z",
    ]


def test_next_applies_the_dst_policy(config: str) -> None:
    after = ("--after", "2024-11-03T00:00:00-04:00")
    code, out, _ = run_next(config, "hourly_once", *after, "-n", "3")
    assert code == 0
    assert out.splitlines() == [
        "2024-11-03T00:30:00-04:00  2024-11-03T04:30:00Z",
        "2024-11-03T01:30:00-04:00  2024-11-03T05:30:00Z",
        "2024-11-03T02:30:00-05:00  2024-11-03T07:30:00Z",
    ]
    code, out, _ = run_next(config, "daily_both", *after, "-n", "3")
    assert code == 0
    assert out.splitlines() == [
        "2024-11-03T01:30:00-04:00  2024-11-03T05:30:00Z",
        "2024-11-03T01:30:00-05:00  2024-11-03T06:30:00Z",
        "2024-11-04T01:30:00-05:00  2024-11-04T06:30:00Z",
    ]
    # A naive --after is a wall-clock time in the DAG's zone.
    code, out, _ = run_next(config, "daily_skip", "--after", "2024-03-09T12:00", "-n", "2")
    assert code == 0
    assert out.splitlines() == [
        "2024-03-11T02:30:00-04:00  2024-03-11T06:30:00Z",
        "2024-03-12T02:30:00-04:00  2024-03-12T06:30:00Z",
    ]


def test_next_defaults_to_five_times_after_now(config: str) -> None:
    code, out, err = run_next(config, "hourly")
    assert (code, err) == (0, "")
    assert len(out.splitlines()) == 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], "unknown DAG 'nope'"),
        (["unscheduled"], "DAG unscheduled has no schedule"),
        (["broken"], "DAG broken does not load: "),
        (["hourly", "--after", "tomorrow"], "--after 'tomorrow' is not an ISO time"),
        (["hourly", "-n", "0"], "-n '0': expected a whole number from 1 to 1000"),
        (["hourly", "-n", "1001"], "-n '1001': expected a whole number from 1 to 1000"),
        (["hourly", "-n", "many"], "-n 'many': expected a whole number from 1 to 1000"),
    ],
)
def test_next_refuses_mistakes_with_one_line_and_exit_2(
    config: str, args: list[str], message: str
) -> None:
    code, out, err = run_next(config, *args)
    assert code == 2
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert err.startswith("workflows: ") and message in err, err
