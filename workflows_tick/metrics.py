"""Prometheus metrics: gauges read from the database on each scrape, and this
process's counters.

Every replica, and ``workflows CONFIG metrics`` run from a CronJob, reports the
same gauges: they come from the tables, not from the memory of one process.
``prometheus_client`` is imported only when metrics are rendered (it costs a
quarter of a second to import).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
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
    """The metrics in the Prometheus text format.

    When the database does not answer, ``workflows_database_up`` is 0 and only
    this process's counters follow.
    """
    from prometheus_client import generate_latest
    from prometheus_client.registry import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(engine, counters))
    return generate_latest(registry)


class _Collector:
    def __init__(self, engine: Engine, counters: Counters) -> None:
        self.engine = engine
        self.counters = counters

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        try:
            with self.engine.connect() as conn:
                gauges = queries.metric_gauges(conn)
                conn.rollback()
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            log.warning("metrics: cannot read the database: %s", redact(first))
            gauges = None
        yield GaugeMetricFamily(
            PREFIX + "database_up", "1 if the database answered this scrape.", gauges is not None
        )
        if gauges is not None:
            yield from _gauges(gauges, GaugeMetricFamily)
        for name, value in self.counters.values().items():
            yield CounterMetricFamily(PREFIX + name, NAMES[name], value)


def _gauges(g: queries.Gauges, Gauge: type[GaugeMetricFamily]) -> Iterator[Metric]:
    runs = Gauge(
        PREFIX + "dag_runs", "Runs in the database by DAG and status.", labels=["dag", "status"]
    )
    for (dag, status), n in sorted(g.runs.items()):
        runs.add_metric([dag, status], n)
    yield runs
    task_runs = Gauge(PREFIX + "task_runs", "Task runs waiting or running.", labels=["status"])
    task_runs.add_metric(["waiting"], g.task_runs_waiting)
    task_runs.add_metric(["running"], g.task_runs_running)
    yield task_runs
    age = 0.0
    if g.oldest_startable_since is not None:
        age = max(0.0, (g.now - g.oldest_startable_since).total_seconds())
    yield Gauge(
        PREFIX + "oldest_waiting_task_run_age_seconds",
        "How long the oldest waiting task run that may start has waited (0: none).",
        age,
    )
    last = Gauge(
        PREFIX + "dag_last_run_status",
        "1 for the status of each DAG's last ended run.",
        labels=["dag", "status"],
    )
    ended = Gauge(
        PREFIX + "dag_last_run_end_timestamp_seconds",
        "When each DAG's last ended run ended.",
        labels=["dag"],
    )
    success = Gauge(
        PREFIX + "dag_last_success_timestamp_seconds",
        "When each DAG's last successful run ended.",
        labels=["dag"],
    )
    delay = Gauge(
        PREFIX + "dag_schedule_delay_seconds",
        "From the fire time of each DAG's last scheduled run to its creation.",
        labels=["dag"],
    )
    for d in g.dags:
        if d.last_status is not None:
            for status in RunStatus:
                if status is not RunStatus.RUNNING:
                    last.add_metric([d.dag_name, status.value], float(d.last_status is status))
        if d.last_ended_at is not None:
            ended.add_metric([d.dag_name], d.last_ended_at.timestamp())
        if d.last_success_at is not None:
            success.add_metric([d.dag_name], d.last_success_at.timestamp())
        if d.schedule_delay is not None:
            delay.add_metric([d.dag_name], d.schedule_delay)
    yield from (last, ended, success, delay)
    fire = Gauge(
        PREFIX + "dag_next_fire_timestamp_seconds",
        "When each scheduled DAG fires next (in the past: overdue).",
        labels=["dag"],
    )
    for dag, at in sorted(g.next_fire.items()):
        fire.add_metric([dag], at.timestamp())
    yield fire
    yield Gauge(
        PREFIX + "events_undelivered",
        "Events not yet delivered to every hook and integration (and not given up).",
        g.events_undelivered,
    )
    yield Gauge(
        PREFIX + "events_given_up",
        "Events given up after their last delivery attempt failed.",
        g.events_given_up,
    )


if TYPE_CHECKING:
    from prometheus_client.core import GaugeMetricFamily
