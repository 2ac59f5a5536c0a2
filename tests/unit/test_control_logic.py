"""The pure parts of the control commands: which tasks a rerun supersedes, how the plan
treats superseded and cancelled attempts, backfill fire times, durations and times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.support import write_project
from workflows_tick.cron import fire_times
from workflows_tick.errors import UsageError
from workflows_tick.plan import TaskRunState, plan_run, tasks_to_rerun
from workflows_tick.scheduler import parse_duration, parse_time
from workflows_tick.states import RunStatus, TaskStatus

NOW = datetime(2024, 1, 1, 12, tzinfo=UTC)
S, F, C = TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED


@pytest.fixture
def dag(tmp_path: Path):  # type: ignore[no-untyped-def]
    registry = write_project(
        tmp_path,
        {
            "d": {
                "workflow.yaml": "description: x\nretries: 1\n",
                "a.yaml": "type: no_op\n",
                "b.yaml": "type: no_op\ninputs: [a.yaml]\n",
                "c.yaml": "type: no_op\ninputs: [b.yaml]\n",
                "side.yaml": "type: no_op\n",
            }
        },
    )
    return registry.get("d")


def test_rerun_takes_failed_and_cancelled_tasks_and_what_ran_downstream(dag) -> None:  # type: ignore[no-untyped-def]
    runs = [
        TaskRunState("a.yaml", 1, F),
        TaskRunState("a.yaml", 2, F),
        TaskRunState("b.yaml", 1, S),  # ran in an earlier generation, downstream of a
        TaskRunState("side.yaml", 1, C),
    ]
    assert tasks_to_rerun(runs, dag) == ["a.yaml", "b.yaml", "side.yaml"]
    assert tasks_to_rerun(runs, None) == ["a.yaml", "side.yaml"]  # DAG unknown: no downstream
    assert tasks_to_rerun([TaskRunState("a.yaml", 1, S)], dag) == []
    assert tasks_to_rerun([TaskRunState("a.yaml", 1, S)], dag, every_task=True) == ["a.yaml"]


def test_superseded_attempts_are_history_numbering_goes_on_and_retries_start_afresh(dag) -> None:  # type: ignore[no-untyped-def]
    history = [
        TaskRunState("a.yaml", 1, F, superseded=True),
        TaskRunState("a.yaml", 2, F, superseded=True),
        TaskRunState("side.yaml", 1, S),
    ]
    plan = plan_run(dag, history, NOW)
    assert [(t.task_name, t.attempt) for t in plan.create] == [("a.yaml", 3)]
    failed_once = [*history, TaskRunState("a.yaml", 3, F)]
    assert [(t.task_name, t.attempt) for t in plan_run(dag, failed_once, NOW).create] == [
        ("a.yaml", 4)
    ]
    twice = [*failed_once, TaskRunState("a.yaml", 4, F)]
    ended = plan_run(dag, twice, NOW)
    assert ended.finish is RunStatus.FAILED
    assert ended.message == "failed: a.yaml (after 2 attempts); not run: b.yaml, c.yaml"


def test_a_cancelled_attempt_is_never_retried(dag) -> None:  # type: ignore[no-untyped-def]
    runs = [TaskRunState("a.yaml", 1, C), TaskRunState("side.yaml", 1, S)]
    plan = plan_run(dag, runs, NOW)
    assert plan.create == [] and plan.finish is RunStatus.FAILED
    assert plan.message == "failed: a.yaml (cancelled); not run: b.yaml, c.yaml"


def test_fire_times_are_inclusive_and_bounded() -> None:
    start, end = datetime(2024, 1, 1, 9, tzinfo=UTC), datetime(2024, 1, 1, 11, tzinfo=UTC)
    assert fire_times("0 * * * *", "UTC", start, end, 10) == [
        start,
        start + timedelta(hours=1),
        end,
    ]
    assert len(fire_times("* * * * *", "UTC", start, end, 5)) == 6  # limit + 1: "more"
    # The fall-back hour of Europe/Paris: an hourly schedule fires in both 02:00 hours.
    autumn = fire_times(
        "0 * * * *",
        "Europe/Paris",
        datetime(2024, 10, 27, 0, tzinfo=UTC),
        datetime(2024, 10, 27, 1, 30, tzinfo=UTC),
        10,
    )
    assert autumn == [datetime(2024, 10, 27, 0, tzinfo=UTC), datetime(2024, 10, 27, 1, tzinfo=UTC)]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90d", 90 * 86400), ("12h", 43200), ("30m", 1800), ("45s", 45), ("2w", 1209600)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "0d", "-1d", "90", "1y", "1.5h", "90 days", "9" * 40 + "d"])
def test_bad_durations_are_one_clear_line(text: str) -> None:
    with pytest.raises(UsageError, match="--older-than"):
        parse_duration(text)


def test_times_without_an_offset_are_wall_clock_in_the_dag_zone() -> None:
    assert parse_time("2024-07-01T03:00", "Europe/Paris", "--start") == datetime(
        2024, 7, 1, 1, tzinfo=UTC
    )
    assert parse_time("2024-07-01T03:00+00:00", "Europe/Paris", "--start") == datetime(
        2024, 7, 1, 3, tzinfo=UTC
    )
    with pytest.raises(UsageError, match="--end '2024-13-01' is not an ISO time"):
        parse_time("2024-13-01", "UTC", "--end")
