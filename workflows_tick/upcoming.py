"""The next fire times of a DAG, for ``workflows CONFIG next``. Pure: no database."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from workflows_tick import cron
from workflows_tick.errors import UsageError
from workflows_tick.model import Dag

DEFAULT_COUNT = 5
"""How many fire times ``next`` prints by default."""
MAX_COUNT = 1000
"""The most fire times ``next`` prints."""


def parse_count(value: str) -> int:
    """``-n``: a whole number from 1 to :data:`MAX_COUNT`."""
    try:
        count = int(value.strip())
    except ValueError:
        count = 0
    if not 1 <= count <= MAX_COUNT:
        raise UsageError(f"-n {value!r}: expected a whole number from 1 to {MAX_COUNT}")
    return count


def parse_after(value: str, timezone: str) -> datetime:
    """``--after``: an ISO 8601 time (or date); without an offset it is a wall-clock time
    in ``timezone`` (its first occurrence, when the fall-back change repeats it)."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise UsageError(
            f"--after {value!r} is not an ISO time (e.g. 2024-11-03T00:00:00-04:00)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=ZoneInfo(timezone))
    return parsed.astimezone(UTC)


def next_fires(dag: Dag, after: datetime, count: int) -> list[datetime]:
    """The first ``count`` fire times of ``dag`` strictly after ``after`` (UTC), under
    its DST policy. Raises :class:`UsageError` for a DAG without a schedule."""
    if dag.schedule is None:
        raise UsageError(f"DAG {dag.name} has no schedule: it never fires")
    dst = cron.DstPolicy.of(dag)
    fires: list[datetime] = []
    at = after
    try:
        while len(fires) < count:
            at = cron.next_fire(dag.schedule, dag.timezone, at, dst)
            fires.append(at)
    except (StopIteration, ValueError):  # a schedule with no more fire times
        pass
    return fires


def fire_line(fire: datetime, timezone: str) -> str:
    """``2024-11-03T01:30:00-04:00  2024-11-03T05:30:00Z``: the time in ``timezone``,
    two spaces, the time in UTC."""
    local = fire.astimezone(ZoneInfo(timezone)).isoformat()
    return f"{local}  {fire.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}"
