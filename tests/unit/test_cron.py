"""Cron arithmetic: next and latest fire times, in UTC and across the 2024 DST changes of
New York and Sydney, under every DST policy.

2024-03-10: at 02:00 EST clocks jump to 03:00 EDT (02:00-02:59 does not exist).
2024-11-03: at 02:00 EDT clocks fall back to 01:00 EST (01:00-01:59 happens twice:
05:00-05:59 UTC, then 06:00-06:59 UTC).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from workflows_tick.cron import (
    DEFAULT_DST,
    DstPolicy,
    check_schedule,
    fire_times,
    is_fixed_time,
    latest_fire,
    next_fire,
)
from workflows_tick.model import DstGap, DstRepeat

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


# --- DST policies ----------------------------------------------------------------------
#
# New York 2024: on 03-10 clocks jump from 02:00 EST to 03:00 EDT at 07:00 UTC; on 11-03
# they fall back from 02:00 EDT to 01:00 EST at 06:00 UTC (01:00-01:59 twice).
# Sydney 2024: on 04-07 clocks fall back from 03:00 AEDT to 02:00 AEST at 04-06 16:00
# UTC (02:00-02:59 twice); on 10-06 they jump from 02:00 AEST to 03:00 AEDT at
# 10-05 16:00 UTC (02:00-02:59 does not exist).

SYDNEY = "Australia/Sydney"
GAPS = [None, DstGap.RUN_LATE, DstGap.SKIP]
REPEATS = [None, DstRepeat.ONCE, DstRepeat.BOTH]

# (zone, window start and end in UTC: local 00:00 to 05:00 of the day, expression,
#  {the key's value: the UTC fire times in the window}); the other key has no effect.
SPRING_FORWARD = [
    # fixed time 02:30: by default and with run_late at 03:00 (the end of the gap).
    (NY, utc(2024, 3, 10, 5), utc(2024, 3, 10, 9), "30 2 * * *", {
        None: [utc(2024, 3, 10, 7)],
        DstGap.RUN_LATE: [utc(2024, 3, 10, 7)],
        DstGap.SKIP: [],
    }),
    # wildcard hour: by default 02:30 is skipped; run_late fires it at 03:00.
    (NY, utc(2024, 3, 10, 5), utc(2024, 3, 10, 9), "30 * * * *", {
        None: [utc(2024, 3, 10, 5, 30), utc(2024, 3, 10, 6, 30), utc(2024, 3, 10, 7, 30),
               utc(2024, 3, 10, 8, 30)],
        DstGap.RUN_LATE: [utc(2024, 3, 10, 5, 30), utc(2024, 3, 10, 6, 30), utc(2024, 3, 10, 7),
                          utc(2024, 3, 10, 7, 30), utc(2024, 3, 10, 8, 30)],
        DstGap.SKIP: [utc(2024, 3, 10, 5, 30), utc(2024, 3, 10, 6, 30), utc(2024, 3, 10, 7, 30),
                      utc(2024, 3, 10, 8, 30)],
    }),
    (SYDNEY, utc(2024, 10, 5, 14), utc(2024, 10, 5, 18), "30 2 * * *", {
        None: [utc(2024, 10, 5, 16)],
        DstGap.RUN_LATE: [utc(2024, 10, 5, 16)],
        DstGap.SKIP: [],
    }),
    (SYDNEY, utc(2024, 10, 5, 14), utc(2024, 10, 5, 18), "30 * * * *", {
        None: [utc(2024, 10, 5, 14, 30), utc(2024, 10, 5, 15, 30), utc(2024, 10, 5, 16, 30),
               utc(2024, 10, 5, 17, 30)],
        DstGap.RUN_LATE: [utc(2024, 10, 5, 14, 30), utc(2024, 10, 5, 15, 30), utc(2024, 10, 5, 16),
                          utc(2024, 10, 5, 16, 30), utc(2024, 10, 5, 17, 30)],
        DstGap.SKIP: [utc(2024, 10, 5, 14, 30), utc(2024, 10, 5, 15, 30), utc(2024, 10, 5, 16, 30),
                      utc(2024, 10, 5, 17, 30)],
    }),
]  # fmt: skip

FALL_BACK = [
    # fixed time 01:30 (twice): by default and with once at its first occurrence only.
    (NY, utc(2024, 11, 3, 4), utc(2024, 11, 3, 10), "30 1 * * *", {
        None: [utc(2024, 11, 3, 5, 30)],
        DstRepeat.ONCE: [utc(2024, 11, 3, 5, 30)],
        DstRepeat.BOTH: [utc(2024, 11, 3, 5, 30), utc(2024, 11, 3, 6, 30)],
    }),
    # wildcard hour: by default 01:30 EDT and 01:30 EST; once drops the second.
    (NY, utc(2024, 11, 3, 4), utc(2024, 11, 3, 10), "30 * * * *", {
        None: [utc(2024, 11, 3, 4, 30), utc(2024, 11, 3, 5, 30), utc(2024, 11, 3, 6, 30),
               utc(2024, 11, 3, 7, 30), utc(2024, 11, 3, 8, 30), utc(2024, 11, 3, 9, 30)],
        DstRepeat.ONCE: [utc(2024, 11, 3, 4, 30), utc(2024, 11, 3, 5, 30), utc(2024, 11, 3, 7, 30),
                         utc(2024, 11, 3, 8, 30), utc(2024, 11, 3, 9, 30)],
        DstRepeat.BOTH: [utc(2024, 11, 3, 4, 30), utc(2024, 11, 3, 5, 30), utc(2024, 11, 3, 6, 30),
                         utc(2024, 11, 3, 7, 30), utc(2024, 11, 3, 8, 30), utc(2024, 11, 3, 9, 30)],
    }),
    (SYDNEY, utc(2024, 4, 6, 13), utc(2024, 4, 6, 19), "30 2 * * *", {
        None: [utc(2024, 4, 6, 15, 30)],
        DstRepeat.ONCE: [utc(2024, 4, 6, 15, 30)],
        DstRepeat.BOTH: [utc(2024, 4, 6, 15, 30), utc(2024, 4, 6, 16, 30)],
    }),
    (SYDNEY, utc(2024, 4, 6, 13), utc(2024, 4, 6, 19), "30 * * * *", {
        None: [utc(2024, 4, 6, 13, 30), utc(2024, 4, 6, 14, 30), utc(2024, 4, 6, 15, 30),
               utc(2024, 4, 6, 16, 30), utc(2024, 4, 6, 17, 30), utc(2024, 4, 6, 18, 30)],
        DstRepeat.ONCE: [utc(2024, 4, 6, 13, 30), utc(2024, 4, 6, 14, 30), utc(2024, 4, 6, 15, 30),
                         utc(2024, 4, 6, 17, 30), utc(2024, 4, 6, 18, 30)],
        DstRepeat.BOTH: [utc(2024, 4, 6, 13, 30), utc(2024, 4, 6, 14, 30), utc(2024, 4, 6, 15, 30),
                         utc(2024, 4, 6, 16, 30), utc(2024, 4, 6, 17, 30), utc(2024, 4, 6, 18, 30)],
    }),
]  # fmt: skip

POLICY_CASES = [
    pytest.param(zone, start, end, expr, DstPolicy(gap, repeat), expected[gap],
                 id=f"{zone}-{start:%m-%d}-{expr.replace(' ', '_')}-gap={gap}-repeat={repeat}")
    for zone, start, end, expr, expected in SPRING_FORWARD
    for gap in GAPS
    for repeat in REPEATS
] + [
    pytest.param(zone, start, end, expr, DstPolicy(gap, repeat), expected[repeat],
                 id=f"{zone}-{start:%m-%d}-{expr.replace(' ', '_')}-gap={gap}-repeat={repeat}")
    for zone, start, end, expr, expected in FALL_BACK
    for gap in GAPS
    for repeat in REPEATS
]  # fmt: skip


@pytest.mark.parametrize(("zone", "start", "end", "expr", "dst", "expected"), POLICY_CASES)
def test_fire_times_across_a_dst_change_follow_the_policy(
    zone: str, start: datetime, end: datetime, expr: str, dst: DstPolicy, expected: list[datetime]
) -> None:
    assert fire_times(expr, zone, start, end, 100, dst) == expected


@pytest.mark.parametrize(("zone", "start", "end", "expr", "dst", "expected"), POLICY_CASES)
def test_next_and_latest_fire_agree_with_fire_times_under_every_policy(
    zone: str, start: datetime, end: datetime, expr: str, dst: DstPolicy, expected: list[datetime]
) -> None:
    chain: list[datetime] = []
    at = start
    while (fire := next_fire(expr, zone, at, dst)) <= end:
        chain.append(fire)
        at = fire
    assert chain == expected
    for fire in expected:
        assert latest_fire(expr, zone, fire, dst) == fire
        assert latest_fire(expr, zone, fire + timedelta(minutes=29), dst) == fire


def test_several_skipped_times_run_late_make_one_fire() -> None:
    # */20: 02:00, 02:20 and 02:40 do not exist; with run_late they all map to 03:00
    # EDT, which is also a time of the expression: one fire there.
    fires = fire_times(
        "*/20 * * * *", NY, utc(2024, 3, 10, 6, 30), utc(2024, 3, 10, 7, 30), 100,
        DstPolicy(DstGap.RUN_LATE),
    )  # fmt: skip
    assert fires == [utc(2024, 3, 10, 6, 40), utc(2024, 3, 10, 7), utc(2024, 3, 10, 7, 20)]
    # 02:00 and 02:30 (fixed times) both run late at 03:00: one fire.
    fires = fire_times(
        "0,30 2 * * *", NY, utc(2024, 3, 10), utc(2024, 3, 11), 100, DstPolicy(DstGap.RUN_LATE)
    )
    assert fires == [utc(2024, 3, 10, 7)]


@pytest.mark.parametrize(
    ("expr", "fixed"),
    [
        ("30 2 * * *", True),
        ("15 1-3 * * *", True),
        ("0,30 2,3 * * *", True),
        ("30 * * * *", False),
        ("*/20 * * * *", False),
        ("*/20 2 * * *", False),
        ("0 */2 * * *", False),
    ],
)
def test_the_default_rule_depends_on_the_minute_and_hour_fields(expr: str, fixed: bool) -> None:
    assert is_fixed_time(expr) is fixed
    expected = (DstGap.RUN_LATE, DstRepeat.ONCE) if fixed else (DstGap.SKIP, DstRepeat.BOTH)
    assert DEFAULT_DST.resolved(expr) == expected


def test_defaults_on_the_documented_new_york_days() -> None:
    """The defaults docs/scheduler.md states, one line each."""

    def local_times(expr: str, day: int, month: int) -> list[str]:
        start = datetime(2024, month, day, tzinfo=ZoneInfo(NY)).astimezone(UTC)
        fires = fire_times(expr, NY, start, start + timedelta(hours=5), 100)
        return [f.astimezone(ZoneInfo(NY)).strftime("%H:%M%z") for f in fires]

    assert local_times("30 2 * * *", 10, 3) == ["03:00-0400"]
    assert local_times("30 * * * *", 10, 3)[:3] == ["00:30-0500", "01:30-0500", "03:30-0400"]
    assert local_times("*/20 * * * *", 10, 3)[5:7] == ["01:40-0500", "03:00-0400"]
    assert local_times("15 1-3 * * *", 10, 3) == ["01:15-0500", "03:00-0400", "03:15-0400"]
    assert local_times("30 1 * * *", 3, 11) == ["01:30-0400"]
    assert local_times("30 * * * *", 3, 11)[1:3] == ["01:30-0400", "01:30-0500"]
    assert local_times("*/20 * * * *", 3, 11)[3:9] == [
        "01:00-0400", "01:20-0400", "01:40-0400", "01:00-0500", "01:20-0500", "01:40-0500",
    ]  # fmt: skip
    assert local_times("15 1-3 * * *", 3, 11) == ["01:15-0400", "02:15-0500", "03:15-0500"]


@pytest.mark.parametrize(
    "zone",
    [NY, SYDNEY, "Europe/London", "America/Santiago", "America/Havana", "Pacific/Auckland"],
)
def test_the_default_rule_spelled_out_is_cronsims_own(zone: str) -> None:
    # The policy code recomputes every time a DST change skips or repeats; given the
    # rules cronsim follows, it must find exactly cronsim's fire times.
    exprs = ["30 2 * * *", "30 1 * * *", "15 1-3 * * *", "0,30 2,3 * * *", "0 0 * * *",
             "30 * * * *", "*/20 * * * *", "*/20 2 * * *", "0 */2 * * *"]  # fmt: skip
    start = utc(2024, 1, 1)
    changes = [
        day
        for day in (start + timedelta(days=n) for n in range(366))
        if _offset_changes(zone, day, day + timedelta(days=1))
    ]
    assert changes, f"{zone} changes its offset in 2024"
    for day in changes:
        for expr in exprs:
            low, high = day - timedelta(days=1), day + timedelta(days=2)
            spelled_out = DstPolicy(*DEFAULT_DST.resolved(expr))
            assert fire_times(expr, zone, low, high, 1000, spelled_out) == fire_times(
                expr, zone, low, high, 1000
            ), (zone, day, expr)


def _offset_changes(zone: str, start: datetime, end: datetime) -> bool:
    return (
        start.astimezone(ZoneInfo(zone)).utcoffset() != end.astimezone(ZoneInfo(zone)).utcoffset()
    )


def test_next_fire_from_the_second_pass_of_a_repeated_hour_is_after_it() -> None:
    # 06:10 UTC is 01:10 EST, after the first 01:30 (05:30 UTC): the next daily 01:30
    # is the next day's, never the one already past.
    assert next_fire("30 1 * * *", NY, utc(2024, 11, 3, 6, 10)) == utc(2024, 11, 4, 6, 30)
    both = DstPolicy(repeat=DstRepeat.BOTH)
    assert next_fire("30 1 * * *", NY, utc(2024, 11, 3, 6, 10), both) == utc(2024, 11, 3, 6, 30)


def test_skip_never_fires_a_time_that_does_not_exist() -> None:
    # In 2024 02:30 exists in New York every day but 03-10.
    skip = DstPolicy(gap=DstGap.SKIP)
    assert next_fire("30 2 * * *", NY, utc(2024, 3, 9, 8), skip) == utc(2024, 3, 11, 6, 30)
    assert latest_fire("30 2 * * *", NY, utc(2024, 3, 11, 6), skip) == utc(2024, 3, 9, 7, 30)


def test_a_policy_for_a_zone_without_dst_changes_nothing() -> None:
    policy = DstPolicy(DstGap.SKIP, DstRepeat.BOTH)
    for zone in ("UTC", "Asia/Tokyo"):
        start, end = utc(2024, 3, 1), utc(2024, 3, 3)
        assert fire_times("*/30 * * * *", zone, start, end, 1000, policy) == fire_times(
            "*/30 * * * *", zone, start, end, 1000
        )
