"""Cron expressions, durations and ages in words. Pure functions."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache

_DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
_DAY_NAMES = {d[:3].lower(): str(i) for i, d in enumerate(_DAYS)}
_NICKNAMES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def _number(field: str, limit: int) -> int | None:
    return int(field) if field.isdigit() and int(field) < limit else None


def _weekdays(field: str) -> str | None:
    names = []
    for part in field.lower().split(","):
        part = _DAY_NAMES.get(part[:3], part)
        if part.isdigit() and int(part) <= 7:
            names.append(_DAYS[int(part) % 7])
        elif part == "1-5":
            names.append("weekdays")
        else:
            return None
    return ", ".join(names)


@lru_cache(maxsize=1024)
def describe_schedule(expr: str | None) -> str:
    """``'0 3 * * *'`` -> ``'at 03:00 every day'``; the expression itself when no
    short phrase fits (the page shows the cron next to the words anyway)."""
    if not expr:
        return "not scheduled (manual runs only)"
    fields = _NICKNAMES.get(expr.strip().lower(), expr).split()
    if len(fields) != 5:
        return expr
    minute, hour, dom, month, dow = fields
    if month != "*" or dom != "*":
        return expr
    if minute == "*" and hour == "*" and dow == "*":
        return "every minute"
    if minute.startswith("*/") and hour == "*" and dow == "*":
        step = minute[2:]
        return f"every {step} minutes" if step.isdigit() else expr
    m = _number(minute, 60)
    if m is None:
        return expr
    if hour == "*" and dow == "*":
        return f"every hour at minute {m}"
    if hour.startswith("*/") and hour[2:].isdigit() and dow == "*":
        return f"every {hour[2:]} hours at minute {m}"
    h = _number(hour, 24)
    if h is None:
        return expr
    at = f"at {h:02d}:{m:02d}"
    if dow == "*":
        return f"{at} every day"
    days = _weekdays(dow)
    return f"{at} on {days}" if days else expr


def duration(seconds: float | None) -> str:
    """``3725`` -> ``'1h 2m'``, ``4.2`` -> ``'4.2s'``; ``'-'`` for None."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes}m"
    return f"{hours // 24}d {hours % 24}h"


def age(then: datetime | None, now: datetime) -> str:
    """How long ago (``'5m ago'``) or from now (``'in 5m'``); ``'-'`` for None."""
    if then is None:
        return "-"
    delta = now - then
    future = delta < timedelta(0)
    seconds = abs(delta.total_seconds())
    if seconds < 60:
        text = f"{int(seconds)}s"
    elif seconds < 3600:
        text = f"{int(seconds // 60)}m"
    elif seconds < 172800:
        text = f"{int(seconds // 3600)}h"
    else:
        text = f"{int(seconds // 86400)}d"
    return f"in {text}" if future else f"{text} ago"
