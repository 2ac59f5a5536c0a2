"""Cron arithmetic in a DAG's time zone. Pure functions; times in and out are aware UTC.

Every function takes the DAG's DST policy (:class:`DstPolicy`, from ``dst_gap`` and
``dst_repeat``). Unset, a key keeps the rule cronsim takes from Debian cron, which
depends on the expression:

- a **fixed-time** expression (neither its minute nor its hour field starts with
  ``*``: ``30 2 * * *``, ``15 1-3 * * *``, ``0,30 2,3 * * *``) runs a time skipped by
  the spring-forward gap at the first existing time after it (02:30 -> 03:00), and a
  time repeated by the fall-back change once, at its first occurrence;
- a **wildcard** expression (minute or hour starts with ``*``: ``30 * * * *``,
  ``*/20 * * * *``, ``*/20 2 * * *``) skips the times of the gap, and runs a repeated
  time at both occurrences (they are different hours).

``dst_gap: run_late`` / ``skip`` and ``dst_repeat: once`` / ``both`` choose one rule
for every expression. With ``run_late`` every skipped time of a gap maps to the same
instant (the transition): they make one fire there, which is also the fire of a time
that exists at that instant (``*/20 * * * *`` fires once at 03:00).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError

from workflows_tick.model import Dag, DstGap, DstRepeat

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


@dataclass(frozen=True)
class DstPolicy:
    """What a schedule does with the times a DST change skips or repeats (None: the
    default rule for the expression, see the module docstring)."""

    gap: DstGap | None = None
    repeat: DstRepeat | None = None

    @classmethod
    def of(cls, dag: Dag) -> DstPolicy:
        """The policy ``dag``'s ``workflow.yaml`` chose."""
        if dag.dst_gap is None and dag.dst_repeat is None:
            return DEFAULT_DST  # most DAGs: one shared value (asked every idle pass)
        return cls(dag.dst_gap, dag.dst_repeat)

    @property
    def is_default(self) -> bool:
        return self.gap is None and self.repeat is None

    def resolved(self, expr: str) -> tuple[DstGap, DstRepeat]:
        """The rules ``expr`` follows under this policy, defaults resolved."""
        fixed = is_fixed_time(expr)
        gap = self.gap or (DstGap.RUN_LATE if fixed else DstGap.SKIP)
        repeat = self.repeat or (DstRepeat.ONCE if fixed else DstRepeat.BOTH)
        return gap, repeat


DEFAULT_DST = DstPolicy()
"""Both keys unset: cronsim's (Debian cron's) rules."""


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


def is_fixed_time(expr: str) -> bool:
    """Whether cronsim treats ``expr`` as a fixed-time job across DST changes: 5 fields,
    neither the minute nor the hour field starting with ``*``."""
    fields = expr.split()
    return len(fields) == 5 and not fields[0].startswith("*") and not fields[1].startswith("*")


@lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def next_fire(expr: str, tz: str, after: datetime, dst: DstPolicy = DEFAULT_DST) -> datetime:
    """The first fire time strictly after ``after``."""
    return next(_fires_after(expr, tz, after, dst))


def latest_fire(
    expr: str, tz: str, at_or_before: datetime, dst: DstPolicy = DEFAULT_DST
) -> datetime:
    """The last fire time at or before ``at_or_before``."""
    if dst.is_default:
        return _raw_latest(expr, tz, at_or_before)
    zone = _zone(tz)
    rules = dst.resolved(expr)
    limit = at_or_before.astimezone(UTC)
    high = limit
    for _ in range(_MAX_EMPTY_WINDOWS):
        low = _raw_latest(expr, tz, high) - _TICK
        raw = _raw_between(expr, zone, low, high)
        fires = _apply_policy(expr, tz, low, high, raw, rules)
        if fires:
            return fires[-1]
        high = low
    raise ValueError(f"{expr!r} has no fire time in {tz} before {at_or_before.isoformat()}")


def fire_times(
    expr: str, tz: str, start: datetime, end: datetime, limit: int, dst: DstPolicy = DEFAULT_DST
) -> list[datetime]:
    """The fire times in ``[start, end]``, in order; at most ``limit`` + 1 of them (so a
    caller can tell that there are more than ``limit``)."""
    times: list[datetime] = []
    for fire in _fires_after(expr, tz, start - _TICK, dst):
        if fire > end or len(times) > limit:
            break
        times.append(fire)
    return times


# --- under the hood ------------------------------------------------------------------

_TICK = timedelta(microseconds=1)
_SLACK = timedelta(days=1)
"""How far from a window a DST change may move a fire into it (the largest change
in the time zone database is a day)."""
_SCAN_STEP = timedelta(days=1)
"""Offsets are compared this far apart to find changes (zones never change twice a day)."""
_MAX_EMPTY_WINDOWS = 1000
_MAX_BATCH = 256


@dataclass(frozen=True)
class _Change:
    """A change of a zone's UTC offset at instant ``at`` (UTC)."""

    at: datetime
    before: timedelta
    after: timedelta

    @property
    def wall(self) -> datetime:
        """The naive wall time the clocks leave at ``at`` (the start of the skipped or
        repeated range)."""
        return (self.at + min(self.before, self.after)).replace(tzinfo=None)

    @property
    def size(self) -> timedelta:
        return abs(self.after - self.before)


def _raw_after(expr: str, zone: ZoneInfo, after: datetime) -> Iterator[datetime]:
    """cronsim's fire times strictly after ``after``, in UTC."""
    try:
        for fire in CronSim(expr, after.astimezone(zone)):
            fire_utc = fire.astimezone(UTC)
            # cronsim computes fixed times on naive wall times: started in the second
            # pass of a repeated hour, it may give the first pass's time first.
            if fire_utc > after:
                yield fire_utc
    except StopIteration:  # pragma: no cover - cronsim gives up after 50 years
        return


def _raw_latest(expr: str, tz: str, at_or_before: datetime) -> datetime:
    # Step in UTC, then convert: arithmetic on a local time drops its ``fold``, and
    # in the hour repeated by a fall-back change that would land an hour early.
    start = (at_or_before + _TICK).astimezone(_zone(tz))
    limit = at_or_before.astimezone(UTC)
    for fire in CronSim(expr, start, reverse=True):
        if fire.astimezone(UTC) <= limit:
            return fire.astimezone(UTC)
    raise AssertionError("cron iteration ended")  # pragma: no cover - cronsim iterates forever


def _raw_between(expr: str, zone: ZoneInfo, low: datetime, high: datetime) -> list[datetime]:
    """cronsim's fire times in ``(low, high]``."""
    found = []
    for fire in _raw_after(expr, zone, low):
        if fire > high:
            break
        found.append(fire)
    return found


def _fires_after(expr: str, tz: str, after: datetime, dst: DstPolicy) -> Iterator[datetime]:
    """The fire times strictly after ``after`` under ``dst``, in order, forever."""
    zone = _zone(tz)
    after = after.astimezone(UTC)
    if dst.is_default:
        yield from _raw_after(expr, zone, after)
        return
    rules = dst.resolved(expr)
    raw = _raw_after(expr, zone, after)
    low, batch, empty = after, 1, 0
    while True:
        # cronsim's times are right away from DST changes; take them a batch at a
        # time and correct each window (low, high] around the changes it holds.
        window = [fire for _, fire in zip(range(batch), raw, strict=False)]
        if not window:
            return
        high = window[-1]
        fires = _apply_policy(expr, tz, low, high, window, rules)
        yield from fires
        empty = 0 if fires else empty + 1
        if empty > _MAX_EMPTY_WINDOWS:
            raise ValueError(f"{expr!r} has no fire time in {tz} after {after.isoformat()}")
        low, batch = high, min(batch * 2, _MAX_BATCH)


def _apply_policy(
    expr: str,
    tz: str,
    low: datetime,
    high: datetime,
    raw: list[datetime],
    rules: tuple[DstGap, DstRepeat],
) -> list[datetime]:
    """The fire times in ``(low, high]`` under ``rules``, given cronsim's ``raw`` ones
    in that window: cronsim's are kept away from DST changes, and the times each change
    skips or repeats are decided anew."""
    gap_rule, repeat_rule = rules
    changes = _changes(tz, low - _SLACK, high + _SLACK)
    fires = set(raw)
    for change in changes:
        wall = change.wall
        if change.after > change.before:  # spring forward: [wall, wall + size) is skipped
            # cronsim's fire at the change is its run-late fire unless the time it
            # shows is one of the expression's own.
            if not _matches(expr, wall + change.size):
                fires.discard(change.at)
            if gap_rule is DstGap.RUN_LATE and _wall_times(expr, wall, wall + change.size):
                fires.add(change.at)
        else:  # fall back: [wall, wall + size) happens twice
            first_pass = change.at - change.size
            fires.difference_update(f for f in raw if first_pass <= f < change.at + change.size)
            for time in _wall_times(expr, wall, wall + change.size):
                fires.add((time - change.before).replace(tzinfo=UTC))
                if repeat_rule is DstRepeat.BOTH:
                    fires.add((time - change.after).replace(tzinfo=UTC))
    return sorted(f for f in fires if low < f <= high)


def _wall_times(expr: str, start: datetime, end: datetime) -> list[datetime]:
    """The naive wall times in ``[start, end)`` that ``expr`` names (no zone involved)."""
    found = []
    for time in CronSim(expr, (start - timedelta(seconds=1)).replace(tzinfo=UTC)):
        if time.replace(tzinfo=None) >= end:
            break
        found.append(time.replace(tzinfo=None))
    return found


def _matches(expr: str, wall: datetime) -> bool:
    """Whether ``expr`` names the naive wall time ``wall``."""
    return bool(_wall_times(expr, wall, wall + timedelta(seconds=1)))


def _changes(tz: str, low: datetime, high: datetime) -> list[_Change]:
    """The offset changes of ``tz`` in ``(low, high]``, in order."""
    found: list[_Change] = []
    for year in range(low.year - 1, high.year + 1):
        found.extend(_changes_in_year(tz, year))
    return [c for c in found if low < c.at <= high]


@lru_cache(maxsize=1024)
def _changes_in_year(tz: str, year: int) -> tuple[_Change, ...]:
    """The offset changes of ``tz`` in ``(year-01-01, (year+1)-01-01]`` UTC."""
    zone = _zone(tz)
    if tz == "UTC":
        return ()
    found = []
    start = datetime(year, 1, 1, tzinfo=UTC)
    end = datetime(year + 1, 1, 1, tzinfo=UTC)
    left, left_offset = start, _offset(zone, start)
    while left < end:
        right = min(left + _SCAN_STEP, end)
        right_offset = _offset(zone, right)
        if right_offset != left_offset:
            found.append(
                _Change(
                    _first_second_with(zone, left, right, right_offset), left_offset, right_offset
                )
            )
        left, left_offset = right, right_offset
    return tuple(found)


def _first_second_with(
    zone: ZoneInfo, left: datetime, right: datetime, offset: timedelta
) -> datetime:
    """The first whole second in ``(left, right]`` from which ``zone`` has ``offset``."""
    lo, hi = int(left.timestamp()), int(right.timestamp())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset(zone, datetime.fromtimestamp(mid, UTC)) == offset:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)


def _offset(zone: ZoneInfo, instant: datetime) -> timedelta:
    offset = instant.astimezone(zone).utcoffset()
    assert offset is not None
    return offset
