"""Cron arithmetic: next and latest fire times, in UTC and across New York's 2024 DST changes.

2024-03-10: at 02:00 EST clocks jump to 03:00 EDT (02:00-02:59 does not exist).
2024-11-03: at 02:00 EDT clocks fall back to 01:00 EST (01:00-01:59 happens twice:
05:00-05:59 UTC, then 06:00-06:59 UTC).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from workflows_tick.cron import check_schedule, latest_fire, next_fire

NY = "America/New_York"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_next_fire_is_strictly_after() -> None:
    assert next_fire("0 3 * * *", "UTC", utc(2024, 1, 1, 2, 59)) == utc(2024, 1, 1, 3)
    assert next_fire("0 3 * * *", "UTC", utc(2024, 1, 1, 3)) == utc(2024, 1, 2, 3)


def test_latest_fire_is_at_or_before() -> None:
    assert latest_fire("0 3 * * *", "UTC", utc(2024, 1, 2, 3)) == utc(2024, 1, 2, 3)
    assert latest_fire("0 3 * * *", "UTC", utc(2024, 1, 2, 2, 59)) == utc(2024, 1, 1, 3)
    assert latest_fire("*/15 * * * *", "UTC", utc(2024, 1, 1, 10, 44, 59)) == utc(
        2024, 1, 1, 10, 30
    )


def test_times_are_in_the_dag_time_zone() -> None:
    # 03:00 in New York in winter (EST, UTC-5) and in summer (EDT, UTC-4).
    assert next_fire("0 3 * * *", NY, utc(2024, 1, 1)) == utc(2024, 1, 1, 8)
    assert next_fire("0 3 * * *", NY, utc(2024, 7, 1)) == utc(2024, 7, 1, 7)


def test_spring_forward_a_skipped_daily_time_runs_at_the_next_existing_time() -> None:
    # 02:30 does not exist on 2024-03-10: it runs at 03:00 EDT (07:00 UTC), once.
    assert next_fire("30 2 * * *", NY, utc(2024, 3, 10, 6)) == utc(2024, 3, 10, 7)
    assert next_fire("30 2 * * *", NY, utc(2024, 3, 10, 7)) == utc(2024, 3, 11, 6, 30)
    assert latest_fire("30 2 * * *", NY, utc(2024, 3, 10, 7, 10)) == utc(2024, 3, 10, 7)


def test_spring_forward_an_hourly_schedule_has_one_hour_less() -> None:
    fires = [utc(2024, 3, 10, 5)]  # 00:00 EST
    for _ in range(3):
        fires.append(next_fire("0 * * * *", NY, fires[-1]))
    # 01:00 EST, then 03:00 EDT: one hour apart in real time, no 02:00.
    assert fires == [
        utc(2024, 3, 10, 5),
        utc(2024, 3, 10, 6),
        utc(2024, 3, 10, 7),
        utc(2024, 3, 10, 8),
    ]


def test_fall_back_a_repeated_daily_time_runs_once() -> None:
    # 01:30 happens at 05:30 UTC (EDT) and again at 06:30 UTC (EST): a daily job runs once.
    assert next_fire("30 1 * * *", NY, utc(2024, 11, 3, 5)) == utc(2024, 11, 3, 5, 30)
    assert next_fire("30 1 * * *", NY, utc(2024, 11, 3, 5, 30)) == utc(2024, 11, 4, 6, 30)
    assert latest_fire("30 1 * * *", NY, utc(2024, 11, 3, 6, 45)) == utc(2024, 11, 3, 5, 30)


def test_fall_back_an_hourly_schedule_runs_in_both_repeated_hours() -> None:
    assert next_fire("30 * * * *", NY, utc(2024, 11, 3, 5, 30)) == utc(2024, 11, 3, 6, 30)


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (utc(2024, 11, 3, 5, 45), utc(2024, 11, 3, 5, 30)),  # first 01:45 (EDT)
        (utc(2024, 11, 3, 6, 45), utc(2024, 11, 3, 6, 30)),  # second 01:45 (EST), fold=1
        (utc(2024, 11, 3, 6, 30), utc(2024, 11, 3, 6, 30)),  # exactly the second 01:30
        (utc(2024, 11, 3, 6, 29), utc(2024, 11, 3, 5, 30)),
    ],
)
def test_latest_fire_in_the_fall_back_fold_is_not_an_hour_early(
    at: datetime, expected: datetime
) -> None:
    assert latest_fire("30 * * * *", NY, at) == expected


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        ("0 3 * * *", None),
        ("*/5 1-3 1,15 * mon-fri", None),
        ("0 3 * *", "has 4 fields; a cron expression has 5"),
        ("0 0 3 * * *", "has 6 fields"),
        ("61 * * * *", "is not a valid cron expression"),
        ("  ", "must be a cron expression"),
    ],
)
def test_check_schedule(expr: str, problem: str | None) -> None:
    found = check_schedule(expr)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_latest_fire_in_the_repeated_fall_back_hour() -> None:
    # 06:31 UTC is 01:31 EST (the second 01:31 in New York on 2024-11-03); the last
    # '30 * * * *' time at or before it is 06:30 UTC (01:30 EST), not 05:30 UTC.
    assert latest_fire("30 * * * *", NY, utc(2024, 11, 3, 6, 31)) == utc(2024, 11, 3, 6, 30)
