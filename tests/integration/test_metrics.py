"""Metrics and health, from a real PostgreSQL, scraped over real HTTP."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, text

from tests.support import write_project
from workflows_tick import metrics
from workflows_tick.counters import Counters
from workflows_tick.health import LoopHealth, check_loop, stale_after
from workflows_tick.metrics_server import MetricsServer
from workflows_tick.scheduler import trigger_dag
from workflows_tick.testing import FakeClock, InstantManager
from workflows_tick.tick import Ticker

DAG = {"workflow.yaml": "description: x\nschedule: '0 * * * *'\n", "a.yaml": "type: no_op\n"}


def samples(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text body, by (name, sorted labels)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def test_gauges_come_from_the_database(engine: Engine, tmp_path: Path, clock: FakeClock) -> None:
    reg = write_project(tmp_path, {"good": DAG, "bad": DAG})
    for _ in range(2):
        trigger_dag("good", creator="t", engine=engine, clock=clock)
    trigger_dag("bad", creator="t", engine=engine, clock=clock)
    t = Ticker(
        reg,
        InstantManager(outcome=lambda launch: launch.dag.name == "good"),
        engine,
        "config.py",
        clock=clock,
    )
    for _ in range(10):
        t.run_pass()
    trigger_dag("good", creator="t", engine=engine, clock=clock)  # waiting to be advanced
    counters = Counters()
    counters.add("passes", 10)
    got = samples(metrics.render(engine, counters))
    assert got[("workflows_database_up", ())] == 1
    assert got[("workflows_dag_runs", (("dag", "good"), ("status", "succeeded")))] == 2
    assert got[("workflows_dag_runs", (("dag", "good"), ("status", "running")))] == 1
    assert got[("workflows_dag_runs", (("dag", "bad"), ("status", "failed")))] == 1
    assert got[("workflows_dag_last_run_status", (("dag", "bad"), ("status", "failed")))] == 1
    assert got[("workflows_dag_last_run_status", (("dag", "bad"), ("status", "succeeded")))] == 0
    assert got[("workflows_dag_last_run_status", (("dag", "good"), ("status", "succeeded")))] == 1
    assert got[("workflows_dag_last_success_timestamp_seconds", (("dag", "good"),))] == (
        clock.now.timestamp()
    )
    assert ("workflows_dag_last_success_timestamp_seconds", (("dag", "bad"),)) not in got
    assert got[("workflows_dag_next_fire_timestamp_seconds", (("dag", "good"),))] == (
        clock.now.replace(hour=13, minute=0, second=0).timestamp()
    )
    assert got[("workflows_task_runs", (("status", "waiting"),))] == 0
    assert got[("workflows_events_undelivered", ())] > 0
    assert got[("workflows_passes_total", ())] == 10


def test_schedule_delay_and_oldest_waiting_age(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    reg = write_project(tmp_path, {"hourly": DAG})
    t = Ticker(reg, InstantManager(capacity=0), engine, "config.py", clock=clock)
    t.run_pass()
    clock.advance(minutes=59, seconds=42)  # 13:00:12: the 13:00 run is created 12 s late
    t.run_pass()
    t.run_pass()
    with engine.begin() as conn:  # its waiting task run became startable 30 s ago
        conn.execute(text("UPDATE task_run SET not_before = now() - interval '30 seconds'"))
    got = samples(metrics.render(engine))
    assert got[("workflows_dag_schedule_delay_seconds", (("dag", "hourly"),))] == 12
    assert 30 <= got[("workflows_oldest_waiting_task_run_age_seconds", ())] < 300
    assert got[("workflows_task_runs", (("status", "waiting"),))] == 1


@pytest.fixture
def unreachable() -> Iterator[Engine]:
    engine = sqlalchemy.create_engine(
        "postgresql+psycopg2://nobody@127.0.0.1:9/none", connect_args={"connect_timeout": 2}
    )
    yield engine
    engine.dispose()


def get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read(), response.headers["Content-Type"]
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers["Content-Type"]


def serve(engine: Engine, health: Any) -> MetricsServer:
    server = MetricsServer(engine, health, port=0, host="127.0.0.1")
    server.start()
    return server


def test_metrics_and_healthz_over_http(engine: Engine) -> None:
    passes: list[float] = []
    now = [1000.0]
    health = LoopHealth(
        engine,
        interval=5,
        last_pass_at=lambda: passes[-1] if passes else None,
        clock=lambda: now[0],
    )
    server = serve(engine, health)
    base = f"http://127.0.0.1:{server.port}"
    try:
        status, body, content_type = get(base + "/metrics")
        assert status == 200 and content_type.startswith("text/plain; version=0.0.4")
        assert samples(body)[("workflows_database_up", ())] == 1
        assert get(base + "/healthz")[:2] == (200, b"ok\n")
        passes.append(now[0] + 10)
        now[0] += 10 + stale_after(5) + 1
        status, body, _ = get(base + "/healthz")
        assert status == 503
        assert body.startswith(b"the last pass completed 31s ago, more than 30s")
        assert get(base + "/nothing")[0] == 404
    finally:
        server.stop()


def test_healthz_and_metrics_when_the_database_is_away(unreachable: Engine) -> None:
    server = serve(unreachable, LoopHealth(unreachable, interval=5, last_pass_at=lambda: None))
    base = f"http://127.0.0.1:{server.port}"
    try:
        status, body, _ = get(base + "/healthz")
        assert status == 503 and body.startswith(b"database unavailable")
        status, body, _ = get(base + "/metrics")
        got = samples(body)
        assert status == 200 and got[("workflows_database_up", ())] == 0
        assert ("workflows_passes_total", ()) in got
    finally:
        server.stop()


def test_a_loop_is_judged_from_its_start_until_its_first_pass() -> None:
    assert check_loop(None, started_at=0, interval=1, now=29) is None
    assert check_loop(None, started_at=0, interval=1, now=31) == (
        "the scheduler started 31s ago, more than 30s"
    )
    assert check_loop(100, started_at=0, interval=20, now=159) is None  # 3 x 20 s
    assert check_loop(100, started_at=0, interval=20, now=161) is not None


def test_paused_dags_and_scheduler_heartbeats_are_gauges(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    from workflows_tick import queries

    with engine.begin() as conn:
        queries.set_paused(conn, "quiet", True, "ops", clock.now)
        queries.record_heartbeat(conn, "s-1", "host-a", 42, "worker", clock.now, 0.25, ["quiet"])
    got = samples(metrics.render(engine))
    assert got[("workflows_dag_paused", (("dag", "quiet"),))] == 1
    labels = (("host", "host-a"), ("manager", "worker"), ("scheduler", "s-1"))
    assert got[("workflows_scheduler_last_pass_duration_seconds", labels)] == 0.25
    assert got[("workflows_scheduler_last_pass_timestamp_seconds", labels)] == (
        clock.now.timestamp()
    )
