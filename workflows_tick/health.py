"""The scheduler's health: has its loop completed a pass lately, and does the
database answer? For ``/healthz`` and any HTTP server that serves it."""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import Engine

from workflows_tick import queries
from workflows_tick.logs import redact

MIN_STALE_SECONDS = 30.0
STALE_INTERVALS = 3


def stale_after(interval: float) -> float:
    """How long without a completed pass the loop is considered stuck."""
    return max(STALE_INTERVALS * interval, MIN_STALE_SECONDS)


def check_loop(
    last_pass_at: float | None, started_at: float, interval: float, now: float
) -> str | None:
    """Why the loop is unhealthy, or None. Times are ``time.monotonic()`` values;
    before its first pass, a loop is judged from when it started."""
    since = last_pass_at if last_pass_at is not None else started_at
    limit = stale_after(interval)
    if now - since > limit:
        what = "the last pass completed" if last_pass_at is not None else "the scheduler started"
        return f"{what} {now - since:.0f}s ago, more than {limit:g}s"
    return None


def check_database(engine: Engine) -> str | None:
    """Why the database is unusable, or None."""
    try:
        with engine.connect() as conn:
            queries.ping(conn)
            conn.rollback()
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"database unavailable: {redact(first)}"
    return None


class LoopHealth:
    """The health of one scheduler loop: ``(ok, reason)``."""

    def __init__(
        self,
        engine: Engine,
        interval: float,
        last_pass_at: Callable[[], float | None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.interval = interval
        self.last_pass_at = last_pass_at
        self.clock = clock
        self.started_at = clock()

    def __call__(self) -> tuple[bool, str]:
        reason = check_loop(self.last_pass_at(), self.started_at, self.interval, self.clock())
        reason = reason or check_database(self.engine)
        return (reason is None, reason or "ok")
