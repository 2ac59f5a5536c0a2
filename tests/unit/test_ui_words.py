"""Schedules, durations and ages in words."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from workflows_tick.ui.words import age, describe_schedule, duration


@pytest.mark.parametrize(
    ("expr", "words"),
    [
        ("* * * * *", "every minute"),
        ("*/5 * * * *", "every 5 minutes"),
        ("15 * * * *", "every hour at minute 15"),
        ("0 */6 * * *", "every 6 hours at minute 0"),
        ("0 3 * * *", "at 03:00 every day"),
        ("30 7 * * 1", "at 07:30 on Monday"),
        ("0 9 * * 1-5", "at 09:00 on weekdays"),
        ("0 9 * * sat,sun", "at 09:00 on Saturday, Sunday"),
        ("@daily", "at 00:00 every day"),
        ("0 3 1 * *", "0 3 1 * *"),
        ("5,35 * * * *", "5,35 * * * *"),
        (None, "not scheduled (manual runs only)"),
    ],
)
def test_describe_schedule(expr: str | None, words: str) -> None:
    assert describe_schedule(expr) == words


def test_duration() -> None:
    assert duration(None) == "-"
    assert duration(4.25) == "4.2s"
    assert duration(125) == "2m 5s"
    assert duration(3725) == "1h 2m"
    assert duration(3 * 86400 + 7200) == "3d 2h"


def test_age_in_the_past_and_future() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert age(None, now) == "-"
    assert age(now - timedelta(seconds=5), now) == "5s ago"
    assert age(now - timedelta(minutes=5), now) == "5m ago"
    assert age(now + timedelta(hours=3), now) == "in 3h"
    assert age(now - timedelta(days=3), now) == "3d ago"
