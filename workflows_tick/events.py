"""What the events of the outbox mean, and the sink that hands them to hooks.

The database writes one event row per committed state change (see
``docs/monitoring.md``); its ``kind`` is one of :data:`KINDS`. The scheduler
delivers each to every :class:`Sink`: the registry's hooks (called with
dag-workflows' :class:`~workflows_tick.hooks.Event` values) and integrations such
as Cronitor.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from workflows_tick.hooks import DEFAULT_HOOK_TIMEOUT_SECONDS, Event, Hook
from workflows_tick.model import Dag, Task
from workflows_tick.queries import DagRunRow, EventRow, RunSummary, TaskRunRow

RUN_STARTED = "run_started"
RUN_RESTARTED = "run_running"
"""An ended run set running again by a rerun: for hooks and pings, a run start."""
RUN_SKIPPED = "run_skipped"
"""A scheduled fire recorded ``skipped`` (``overlap: skip``): no run started."""
TASK_RUN_CREATED = "task_run_created"
TASK_RUN_RETRIED = "task_run_retried"
TASK_RUN_STARTED = "task_run_started"
KINDS = (
    "run_started, run_running (a rerun), run_skipped, run_<status> (succeeded, failed, "
    "cancelled), task_run_created, "
    "task_run_retried, task_run_started, task_run_<status> (succeeded, failed, ...)"
)


def is_run_event(event: EventRow) -> bool:
    return event.task_run_id is None


def is_run_start(event: EventRow) -> bool:
    """A run started: created, or set running again by a rerun."""
    return event.kind in (RUN_STARTED, RUN_RESTARTED)


def hook_event(event: EventRow) -> Event | None:
    """The dag-workflows event a hook sees for this state change, if any.

    A task run waiting to start (created or retried) has none: hooks hear of it
    when it starts. A skipped fire has none either: no run started or finished.
    """
    if event.kind == RUN_SKIPPED:
        return None
    if is_run_event(event):
        return Event.DAG_RUN_START if is_run_start(event) else Event.DAG_RUN_FINISH
    if event.kind in (TASK_RUN_CREATED, TASK_RUN_RETRIED):
        return None
    return Event.TASK_RUN_START if event.kind == TASK_RUN_STARTED else Event.TASK_RUN_FINISH


@dataclass(frozen=True)
class Delivery:
    """An event with the rows it is about, as they are when it is delivered."""

    event: EventRow
    dag_run: DagRunRow | None
    task_run: TaskRunRow | None
    summary: RunSummary | None
    """The run's task runs (run events only)."""


class Sink(Protocol):
    """Somewhere events go. ``send`` raises when delivery failed (it is retried)."""

    @property
    def name(self) -> str:
        """Stable across restarts: an event records the sinks that took it."""
        ...

    @property
    def timeout(self) -> float: ...

    def wants(self, event: EventRow) -> bool: ...

    def send(self, delivery: Delivery) -> None: ...


class HookSink:
    """One registered hook, called as dag-workflows calls it."""

    def __init__(
        self,
        hook: Hook,
        dags: Callable[[], Mapping[str, Dag]],
        timeout: float = DEFAULT_HOOK_TIMEOUT_SECONDS,
    ) -> None:
        self.hook = hook
        self.dags = dags
        self.timeout = timeout
        self.name = f"hook:{hook_name(hook)}"

    def wants(self, event: EventRow) -> bool:
        return hook_event(event) is not None

    def send(self, delivery: Delivery) -> None:
        event = hook_event(delivery.event)
        assert event is not None
        self.hook(event, **hook_arguments(delivery, self.dags()))


def hook_sinks(
    hooks: Sequence[Hook],
    dags: Callable[[], Mapping[str, Dag]],
    timeout: float = DEFAULT_HOOK_TIMEOUT_SECONDS,
) -> list[HookSink]:
    """One sink per registered hook, in registration order, each with its own name."""
    sinks: list[HookSink] = []
    for hook in hooks:
        sink = HookSink(hook, dags, timeout)
        # The same function (or class) registered twice: each is remembered apart.
        base, n = sink.name, 1
        while any(s.name == sink.name for s in sinks):
            n += 1
            sink.name = f"{base}#{n}"
        sinks.append(sink)
    return sinks


def hook_name(hook: Hook) -> str:
    module = getattr(hook, "__module__", None) or ""
    name = getattr(hook, "__qualname__", None) or type(hook).__qualname__
    return f"{module}.{name}" if module else name


def hook_arguments(delivery: Delivery, dags: Mapping[str, Dag]) -> dict[str, object]:
    """dag-workflows' keyword arguments; ``exception`` is the error text of a failure."""
    event = delivery.event
    dag = dags.get(event.dag_name)
    task: Task | None = None
    if dag is not None and event.task_name is not None:
        try:
            task = dag.task(event.task_name)
        except Exception:  # the task was removed since
            task = None
    exception: str | None = None
    if event.status == "failed":
        if delivery.task_run is not None:
            exception = delivery.task_run.error or "failed"
        elif delivery.dag_run is not None and is_run_event(event):
            exception = delivery.dag_run.message or "failed"
    return {
        "dag": dag,
        "task": task,
        "dag_run": delivery.dag_run,
        "task_run": delivery.task_run,
        "exception": exception,
    }
