"""The pure parts of events, delivery and Cronitor: mappings, backoff, payloads."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from workflows_tick.cronitor_monitoring import (
    CronitorSettings,
    grace_seconds,
    ping_for,
    plan_sync,
)
from workflows_tick.errors import UsageError
from workflows_tick.events import Delivery, hook_event, hook_sinks
from workflows_tick.hooks import Event
from workflows_tick.outbox import RETRY_MAX_SECONDS, call_with_timeout, retry_delay
from workflows_tick.queries import DagRunRow, EventRow, RunSummary, SyncedMonitor
from workflows_tick.states import RunStatus, Trigger

T0 = datetime(2024, 1, 1, 12, tzinfo=UTC)


def event(kind: str, status: str, task: bool = False) -> EventRow:
    return EventRow(
        id=1,
        created_at=T0,
        kind=kind,
        dag_run_id=7,
        task_run_id=70 if task else None,
        dag_name="d",
        task_name="t.sh" if task else None,
        attempt=1 if task else None,
        status=status,
        attempts=0,
        done=(),
    )


@pytest.mark.parametrize(
    ("kind", "status", "task", "expected"),
    [
        ("run_started", "running", False, Event.DAG_RUN_START),
        ("run_running", "running", False, Event.DAG_RUN_START),  # a rerun
        ("run_failed", "failed", False, Event.DAG_RUN_FINISH),
        ("run_cancelled", "cancelled", False, Event.DAG_RUN_FINISH),
        ("task_run_created", "waiting", True, None),
        ("task_run_retried", "waiting", True, None),
        ("task_run_started", "running", True, Event.TASK_RUN_START),
        ("task_run_succeeded", "succeeded", True, Event.TASK_RUN_FINISH),
        ("task_run_failed", "failed", True, Event.TASK_RUN_FINISH),
    ],
)
def test_each_kind_maps_to_its_dag_workflows_event(
    kind: str, status: str, task: bool, expected: Event | None
) -> None:
    assert hook_event(event(kind, status, task)) is expected


def test_retries_back_off_exponentially_up_to_a_cap() -> None:
    assert [retry_delay(n) for n in (1, 2, 3, 4)] == [5, 10, 20, 40]
    assert retry_delay(30) == RETRY_MAX_SECONDS


def test_a_call_that_raises_or_overruns_reports_why() -> None:
    assert call_with_timeout(lambda: None, 1) is None

    def boom() -> None:
        raise ValueError("nope")

    assert call_with_timeout(boom, 1) == "ValueError: nope"
    started = time.monotonic()
    assert call_with_timeout(lambda: time.sleep(5), 0.05) == "timed out after 0.05s"
    assert time.monotonic() - started < 5


def test_hooks_registered_twice_get_distinct_names() -> None:
    def hook(event: Event, **kwargs: Any) -> None:
        pass

    names = [s.name for s in hook_sinks([hook, hook], dict)]
    assert len(set(names)) == 2 and names[1] == names[0] + "#2"


SETTINGS = CronitorSettings(api_key="k", prefix="p-")


def run_row(status: RunStatus, message: str | None = None) -> DagRunRow:
    return DagRunRow(
        id=7,
        dag_name="d",
        status=status,
        trigger=Trigger.SCHEDULE,
        scheduled_for=T0,
        creator="scheduler",
        parameters={},
        created_at=T0,
        ended_at=T0 + timedelta(seconds=90.5),
        message=message,
    )


def test_a_failed_run_pings_fail_with_its_task_and_the_tail_of_the_error() -> None:
    error = "x" * 1000 + "the real reason"
    delivery = Delivery(
        event("run_failed", "failed"),
        run_row(RunStatus.FAILED, "failed: b.sh"),
        None,
        RunSummary(count=4, error_count=3, failed_task="b.sh", failed_error=error),
    )
    ping = ping_for(delivery, SETTINGS, "host-1")
    assert ping is not None and ping.key == "p-d"
    assert ping.params["state"] == "fail"
    assert ping.params["series"] == "7" and ping.params["host"] == "host-1"
    assert ping.params["metrics"] == {"duration": 90.5, "count": 4, "error_count": 3}
    message = ping.params["message"]
    assert message.startswith("failed: b.sh; b.sh failed: ...") and message.endswith("reason")
    assert len(message) < 600


def test_start_success_and_cancel_pings() -> None:
    start = ping_for(Delivery(event("run_started", "running"), None, None, None), SETTINGS, "h")
    assert start is not None and start.params["state"] == "run"
    assert start.params["stamp"] == T0.timestamp()
    rerun = ping_for(Delivery(event("run_running", "running"), None, None, None), SETTINGS, "h")
    assert rerun is not None and rerun.params["state"] == "run"
    ok = Delivery(
        event("run_succeeded", "succeeded"),
        run_row(RunStatus.SUCCEEDED),
        None,
        RunSummary(2, 0, None, None),
    )
    assert ping_for(ok, SETTINGS, "h").params["state"] == "complete"  # type: ignore[union-attr]
    cancelled = Delivery(
        event("run_cancelled", "cancelled"), run_row(RunStatus.CANCELLED), None, None
    )
    ping = ping_for(cancelled, SETTINGS, "h")
    assert ping is not None and ping.params["state"] == "complete"
    assert ping.params["message"] == "run cancelled"
    task = Delivery(event("task_run_failed", "failed", task=True), None, None, None)
    assert ping_for(task, SETTINGS, "h") is None


def test_sync_sends_new_and_changed_monitors_and_deletes_unscheduled_ones() -> None:
    spec = {"type": "job", "key": "p-a", "schedule": "0 * * * *"}
    desired = {"p-a": spec, "p-b": {**spec, "key": "p-b"}}
    synced = {
        "p-a": SyncedMonitor("p-a", "a", dict(spec)),
        "p-old": SyncedMonitor("p-old", "old", {}),
        "p-broken": SyncedMonitor("p-broken", "broken", {}),
    }
    plan = plan_sync(desired, synced, keep=["broken"])
    assert [m["key"] for m in plan.put] == ["p-b"]
    assert plan.delete == ["p-old"] and plan.unchanged == 1


def test_settings_come_from_the_environment() -> None:
    assert CronitorSettings.from_environment({}) is None
    settings = CronitorSettings.from_environment(
        {"CRONITOR_API_KEY": "k", "WORKFLOWS_CRONITOR_PREFIX": "x-", "CRONITOR_TIMEOUT": "3"}
    )
    assert settings == CronitorSettings(api_key="k", prefix="x-", timeout=3.0)
    with pytest.raises(UsageError, match="CRONITOR_TIMEOUT='soon'"):
        CronitorSettings.from_environment({"CRONITOR_API_KEY": "k", "CRONITOR_TIMEOUT": "soon"})
    assert grace_seconds(5) == 65 and grace_seconds(0.2) == 61
