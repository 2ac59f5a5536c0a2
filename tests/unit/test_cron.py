"""Cron arithmetic in a DAG's time zone."""

from __future__ import annotations

from datetime import UTC, datetime

from workflows_tick import cron


def test_latest_fire_in_the_repeated_fall_back_hour() -> None:
    # 06:31 UTC is 01:31 EST (the second 01:31 in New York on 2024-11-03); the last
    # '30 * * * *' time at or before it is 06:30 UTC (01:30 EST), not 05:30 UTC.
    at = datetime(2024, 11, 3, 6, 31, tzinfo=UTC)
    assert cron.latest_fire("30 * * * *", "America/New_York", at) == datetime(
        2024, 11, 3, 6, 30, tzinfo=UTC
    )
