"""Cronitor: one ``job`` monitor per scheduled DAG, and telemetry for every run.

Active when ``CRONITOR_API_KEY`` is set in the scheduler's environment.

- Monitors are created or updated with the SDK's idempotent ``Monitor.put`` when
  the scheduled DAGs or their schedules change. What was last synced is kept in
  the ``cronitor_monitor`` table, so only changes are sent, and one replica at a
  time syncs (a transaction-level advisory lock; the others skip).
- Telemetry (``run`` when a run starts, ``complete``/``fail`` when it ends) is a
  sink of the events outbox: never lost by a crash, never sent by two schedulers
  for one state change, never inside a pass.

The ``cronitor`` package is imported only when something is sent: importing it
starts a thread that delays the process's exit by about a second.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from workflows_tick import queries
from workflows_tick.events import RUN_SKIPPED, Delivery, is_run_event, is_run_start
from workflows_tick.model import Dag
from workflows_tick.queries import EventRow
from workflows_tick.states import RunStatus

log = logging.getLogger(__name__)

API_KEY_VARIABLE = "CRONITOR_API_KEY"
PREFIX_VARIABLE = "WORKFLOWS_CRONITOR_PREFIX"
URL_VARIABLE = "WORKFLOWS_CRONITOR_URL"
"""Send to this base URL instead of Cronitor's own hosts (a proxy, a test double)."""
TIMEOUT_VARIABLE = "CRONITOR_TIMEOUT"
DEFAULT_TIMEOUT_SECONDS = 10.0
DEFAULT_GRACE_SECONDS = 60
"""Added to the scheduler's pass interval: how late a run may start before Cronitor alerts."""
PUT_BATCH = 50
"""Monitors per ``Monitor.put`` call (large calls time out)."""
MESSAGE_TAIL = 500
"""Characters of a failed task's error sent with ``fail``."""


@dataclass(frozen=True)
class CronitorSettings:
    api_key: str
    prefix: str = ""
    url: str | None = None
    timeout: float = DEFAULT_TIMEOUT_SECONDS

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> CronitorSettings | None:
        """The settings, or None when ``CRONITOR_API_KEY`` is unset."""
        api_key = environ.get(API_KEY_VARIABLE, "").strip()
        if not api_key:
            return None
        timeout = DEFAULT_TIMEOUT_SECONDS
        if raw := environ.get(TIMEOUT_VARIABLE, "").strip():
            try:
                timeout = float(raw)
            except ValueError:
                timeout = math.nan
            if not (timeout > 0 and math.isfinite(timeout)):
                from workflows_tick.errors import UsageError

                raise UsageError(f"{TIMEOUT_VARIABLE}={raw!r}: expected a number of seconds")
        return cls(
            api_key=api_key,
            prefix=environ.get(PREFIX_VARIABLE, ""),
            url=environ.get(URL_VARIABLE, "").rstrip("/") or None,
            timeout=timeout,
        )

    def key(self, dag_name: str) -> str:
        return f"{self.prefix}{dag_name}"


# --- monitors --------------------------------------------------------------------------


def grace_seconds(interval: float) -> int:
    return DEFAULT_GRACE_SECONDS + math.ceil(interval)


def monitor_specs(
    dags: Sequence[Dag], settings: CronitorSettings, interval: float
) -> dict[str, dict[str, Any]]:
    """The monitor of each scheduled DAG, by key."""
    return {
        settings.key(dag.name): {
            "type": "job",
            "key": settings.key(dag.name),
            "name": settings.key(dag.name),
            "schedule": dag.schedule,
            "timezone": dag.timezone,
            "grace_seconds": grace_seconds(interval),
        }
        for dag in sorted(dags, key=lambda d: d.name)
        if dag.schedule
    }


@dataclass(frozen=True)
class SyncPlan:
    put: list[dict[str, Any]]
    delete: list[str]
    unchanged: int


def plan_sync(
    desired: Mapping[str, Mapping[str, Any]],
    synced: Mapping[str, queries.SyncedMonitor],
    keep: Sequence[str] = (),
) -> SyncPlan:
    """What to send: new or changed monitors, and those of DAGs no longer scheduled.

    ``keep``: DAG names whose monitors stay as they are (DAGs that fail to load
    are not unscheduled: a typo must not delete a monitor's history).
    """
    put = [
        dict(spec) for key, spec in desired.items() if key not in synced or synced[key].spec != spec
    ]
    delete = sorted(
        key for key, m in synced.items() if key not in desired and m.dag_name not in keep
    )
    return SyncPlan(put=put, delete=delete, unchanged=len(desired) - len(put))


def sync_monitors(
    engine: Engine,
    dags: Sequence[Dag],
    settings: CronitorSettings,
    interval: float,
    keep: Sequence[str] = (),
    dry_run: bool = False,
) -> SyncPlan | None:
    """Bring Cronitor's monitors in line with the scheduled DAGs; what was (or would be)
    sent. None: another scheduler is syncing right now."""
    desired = monitor_specs(dags, settings, interval)
    with engine.connect() as conn, conn.begin():
        if not dry_run and not queries.try_lock(conn, "cronitor-sync"):
            return None
        plan = plan_sync(desired, queries.synced_monitors(conn), keep)
        if dry_run or not (plan.put or plan.delete):
            return plan
        monitor = monitor_class(settings)
        for batch in _chunks(plan.put, PUT_BATCH):
            monitor.put(batch, api_key=settings.api_key)
            queries.save_synced_monitors(
                conn, [(spec["key"], _dag_of(spec["key"], settings), spec) for spec in batch]
            )
        for key in plan.delete:
            try:
                monitor(key, api_key=settings.api_key).delete()
            except Exception as exc:
                if type(exc).__name__ != "MonitorNotFound":
                    raise
            queries.forget_synced_monitors(conn, [key])
    log.info(
        "Cronitor: %d monitor(s) created or updated, %d deleted, %d unchanged",
        len(plan.put),
        len(plan.delete),
        plan.unchanged,
    )
    return plan


def _dag_of(key: str, settings: CronitorSettings) -> str:
    return key[len(settings.prefix) :]


def _chunks(items: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- telemetry -------------------------------------------------------------------------


@dataclass(frozen=True)
class Ping:
    """One telemetry ping: the SDK's ``Monitor(key).ping(**params)``."""

    key: str
    params: dict[str, Any]


def ping_for(delivery: Delivery, settings: CronitorSettings, host: str) -> Ping | None:
    """The ping that reports this run event (None: not a run event, or a skipped fire)."""
    event = delivery.event
    if not is_run_event(event) or event.kind == RUN_SKIPPED:
        return None
    params: dict[str, Any] = {
        "series": str(event.dag_run_id),
        "host": host,
        "stamp": event.created_at.timestamp(),
    }
    if is_run_start(event):
        params["state"] = "run"
        return Ping(settings.key(event.dag_name), params)
    params["state"] = "fail" if event.status == RunStatus.FAILED else "complete"
    run, summary = delivery.dag_run, delivery.summary
    metrics: dict[str, float] = {}
    if run is not None and run.ended_at is not None:
        metrics["duration"] = round((run.ended_at - run.created_at).total_seconds(), 3)
    if summary is not None:
        metrics["count"] = summary.count
        metrics["error_count"] = summary.error_count
    params["metrics"] = metrics
    params["message"] = _message(delivery)
    return Ping(settings.key(event.dag_name), params)


def _message(delivery: Delivery) -> str:
    run, summary = delivery.dag_run, delivery.summary
    parts = []
    if delivery.event.status == RunStatus.CANCELLED:
        parts.append("run cancelled")
    if run is not None and run.message:
        parts.append(run.message)
    if delivery.event.status == RunStatus.FAILED and summary and summary.failed_task:
        error = (summary.failed_error or "").strip()
        tail = error[-MESSAGE_TAIL:]
        parts.append(
            f"{summary.failed_task} failed: {'...' if len(error) > len(tail) else ''}{tail}"
        )
    return "; ".join(parts) or delivery.event.status


class CronitorSink:
    """Sends each run's start and end to Cronitor (a sink of the events outbox)."""

    name = "cronitor"

    def __init__(self, settings: CronitorSettings, host: str | None = None) -> None:
        self.settings = settings
        self.host = host or socket.gethostname()
        self.timeout = settings.timeout

    def wants(self, event: EventRow) -> bool:
        # A skipped fire is not sent: no run started, and the run that had not
        # ended reports its own end (a late one is what Cronitor should see).
        return is_run_event(event) and event.kind != RUN_SKIPPED

    def send(self, delivery: Delivery) -> None:
        ping = ping_for(delivery, self.settings, self.host)
        if ping is None:
            return
        monitor = monitor_class(self.settings)(ping.key, api_key=self.settings.api_key)
        response = monitor.ping(**ping.params)
        if response is None or response.status_code >= 400:
            status = "no response" if response is None else f"HTTP {response.status_code}"
            raise RuntimeError(f"Cronitor refused the {ping.params['state']} ping: {status}")


# --- the SDK ---------------------------------------------------------------------------

_classes: dict[CronitorSettings, type[Any]] = {}


def monitor_class(settings: CronitorSettings) -> type[Any]:
    """The SDK's ``Monitor``, imported now, sending to ``settings.url`` when set,
    without the SDK's own retries (the outbox retries, and a retried read timeout
    could send an event twice), stamped with the event's time."""
    if settings in _classes:
        return _classes[settings]
    # CRONITOR_CONFIG at import time makes the SDK read (and require) a YAML file.
    hidden = os.environ.pop("CRONITOR_CONFIG", None)
    try:
        import cronitor
        from cronitor.monitor import retry_session
    finally:
        if hidden is not None:
            os.environ["CRONITOR_CONFIG"] = hidden
    cronitor.timeout = settings.timeout
    base = settings.url

    class Monitor(cronitor.Monitor):  # type: ignore[misc]
        _req = retry_session(retries=0)

        def _ping_api_url(self) -> str:
            if base is None:
                return str(super()._ping_api_url())
            return f"{base}/p/{self.api_key}/{self.key}"

        @classmethod
        def _monitor_api_url(cls, key: str | None = None) -> str:
            if base is None:
                return str(super()._monitor_api_url(key))
            return f"{base}/api/monitors" + (f"/{key}" if key else "")

        def _clean_params(self, params: dict[str, Any]) -> dict[str, Any]:
            cleaned: dict[str, Any] = super()._clean_params(params)
            if params.get("stamp") is not None:
                cleaned["stamp"] = params["stamp"]
            return cleaned

    _classes[settings] = Monitor
    return Monitor


def imported() -> bool:
    """Whether the SDK was imported in this process (for tests of the lazy import)."""
    return "cronitor" in sys.modules
