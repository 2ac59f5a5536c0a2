"""The tick fires per the DAG's DST policy (``dst_gap``, ``dst_repeat``) across New
York's 2024 changes, on a real PostgreSQL, driven by a settable clock; the cursor
remembers the policy it was computed with."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine

from tests.support import rows, write_project
from workflows_tick.testing import FakeClock, InstantManager
from workflows_tick.tick import Ticker

SPRING_FORWARD_EVE = datetime(2024, 3, 9, 5, tzinfo=UTC)  # 03-09 00:00 EST
FALL_BACK_EVE = datetime(2024, 11, 2, 4, tzinfo=UTC)  # 11-02 00:00 EDT


def workflow(schedule: str, policy: str = "") -> str:
    return f"description: x\nschedule: '{schedule}'\ntimezone: America/New_York\n{policy}"


def fires_over(
    engine: Engine, tmp_path: Path, schedule: str, policy: str, start: datetime, hours: int
) -> list[str]:
    """The runs a tick every 5 minutes creates: 'MM-DD HH:MM (New York) HH:MM (UTC)'."""
    reg = write_project(
        tmp_path, {"d": {"workflow.yaml": workflow(schedule, policy), "a.yaml": "type: no_op\n"}}
    )
    clock = FakeClock(start)
    t = Ticker(reg, InstantManager(), engine, "config.py", clock=clock)
    for _ in range(hours * 12):
        t.run_pass()
        clock.advance(minutes=5)
    return fired(engine)


def fired(engine: Engine) -> list[str]:
    return [
        r[0]
        for r in rows(
            engine,
            "SELECT to_char(scheduled_for AT TIME ZONE 'America/New_York', 'MM-DD HH24:MI') "
            "|| ' ' || to_char(scheduled_for AT TIME ZONE 'UTC', 'HH24:MI') FROM dag_run "
            "ORDER BY scheduled_for",
        )
    ]


def test_dst_gap_skip_fires_no_run_for_a_time_that_does_not_exist(
    engine: Engine, tmp_path: Path
) -> None:
    fires = fires_over(engine, tmp_path, "30 2 * * *", "dst_gap: skip\n", SPRING_FORWARD_EVE, 72)
    assert fires == ["03-09 02:30 07:30", "03-11 02:30 06:30"]


def test_dst_gap_run_late_fires_a_skipped_hourly_time_at_the_end_of_the_gap(
    engine: Engine, tmp_path: Path
) -> None:
    start = datetime(2024, 3, 10, 5, tzinfo=UTC)  # 00:00 EST
    fires = fires_over(engine, tmp_path, "30 * * * *", "dst_gap: run_late\n", start, 4)
    assert fires == [
        "03-10 00:30 05:30",
        "03-10 01:30 06:30",
        "03-10 03:00 07:00",
        "03-10 03:30 07:30",
        "03-10 04:30 08:30",
    ]


def test_dst_repeat_both_fires_a_daily_time_in_both_repeated_hours(
    engine: Engine, tmp_path: Path
) -> None:
    fires = fires_over(engine, tmp_path, "30 1 * * *", "dst_repeat: both\n", FALL_BACK_EVE, 72)
    assert fires == [
        "11-02 01:30 05:30",
        "11-03 01:30 05:30",
        "11-03 01:30 06:30",
        "11-04 01:30 06:30",
    ]


def test_dst_repeat_once_fires_an_hourly_time_at_its_first_occurrence_only(
    engine: Engine, tmp_path: Path
) -> None:
    start = datetime(2024, 11, 3, 4, 0, 1, tzinfo=UTC)  # 00:00:01 EDT
    fires = fires_over(engine, tmp_path, "30 * * * *", "dst_repeat: once\n", start, 4)
    assert fires == ["11-03 00:30 04:30", "11-03 01:30 05:30", "11-03 02:30 07:30"]


def test_a_changed_policy_resets_the_cursor_and_replays_nothing(
    engine: Engine, tmp_path: Path
) -> None:
    reg = write_project(
        tmp_path, {"d": {"workflow.yaml": workflow("30 2 * * *"), "a.yaml": "type: no_op\n"}}
    )
    clock = FakeClock(datetime(2024, 3, 9, 8, tzinfo=UTC))  # 03-09 03:00 EST
    t = Ticker(reg, InstantManager(), engine, "config.py", clock=clock)
    t.run_pass()
    # The default runs 03-10 02:30 late, at 03:00 EDT (07:00 UTC).
    cursor = "SELECT next_fire_at, dst_gap, dst_repeat FROM dag_schedule"
    assert rows(engine, cursor) == [(datetime(2024, 3, 10, 7, tzinfo=UTC), None, None)]
    clock.now = datetime(2024, 3, 10, 7, 30, tzinfo=UTC)  # the cursor is due, and...
    (tmp_path / "d" / "workflow.yaml").write_text(workflow("30 2 * * *", "dst_gap: skip\n"))
    reg.reload()
    t.load_dags()
    # ... the policy changed before a pass fired it: reset from now, nothing replayed.
    assert t.run_pass().created_runs == []
    assert rows(engine, cursor) == [(datetime(2024, 3, 11, 6, 30, tzinfo=UTC), "skip", None)]
    clock.now = datetime(2024, 3, 11, 6, 31, tzinfo=UTC)
    assert len(t.run_pass().created_runs) == 1
    # The advanced cursor keeps the policy it was computed with.
    assert rows(engine, cursor) == [(datetime(2024, 3, 12, 6, 30, tzinfo=UTC), "skip", None)]
    assert fired(engine) == ["03-11 02:30 06:30"]
