"""Prometheus metrics: gauges read from the database on each scrape, and this
process's counters.

Every replica, and ``workflows CONFIG metrics`` run from a CronJob, reports the
same gauges: they come from the tables, not from the memory of one process.

The per-DAG families (thousands of samples with 500 DAGs) are written by a small
text-format writer here: ``prometheus_client``'s generic one validates every
label of every sample and costs ~25 µs a sample, most of a scrape's budget. The
rest (``workflows_database_up`` and the counters) goes through
``prometheus_client``, imported only when metrics are rendered (it costs a
quarter of a second to import). Tests parse the whole body with its parser.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from workflows_tick import queries
from workflows_tick.counters import COUNTERS, NAMES, Counters
from workflows_tick.logs import redact
from workflows_tick.states import RunStatus

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "workflows_"


def render(engine: Engine, counters: Counters = COUNTERS) -> bytes:
    """The metrics in the Prometheus text format (0.0.4).

    When the database does not answer, ``workflows_database_up`` is 0 and only
    this process's counters follow.
    """
    from prometheus_client import generate_latest
    from prometheus_client.registry import CollectorRegistry

    try:
        with engine.connect() as conn:
            gauges: queries.Gauges | None = queries.metric_gauges(conn)
            conn.rollback()
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.warning("metrics: cannot read the database: %s", redact(first))
        gauges = None
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ProcessCollector(gauges is not None, counters))
    body = generate_latest(registry)
    if gauges is None:
        return body
    return body + "".join(database_lines(gauges)).encode()


class _ProcessCollector:
    def __init__(self, database_up: bool, counters: Counters) -> None:
        self.database_up = database_up
        self.counters = counters

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        yield GaugeMetricFamily(
            PREFIX + "database_up", "1 if the database answered this scrape.", self.database_up
        )
        for name, value in self.counters.values().items():
            yield CounterMetricFamily(PREFIX + name, NAMES[name], value)


# --- the gauges read from the database ----------------------------------------------------


_NOT_ENDED = (RunStatus.RUNNING, RunStatus.SKIPPED)
"""Statuses that are not the end of a run that ran (for the ``dag_last_run_*`` gauges)."""


@dataclass(frozen=True)
class DagGauges:
    """What ``/metrics`` reports for one DAG (``None``: never happened)."""

    dag_name: str
    last_status: RunStatus | None
    """The status of the run that ended last."""
    last_ended_at: datetime | None
    last_success_at: datetime | None
    schedule_delay: float | None
    """Seconds from the last scheduled run's fire time to its creation."""
    last_skipped_at: datetime | None = None
    """When the DAG's last fire was recorded ``skipped`` (``overlap: skip``)."""


def dag_gauges(
    groups: Sequence[queries.RunGroup], last_scheduled: Sequence[queries.LastScheduled]
) -> list[DagGauges]:
    """Per-DAG gauges from the runs grouped by DAG and status."""
    by_dag: dict[str, list[queries.RunGroup]] = {}
    for group in groups:
        by_dag.setdefault(group.dag_name, []).append(group)
    delays = {s.dag_name: (s.created_at - s.scheduled_for).total_seconds() for s in last_scheduled}
    found = []
    for dag, rows in sorted(by_dag.items()):
        # A skipped fire is not a run that ended: it must not hide the last run's status.
        ended = [r for r in rows if r.status not in _NOT_ENDED and r.last_ended_at]
        last = max(ended, key=lambda r: r.last_ended_at or datetime.min, default=None)
        found.append(
            DagGauges(
                dag_name=dag,
                last_status=last.status if last else None,
                last_ended_at=last.last_ended_at if last else None,
                last_success_at=next(
                    (r.last_ended_at for r in rows if r.status is RunStatus.SUCCEEDED), None
                ),
                schedule_delay=delays.get(dag),
                last_skipped_at=next(
                    (r.last_ended_at for r in rows if r.status is RunStatus.SKIPPED), None
                ),
            )
        )
    return found


def database_lines(g: queries.Gauges) -> Iterator[str]:
    """The gauges read from the database, in the text format."""
    yield from _family(
        "dag_runs",
        "Runs in the database by DAG and status.",
        ((_labels(dag=r.dag_name, status=r.status.value), r.runs) for r in g.runs),
    )
    yield from _family(
        "task_runs",
        "Task runs waiting or running.",
        [
            (_labels(status="waiting"), g.task_runs_waiting),
            (_labels(status="running"), g.task_runs_running),
        ],
    )
    yield from _family(
        "task_runs_waiting_on_other_dags",
        "Waiting task runs that wait for inputs on other DAGs (part of the waiting ones).",
        [("", g.task_runs_waiting_on_other_dags)],
    )
    age = 0.0
    if g.oldest_startable_since is not None:
        age = max(0.0, (g.now - g.oldest_startable_since).total_seconds())
    yield from _family(
        "oldest_waiting_task_run_age_seconds",
        "How long the oldest waiting task run that may start has waited (0: none).",
        [("", age)],
    )
    dags = dag_gauges(g.runs, g.last_scheduled)
    yield from _family(
        "dag_last_run_status",
        "1 for the status of each DAG's last ended run, 0 for the other end states.",
        (
            (_labels(dag=d.dag_name, status=status.value), float(d.last_status is status))
            for d in dags
            if d.last_status is not None
            for status in RunStatus
            if status not in _NOT_ENDED
        ),
    )
    yield from _family(
        "dag_last_run_end_timestamp_seconds",
        "When each DAG's last ended run ended.",
        ((_labels(dag=d.dag_name), d.last_ended_at.timestamp()) for d in dags if d.last_ended_at),
    )
    yield from _family(
        "dag_last_success_timestamp_seconds",
        "When each DAG's last successful run ended.",
        (
            (_labels(dag=d.dag_name), d.last_success_at.timestamp())
            for d in dags
            if d.last_success_at
        ),
    )
    yield from _family(
        "dag_last_skipped_timestamp_seconds",
        "When each DAG's last scheduled fire was skipped because a run had not ended.",
        (
            (_labels(dag=d.dag_name), d.last_skipped_at.timestamp())
            for d in dags
            if d.last_skipped_at
        ),
    )
    yield from _family(
        "dag_schedule_delay_seconds",
        "From the fire time of each DAG's last scheduled run to its creation.",
        ((_labels(dag=d.dag_name), d.schedule_delay) for d in dags if d.schedule_delay is not None),
    )
    yield from _family(
        "dag_next_fire_timestamp_seconds",
        "When each scheduled DAG fires next (in the past: overdue).",
        ((_labels(dag=dag), at.timestamp()) for dag, at in sorted(g.next_fire.items())),
    )
    yield from _family(
        "dag_paused",
        "1 for each paused DAG (its schedule creates no runs).",
        ((_labels(dag=dag), 1.0) for dag in g.paused),
    )
    yield from _family(
        "scheduler_last_pass_timestamp_seconds",
        "When each running scheduler last completed a pass.",
        (
            (_labels(scheduler=s.id, host=s.host, manager=s.manager), s.last_pass_at.timestamp())
            for s in g.schedulers
        ),
    )
    yield from _family(
        "scheduler_last_pass_duration_seconds",
        "How long each running scheduler's last pass took.",
        (
            (_labels(scheduler=s.id, host=s.host, manager=s.manager), s.last_pass_seconds)
            for s in g.schedulers
        ),
    )
    yield from _family(
        "events_undelivered",
        "Events not yet delivered to every hook and integration (and not given up).",
        [("", g.events_undelivered)],
    )
    yield from _family(
        "events_given_up",
        "Events given up after their last delivery attempt failed.",
        [("", g.events_given_up)],
    )


def _family(name: str, help: str, samples: Iterable[tuple[str, float]]) -> Iterator[str]:
    name = PREFIX + name
    yield f"# HELP {name} {help}\n# TYPE {name} gauge\n"
    for labels, value in samples:
        yield f"{name}{labels} {_number(value)}\n"


def _labels(**pairs: str) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in pairs.items())
    return "{" + inner + "}"


def _escape(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return value


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))
