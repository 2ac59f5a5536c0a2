"""Cronitor monitors and telemetry against a local server standing in for the service."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from tests.fake_cronitor import FakeCronitor
from tests.support import write_project
from workflows_tick.cronitor_monitoring import CronitorSettings, CronitorSink, sync_monitors
from workflows_tick.dags import DagRegistry
from workflows_tick.outbox import Outbox
from workflows_tick.scheduler import trigger_dag
from workflows_tick.testing import FakeClock, InstantManager
from workflows_tick.tick import Ticker

HOURLY = "description: x\nschedule: '0 * * * *'\ntimezone: Europe/Paris\n"


@pytest.fixture
def fake() -> Iterator[FakeCronitor]:
    server = FakeCronitor()
    yield server
    server.close()


def settings(fake: FakeCronitor, **kw: object) -> CronitorSettings:
    return CronitorSettings(api_key="k3y", prefix="prod-", url=fake.url, **kw)  # type: ignore[arg-type]


def test_monitors_are_put_once_then_only_when_schedules_change(
    engine: Engine, tmp_path: Path, fake: FakeCronitor
) -> None:
    reg = write_project(
        tmp_path,
        {
            "hourly": {"workflow.yaml": HOURLY, "a.yaml": "type: no_op\n"},
            "daily": {
                "workflow.yaml": "description: x\nschedule: '0 3 * * *'\n",
                "a.yaml": "type: no_op\n",
            },
            "manual": {"workflow.yaml": "description: x\n", "a.yaml": "type: no_op\n"},
        },
    )
    s = settings(fake)
    plan = sync_monitors(engine, reg.dags(), s, interval=5, dry_run=True)
    assert plan is not None and [m["key"] for m in plan.put] == ["prod-daily", "prod-hourly"]
    assert fake.requests == []  # a dry run sends nothing
    sync_monitors(engine, reg.dags(), s, interval=5)
    assert fake.puts() == [
        [
            {
                "type": "job",
                "key": "prod-daily",
                "name": "prod-daily",
                "schedule": "0 3 * * *",
                "timezone": "UTC",
                "grace_seconds": 65,
            },
            {
                "type": "job",
                "key": "prod-hourly",
                "name": "prod-hourly",
                "schedule": "0 * * * *",
                "timezone": "Europe/Paris",
                "grace_seconds": 65,
            },
        ]
    ]
    assert fake.requests[0].auth is not None and fake.requests[0].auth.startswith("Basic ")
    sync_monitors(engine, reg.dags(), s, interval=5)
    assert len(fake.puts()) == 1  # nothing changed: nothing sent
    (tmp_path / "hourly" / "workflow.yaml").write_text(HOURLY.replace("0 *", "30 *"))
    (tmp_path / "daily" / "workflow.yaml").write_text("description: x\n")  # unscheduled
    reg.reload()
    sync_monitors(engine, reg.dags(), s, interval=5)
    assert [[m["key"] for m in put] for put in fake.puts()] == [
        ["prod-daily", "prod-hourly"],
        ["prod-hourly"],
    ]
    assert fake.puts()[-1][0]["schedule"] == "30 * * * *"
    assert fake.deletes() == ["prod-daily"]


def test_a_dag_that_fails_to_load_keeps_its_monitor(
    engine: Engine, tmp_path: Path, fake: FakeCronitor
) -> None:
    reg = write_project(tmp_path, {"hourly": {"workflow.yaml": HOURLY, "a.yaml": "type: no_op\n"}})
    sync_monitors(engine, reg.dags(), settings(fake), interval=5)
    (tmp_path / "hourly" / "workflow.yaml").write_text("schedule: [not, cron\n")
    reg.reload()
    sync_monitors(engine, reg.dags(), settings(fake), interval=5, keep=["hourly"])
    assert fake.deletes() == []


def test_monitor_sync_with_the_service_down_sends_again_later(
    engine: Engine, tmp_path: Path, fake: FakeCronitor
) -> None:
    reg = write_project(tmp_path, {"hourly": {"workflow.yaml": HOURLY, "a.yaml": "type: no_op\n"}})
    fake.status = 503
    with pytest.raises(Exception, match="Unexpected error"):
        sync_monitors(engine, reg.dags(), settings(fake), interval=5)
    fake.status = 200
    sync_monitors(engine, reg.dags(), settings(fake), interval=5)
    assert len(fake.puts()) == 2
    with engine.connect() as conn:
        assert conn.execute(text("SELECT key FROM cronitor_monitor")).all() == [("prod-hourly",)]


def failing_run(engine: Engine, tmp_path: Path, clock: FakeClock) -> tuple[DagRegistry, int]:
    reg = write_project(
        tmp_path,
        {
            "hourly": {
                "workflow.yaml": HOURLY + "retries: 0\n",
                "a.yaml": "type: no_op\n",
                "b.yaml": "type: no_op\ninputs: [a.yaml]\n",
            }
        },
    )
    run = trigger_dag("hourly", creator="t", engine=engine, clock=clock)
    t = Ticker(
        reg,
        InstantManager(outcome=lambda launch: launch.task.name == "a.yaml"),
        engine,
        "config.py",
        clock=clock,
    )
    for _ in range(10):
        clock.advance(seconds=1)
        t.run_pass()
    return reg, run.id


def test_run_and_fail_pings_with_series_host_metrics_and_message(
    engine: Engine, tmp_path: Path, clock: FakeClock, fake: FakeCronitor
) -> None:
    _, run_id = failing_run(engine, tmp_path, clock)
    Outbox(engine, [CronitorSink(settings(fake), host="sched-1")]).drain()
    pings = fake.pings()
    assert [(p["key"], p["state"], p["series"], p["host"]) for p in pings] == [
        ("prod-hourly", "run", str(run_id), "sched-1"),
        ("prod-hourly", "fail", str(run_id), "sched-1"),
    ]
    assert {p["api_key"] for p in pings} == {"k3y"}
    assert float(pings[0]["stamp"]) > 0
    metrics = dict(m.split(":") for m in pings[1]["metric"])
    assert float(metrics["duration"]) > 0
    assert (metrics["count"], metrics["error_count"]) == ("2", "1")
    assert "b.yaml failed: it failed" in pings[1]["message"]
    with engine.connect() as conn:
        assert (
            conn.execute(text("SELECT count(*) FROM event WHERE delivered_at IS NULL")).scalar()
            == 0
        )


def test_pings_wait_in_the_outbox_while_the_service_is_down_or_slow(
    engine: Engine, tmp_path: Path, clock: FakeClock, fake: FakeCronitor
) -> None:
    failing_run(engine, tmp_path, clock)
    fake.status = 500
    box = Outbox(engine, [CronitorSink(settings(fake, timeout=0.5))])
    box.drain()
    fake.status, fake.delay = 200, 2.0  # now too slow for the 0.5 s timeout
    with engine.begin() as conn:
        conn.execute(text("UPDATE event SET next_attempt_at = now()"))
    box.drain()
    with engine.connect() as conn:
        errors = conn.execute(
            text("SELECT attempts, last_error FROM event WHERE kind LIKE 'run_%' ORDER BY id")
        ).all()
    assert [a for a, _ in errors] == [2, 2]
    assert all(e.endswith("cronitor: timed out after 0.5s") for _, e in errors)
    fake.delay = 0
    with engine.begin() as conn:
        conn.execute(text("UPDATE event SET next_attempt_at = now()"))
    box.drain()
    states = [p["state"] for p in fake.pings()]
    assert states.count("run") >= 2 and states[-2:] == ["run", "fail"]
    with engine.connect() as conn:
        assert (
            conn.execute(text("SELECT count(*) FROM event WHERE delivered_at IS NULL")).scalar()
            == 0
        )
