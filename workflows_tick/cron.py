"""Cron arithmetic in a DAG's time zone. Pure functions; times in and out are aware UTC.

cronsim follows Debian cron across DST changes: a time skipped by the spring-forward
gap runs at the next existing time (02:30 -> 03:00); a wall-clock time repeated by
the fall-back change runs once for a daily schedule, while an hourly schedule runs in
both repeated hours (they are different hours).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError

_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)

NICKNAMES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
"""The ``@`` forms cron (and dag-workflows' croniter) accept, as the 5 fields they mean."""


def expand_nickname(expr: str) -> str | None:
    """The 5 fields an ``@`` nickname such as ``@daily`` stands for; None if unknown."""
    return NICKNAMES.get(expr.strip().lower())


def check_schedule(expr: str) -> str | None:
    """What is wrong with ``expr`` as a standard 5-field cron expression, or None."""
    if not isinstance(expr, str) or not expr.strip():
        return "must be a cron expression such as '0 3 * * *'"
    fields = expr.split()
    if len(fields) != 5:
        return f"{expr!r} has {len(fields)} fields; a cron expression has 5 (minute hour day month weekday)"
    try:
        CronSim(expr, _EPOCH)
    except CronSimError as exc:
        return f"{expr!r} is not a valid cron expression: {exc}"
    return None


@lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def next_fire(expr: str, tz: str, after: datetime) -> datetime:
    """The first fire time strictly after ``after``."""
    local = after.astimezone(_zone(tz))
    return next(iter(CronSim(expr, local))).astimezone(UTC)


def latest_fire(expr: str, tz: str, at_or_before: datetime) -> datetime:
    """The last fire time at or before ``at_or_before``."""
    # Step in UTC, then convert: arithmetic on a local time drops its ``fold``, and
    # in the hour repeated by a fall-back change that would land an hour early.
    start = (at_or_before + timedelta(microseconds=1)).astimezone(_zone(tz))
    limit = at_or_before.astimezone(UTC)
    for fire in CronSim(expr, start, reverse=True):
        if fire.astimezone(UTC) <= limit:
            return fire.astimezone(UTC)
    raise AssertionError("cron iteration ended")  # pragma: no cover - cronsim iterates forever


def fire_times(expr: str, tz: str, start: datetime, end: datetime, limit: int) -> list[datetime]:
    """The fire times in ``[start, end]``, in order; at most ``limit`` + 1 of them (so a
    caller can tell that there are more than ``limit``)."""
    times: list[datetime] = []
    local = (start - timedelta(microseconds=1)).astimezone(_zone(tz))
    for fire in CronSim(expr, local):
        fire_utc = fire.astimezone(UTC)
        if fire_utc > end or len(times) > limit:
            break
        times.append(fire_utc)
    return times
