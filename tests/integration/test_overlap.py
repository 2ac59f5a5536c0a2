"""The ``overlap`` policy of scheduled fires (queue, skip, replace) on a real
PostgreSQL: what a fire does while an earlier run of its DAG has not ended, with one
scheduler and with several firing at once, and what hooks and Cronitor hear of it."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from tests.fake_cronitor import FakeCronitor
from tests.support import passes_at_once, rows, write_project
from workflows_tick import metrics
from workflows_tick.cronitor_monitoring import CronitorSettings, CronitorSink
from workflows_tick.dags import DagRegistry
from workflows_tick.errors import RunStateError
from workflows_tick.events import hook_sinks
from workflows_tick.hooks import Event
from workflows_tick.outbox import Outbox
from workflows_tick.scheduler import backfill, rerun_run, trigger_dag
from workflows_tick.testing import FakeClock, InstantManager
from workflows_tick.tick import Ticker

LONG = 10**6
"""A lease no test outlives: the clock jumps by hours between passes."""


def hourly(overlap: str | None) -> dict[str, str]:
    """A two-task hourly DAG with the ``overlap`` key (None: the key is absent)."""
    key = "" if overlap is None else f"overlap: {overlap}\n"
    return {
        "workflow.yaml": f"description: x\nschedule: '0 * * * *'\n{key}",
        "a.yaml": "type: no_op\n",
        "b.yaml": "type: no_op\ninputs: [a.yaml]\n",
    }


def ticker(engine: Engine, reg: DagRegistry, manager: InstantManager, clock: FakeClock) -> Ticker:
    return Ticker(reg, manager, engine, "config.py", clock=clock, lease_seconds=LONG)


def at(hour: int) -> datetime:
    return datetime(2024, 1, 1, hour, tzinfo=UTC)


def runs(engine: Engine) -> list[tuple[Any, ...]]:
    return rows(
        engine,
        "SELECT id, scheduled_for, status, trigger, message FROM dag_run ORDER BY id",
    )


def fire(t: Ticker, clock: FakeClock, passes: int = 3) -> None:
    """Move to the next full hour and run a few passes (one fires, the rest advance)."""
    now = clock.now
    clock.advance(seconds=3600 - (now.minute * 60 + now.second))
    for _ in range(passes):
        t.run_pass()


def test_queue_is_the_default_and_queues_one_run_per_fire(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    for policy in (None, "queue"):
        reg = write_project(tmp_path / str(policy), {"d": hourly(policy)})
        with engine.begin() as conn:
            conn.exec_driver_sql("TRUNCATE dag_run, dag_schedule CASCADE")
        t = ticker(engine, reg, InstantManager(finish=False), clock)
        t.run_pass()
        fire(t, clock)
        fire(t, clock)
        found = runs(engine)
        assert [(r[2], r[4]) for r in found] == [("running", None), ("running", None)]
        # Only the earliest advances: the second run waits with no task run.
        assert rows(engine, "SELECT DISTINCT dag_run_id FROM task_run") == [(found[0][0],)]


def test_skip_records_the_fire_as_skipped_and_runs_again_once_the_run_ended(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    reg = write_project(tmp_path, {"d": hourly("skip")})
    manager = InstantManager(finish=False)
    t = ticker(engine, reg, manager, clock)
    t.run_pass()
    fire(t, clock)  # 13:00: a run, its first task never ends
    fire(t, clock)  # 14:00: skipped
    fire(t, clock)  # 15:00: skipped
    first = runs(engine)[0][0]
    message = f"skipped: run {first} had not ended (overlap: skip)"
    assert [r[1:] for r in runs(engine)] == [
        (at(13), "running", "schedule", None),
        (at(14), "skipped", "schedule", message),
        (at(15), "skipped", "schedule", message),
    ]
    # A skipped run ended when it was recorded, and never ran anything.
    assert rows(
        engine, "SELECT count(*) FROM dag_run WHERE status = 'skipped' AND ended_at = created_at"
    ) == [(2,)]
    assert rows(engine, "SELECT DISTINCT dag_run_id FROM task_run") == [(first,)]
    assert [launch.dag_run_id for launch in manager.started] == [first]
    manager.finish = True  # the 13:00 run ends
    for _ in range(5):
        t.run_pass()
    assert runs(engine)[0][2] == "succeeded"
    fire(t, clock, passes=6)  # 16:00: nothing running, so it runs
    last = runs(engine)[-1]
    assert last[1:4] == (at(16), "succeeded", "schedule")


def test_replace_cancels_the_running_run_and_the_new_run_runs(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    reg = write_project(tmp_path, {"d": hourly("replace")})
    manager = InstantManager(finish=False)
    t = ticker(engine, reg, manager, clock)
    t.run_pass()
    fire(t, clock)  # 13:00: its first attempt never ends
    old = runs(engine)[0][0]
    fire(t, clock)  # 14:00: replaces it
    new = runs(engine)[1][0]
    assert [r[1:] for r in runs(engine)] == [
        (at(13), "cancelled", "schedule", f"replaced by run {new} (overlap: replace)"),
        (at(14), "running", "schedule", None),
    ]
    # The old attempt was stopped and recorded cancelled, never retried; the new run
    # started its first task.
    assert rows(
        engine, "SELECT dag_run_id, task_name, attempt, status FROM task_run ORDER BY id"
    ) == [(old, "a.yaml", 1, "cancelled"), (new, "a.yaml", 1, "running")]
    assert [launch.dag_run_id for launch in manager.started] == [old, new]
    manager.finish = True
    for _ in range(6):
        t.run_pass()
    assert runs(engine)[1][2] == "succeeded"
    assert rows(engine, f"SELECT count(*) FROM task_run WHERE dag_run_id = {old}") == [(1,)]


def test_manual_triggers_and_backfills_are_never_skipped_and_replace_nothing(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    reg = write_project(tmp_path, {"s": hourly("skip"), "r": hourly("replace")})
    t = ticker(engine, reg, InstantManager(finish=False), clock)
    t.run_pass()
    fire(t, clock)  # 13:00: one scheduled run of each, never ending
    clock.advance(minutes=10)
    for name in ("s", "r"):
        trigger_dag(name, creator="t", engine=engine, clock=clock)
        backfill(reg.load(name), at(10), at(11), by="t", engine=engine, clock=clock)  # type: ignore[arg-type]
    for _ in range(3):
        t.run_pass()
    assert rows(
        engine,
        "SELECT dag_name, trigger, status, count(*) FROM dag_run GROUP BY 1, 2, 3 ORDER BY 1, 2",
    ) == [
        ("r", "backfill", "running", 2),
        ("r", "manual", "running", 1),
        ("r", "schedule", "running", 1),
        ("s", "backfill", "running", 2),
        ("s", "manual", "running", 1),
        ("s", "schedule", "running", 1),
    ]


def test_three_schedulers_firing_together_make_one_row_per_fire_and_one_running_run(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    reg = write_project(tmp_path, {"s": hourly("skip"), "r": hourly("replace")})
    tickers = [ticker(engine, reg, InstantManager(finish=False), clock) for _ in range(3)]
    tickers[0].run_pass()
    fires = 6
    for _ in range(fires):
        now = clock.now
        clock.advance(seconds=3600 - (now.minute * 60 + now.second))
        for _ in range(2):  # a round that fires, and one that advances what it made
            passes_at_once(tickers)
        assert rows(
            engine, "SELECT dag_name, count(*) FROM dag_run WHERE status = 'running' GROUP BY 1"
        ) == [("r", 1), ("s", 1)]
    assert rows(
        engine,
        "SELECT dag_name, count(*), count(DISTINCT scheduled_for) FROM dag_run GROUP BY 1 "
        "ORDER BY 1",
    ) == [("r", fires, fires), ("s", fires, fires)]
    assert rows(
        engine, "SELECT status, count(*) FROM dag_run WHERE dag_name = 's' GROUP BY 1 ORDER BY 1"
    ) == [("running", 1), ("skipped", fires - 1)]
    # Each replaced run names the run that replaced it: the next one.
    replaced = rows(
        engine, "SELECT id, status, message FROM dag_run WHERE dag_name = 'r' ORDER BY id"
    )
    for (_, status, message), (following, _, _) in itertools.pairwise(replaced):
        assert (status, message) == ("cancelled", f"replaced by run {following} (overlap: replace)")
    assert replaced[-1][1] == "running"
    # No attempt of a replaced run is left running; none was retried.
    assert rows(
        engine,
        "SELECT count(*) FROM task_run t JOIN dag_run r ON r.id = t.dag_run_id "
        "WHERE r.status = 'cancelled' AND (t.status <> 'cancelled' OR t.attempt > 1)",
    ) == [(0,)]


# --- what hooks and Cronitor hear -------------------------------------------------------------


@pytest.fixture
def cronitor() -> Iterator[FakeCronitor]:
    server = FakeCronitor()
    yield server
    server.close()


def test_a_skipped_fire_is_a_run_skipped_event_that_hooks_and_cronitor_ignore(
    engine: Engine, tmp_path: Path, clock: FakeClock, cronitor: FakeCronitor
) -> None:
    reg = write_project(tmp_path, {"d": hourly("skip")})
    t = ticker(engine, reg, InstantManager(finish=False), clock)
    t.run_pass()
    fire(t, clock)
    fire(t, clock)
    first, skipped = (r[0] for r in runs(engine))
    assert rows(engine, f"SELECT kind, status FROM event WHERE dag_run_id = {skipped}") == [
        ("run_skipped", "skipped")
    ]
    calls: list[tuple[Event, int]] = []

    def hook(event: Event, dag_run: Any = None, **_: Any) -> None:
        calls.append((event, dag_run.id))

    settings = CronitorSettings(api_key="k3y", url=cronitor.url)
    sinks = [*hook_sinks([hook], lambda: t.dags), CronitorSink(settings, host="h")]
    Outbox(engine, sinks).drain()
    assert (Event.DAG_RUN_START, first) in calls
    assert [c for c in calls if c[1] == skipped] == []
    assert [(p["state"], p["series"]) for p in cronitor.pings()] == [("run", str(first))]
    # Delivered (to nobody), not left pending.
    assert rows(engine, "SELECT count(*) FROM event WHERE delivered_at IS NULL") == [(0,)]


def test_a_skipped_fire_is_counted_and_never_hides_the_last_run_status(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    reg = write_project(tmp_path, {"d": hourly("skip")})
    manager = InstantManager(outcome=lambda launch: False)
    t = ticker(engine, reg, manager, clock)
    t.run_pass()
    fire(t, clock, passes=6)  # 13:00: fails (three attempts)
    manager.finish = False
    fire(t, clock)  # 14:00: runs, never ends
    fire(t, clock)  # 15:00: skipped, the last row to have ended
    assert [r[2] for r in runs(engine)] == ["failed", "running", "skipped"]
    got = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics.render(engine).decode())
        for s in family.samples
    }
    assert got[("workflows_dag_runs", (("dag", "d"), ("status", "skipped")))] == 1
    assert got[("workflows_dag_last_run_status", (("dag", "d"), ("status", "failed")))] == 1
    assert ("workflows_dag_last_run_status", (("dag", "d"), ("status", "skipped"))) not in got
    assert got[("workflows_dag_last_skipped_timestamp_seconds", (("dag", "d"),))] == (
        at(15).timestamp()
    )


def test_rerun_all_runs_a_skipped_fire_after_all(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    reg = write_project(tmp_path, {"d": hourly("skip")})
    manager = InstantManager(finish=False)
    t = ticker(engine, reg, manager, clock)
    t.run_pass()
    fire(t, clock)
    fire(t, clock)
    skipped = runs(engine)[1][0]
    with pytest.raises(RunStateError, match="--all"):
        rerun_run(skipped, engine=engine, clock=clock)
    manager.finish = True
    rerun_run(skipped, every_task=True, engine=engine, clock=clock)
    for _ in range(8):
        t.run_pass()
    assert [r[2] for r in runs(engine)] == ["succeeded", "succeeded"]
    assert rows(engine, f"SELECT count(*) FROM task_run WHERE dag_run_id = {skipped}") == [(2,)]
