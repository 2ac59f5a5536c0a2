"""The events outbox on a real PostgreSQL: one row per committed state change, and
delivery to hooks that raise, hang, or run on several schedulers at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from tests.support import write_project
from workflows_tick.dags import DagRegistry
from workflows_tick.events import hook_sinks
from workflows_tick.hooks import Event
from workflows_tick.outbox import Outbox
from workflows_tick.scheduler import rerun_run, trigger_dag
from workflows_tick.testing import FakeClock, InstantManager
from workflows_tick.tick import Ticker

FLAKY = {
    "workflow.yaml": "description: x\nretries: 1\n",
    "a.yaml": "type: no_op\n",
    "b.yaml": "type: no_op\ninputs: [a.yaml]\n",
}


def rows(engine: Engine, sql: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql))]


def run_to_the_end(engine: Engine, reg: DagRegistry, clock: FakeClock, **manager: Any) -> Ticker:
    t = Ticker(reg, InstantManager(**manager), engine, "config.py", clock=clock)
    for _ in range(20):
        if not t.run_pass().did_work:
            return t
    raise AssertionError("no quiescence")


def test_each_committed_state_change_is_one_event(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    reg = write_project(tmp_path, {"d": FLAKY})
    run = trigger_dag("d", creator="t", engine=engine, clock=clock)
    # b fails both of its attempts: the run fails.
    run_to_the_end(engine, reg, clock, outcome=lambda launch: launch.task.name != "b.yaml")
    assert rows(
        engine,
        "SELECT kind, task_name, attempt, status FROM event "
        f"WHERE dag_run_id = {run.id} ORDER BY id",
    ) == [
        ("run_started", None, None, "running"),
        ("task_run_created", "a.yaml", 1, "waiting"),
        ("task_run_started", "a.yaml", 1, "running"),
        ("task_run_succeeded", "a.yaml", 1, "succeeded"),
        ("task_run_created", "b.yaml", 1, "waiting"),
        ("task_run_started", "b.yaml", 1, "running"),
        ("task_run_failed", "b.yaml", 1, "failed"),
        ("task_run_retried", "b.yaml", 2, "waiting"),
        ("task_run_started", "b.yaml", 2, "running"),
        ("task_run_failed", "b.yaml", 2, "failed"),
        ("run_failed", None, None, "failed"),
    ]


def test_updates_that_change_no_state_write_no_event(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    reg = write_project(tmp_path, {"d": FLAKY})
    trigger_dag("d", creator="t", engine=engine, clock=clock)
    t = Ticker(reg, InstantManager(finish=False), engine, "config.py", clock=clock)
    t.run_pass()
    before = rows(engine, "SELECT count(*) FROM event")
    for _ in range(3):  # lease renewals only
        clock.advance(seconds=5)
        t.run_pass()
    assert rows(engine, "SELECT count(*) FROM event") == before


def test_a_rolled_back_change_leaves_no_event(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(
            text(
                "INSERT INTO dag_run (dag_name, status, trigger, created_at) "
                "VALUES ('d', 'running', 'manual', now())"
            )
        )
        conn.rollback()
    assert rows(engine, "SELECT count(*) FROM event") == [(0,)]


class Recorder:
    """A hook that records its calls (and can raise or hang first)."""

    def __init__(self, behave: Callable[[], None] = lambda: None) -> None:
        self.calls: list[tuple[Event, dict[str, Any]]] = []
        self.behave = behave
        self.lock = threading.Lock()

    def __call__(self, event: Event, **kwargs: Any) -> None:
        self.behave()
        with self.lock:
            self.calls.append((event, kwargs))

    def events(self) -> list[Event]:
        return [e for e, _ in self.calls]


def outbox(engine: Engine, ticker: Ticker, *hooks: Any, timeout: float = 5.0) -> Outbox:
    return Outbox(engine, hook_sinks(hooks, lambda: ticker.dags, timeout))


def make_due_again(engine: Engine) -> None:
    """Skip the backoff wait of failed deliveries."""
    with engine.begin() as conn:
        conn.execute(text("UPDATE event SET next_attempt_at = now() WHERE delivered_at IS NULL"))


def test_hooks_get_dag_workflows_events_and_arguments(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    reg = write_project(tmp_path, {"d": FLAKY})
    run = trigger_dag("d", creator="t", engine=engine, clock=clock)
    t = run_to_the_end(engine, reg, clock, outcome=lambda launch: launch.task.name != "b.yaml")
    hook = Recorder()
    assert outbox(engine, t, hook).drain() == 11
    assert hook.events() == [
        Event.DAG_RUN_START,
        Event.TASK_RUN_START,
        Event.TASK_RUN_FINISH,
        Event.TASK_RUN_START,
        Event.TASK_RUN_FINISH,
        Event.TASK_RUN_START,
        Event.TASK_RUN_FINISH,
        Event.DAG_RUN_FINISH,
    ]
    start = hook.calls[0][1]
    assert start["dag_run"].id == run.id and start["dag"].name == "d"
    assert start["task"] is None and start["task_run"] is None and start["exception"] is None
    failed = hook.calls[4][1]
    assert failed["task"].name == "b.yaml" and failed["task_run"].attempt == 1
    assert failed["exception"] == "it failed"
    assert hook.calls[2][1]["exception"] is None  # a.yaml succeeded
    assert hook.calls[-1][1]["exception"] is not None  # the run failed
    assert rows(engine, "SELECT count(*) FROM event WHERE delivered_at IS NULL") == [(0,)]
    assert outbox(engine, t, hook).drain() == 0  # delivered once


def test_a_hook_that_raises_is_retried_alone_then_given_up(
    engine: Engine, tmp_path: Path, clock: FakeClock, caplog: Any
) -> None:
    reg = write_project(
        tmp_path, {"d": {"workflow.yaml": "description: x\n", "a.yaml": "type: no_op\n"}}
    )
    trigger_dag("d", creator="t", engine=engine, clock=clock)
    t = run_to_the_end(engine, reg, clock)

    def boom() -> None:
        raise RuntimeError("hook bug")

    good, bad = Recorder(), Recorder(boom)
    box = outbox(engine, t, good, bad)
    box.max_attempts = 3
    box.drain()
    assert rows(
        engine,
        "SELECT count(*), min(attempts), bool_and(delivered_at IS NULL), "
        "bool_and(next_attempt_at > now()) FROM event WHERE kind NOT LIKE '%created'",
    ) == [(4, 1, True, True)]
    assert "RuntimeError: hook bug" in rows(engine, "SELECT last_error FROM event LIMIT 1")[0][0]
    for _ in range(2):
        make_due_again(engine)
        box.drain()
    # The good hook took each event once; the bad one was tried three times, then given up.
    assert len(good.calls) == 4
    assert rows(
        engine,
        "SELECT count(*) FROM event WHERE given_up_at IS NOT NULL AND attempts = 3",
    ) == [(4,)]
    assert "given up after 3 tries" in caplog.text
    make_due_again(engine)
    assert box.drain() == 0


def test_a_hook_that_hangs_delays_the_others_by_its_timeout_only(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    reg = write_project(
        tmp_path, {"d": {"workflow.yaml": "description: x\n", "a.yaml": "type: no_op\n"}}
    )
    trigger_dag("d", creator="t", engine=engine, clock=clock)
    t = run_to_the_end(engine, reg, clock)
    release = threading.Event()
    good, hung = Recorder(), Recorder(lambda: release.wait(30) and None)
    box = outbox(engine, t, hung, good, timeout=0.2)
    try:
        box.drain()
        assert len(good.calls) == 4  # called after the hung hook gave up, every time
        errors = rows(engine, "SELECT DISTINCT last_error FROM event WHERE delivered_at IS NULL")
        assert len(errors) == 1 and errors[0][0].endswith("Recorder: timed out after 0.2s")
    finally:
        release.set()


def test_two_schedulers_never_deliver_one_event_at_once(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    reg = write_project(tmp_path, {"d": FLAKY})
    for _ in range(5):
        trigger_dag("d", creator="t", engine=engine, clock=clock)
    t = run_to_the_end(engine, reg, clock)
    hook = Recorder(lambda: time.sleep(0.001))
    boxes = [outbox(engine, t, hook) for _ in range(3)]
    for box in boxes:
        box.batch = 3
    threads = [threading.Thread(target=box.drain) for box in boxes]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    keys = [
        (e, k["dag_run"].id, k["task_run"].id if k["task_run"] else None) for e, k in hook.calls
    ]
    assert len(keys) == len(set(keys)) == 5 * 6


def test_prune_deletes_delivered_events_and_keeps_undelivered_ones(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    from datetime import UTC, datetime, timedelta

    from workflows_tick.scheduler import prune

    reg = write_project(tmp_path, {"d": FLAKY})
    trigger_dag("d", creator="t", engine=engine, clock=clock)
    t = run_to_the_end(engine, reg, clock)
    outbox(engine, t).drain()  # delivered (to no hook)
    trigger_dag("d", creator="t", engine=engine, clock=clock)  # not delivered yet
    delivered = rows(engine, "SELECT count(*) FROM event WHERE delivered_at IS NOT NULL")[0][0]
    assert delivered > 0
    # Deliveries are stamped by the database's clock, not the fake one.
    prune(timedelta(0), engine=engine, clock=lambda: datetime.now(UTC) + timedelta(seconds=1))
    assert rows(engine, "SELECT count(*) FROM event WHERE delivered_at IS NOT NULL") == [(0,)]
    assert rows(engine, "SELECT kind FROM event") == [("run_started",)]


def test_a_rerun_is_a_run_start_for_hooks_then_a_finish(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    reg = write_project(tmp_path, {"d": FLAKY})
    run = trigger_dag("d", creator="t", engine=engine, clock=clock)
    fail_b = lambda launch: launch.task.name != "b.yaml"  # noqa: E731
    t = run_to_the_end(engine, reg, clock, outcome=fail_b)
    hook = Recorder()
    outbox(engine, t, hook).drain()
    hook.calls.clear()
    rerun_run(run.id, registry=reg, engine=engine, clock=clock)
    t = run_to_the_end(engine, reg, clock)
    outbox(engine, t, hook).drain()
    assert hook.events() == [
        Event.DAG_RUN_START,
        Event.TASK_RUN_START,
        Event.TASK_RUN_FINISH,
        Event.DAG_RUN_FINISH,
    ]
    assert hook.calls[0][1]["dag_run"].id == run.id
    assert hook.calls[-1][1]["exception"] is None  # the rerun succeeded
