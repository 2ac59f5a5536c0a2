"""A sleeping loop passes at once when work is notified (LISTEN/NOTIFY), and when a
retry's delay runs out, long before its ``--interval``."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from tests.support import wait_for, write_project
from workflows_tick import queries
from workflows_tick.loop import Loop, SchedulerOptions
from workflows_tick.managers.base import Launch
from workflows_tick.scheduler import (
    backfill,
    cancel_run,
    pause_dag,
    rerun_run,
    trigger_dag,
    unpause_dag,
)
from workflows_tick.testing import InstantManager
from workflows_tick.tick import PassResult

ONE_TASK = {"workflow.yaml": "description: x\n", "a.yaml": "type: no_op\n"}
LONG_INTERVAL = 3600.0
"""Far longer than any wait below: only a wake-up can make the loop pass in time."""


def status(engine: Engine, run_id: int) -> str:
    with engine.connect() as conn:
        return str(conn.execute(text(f"SELECT status FROM dag_run WHERE id = {run_id}")).scalar())


def listener_pids(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                f"AND query = 'LISTEN {queries.WORK_CHANNEL}'"
            )
        )
        return [r[0] for r in rows]


@pytest.fixture
def sleeping_loop(engine: Engine, tmp_path: Path) -> Iterator[tuple[Loop, InstantManager]]:
    """A loop in a thread, past its first pass and asleep for an hour, listening."""
    reg = write_project(
        tmp_path,
        {
            "d": ONE_TASK,
            "flaky": {
                "workflow.yaml": "description: x\nretries: 1\nretry_delay: 1\n",
                "a.yaml": "type: no_op\n",
            },
        },
    )
    manager = InstantManager(
        outcome=lambda launch: launch.dag.name != "flaky" or launch.attempt > 1
    )
    loop = Loop(reg, manager, engine, SchedulerOptions(config="config.py", interval=LONG_INTERVAL))
    thread = threading.Thread(target=loop.run)
    thread.start()
    try:
        wait_for(lambda: loop.listener is not None and loop.listener.listening.is_set())
        yield loop, manager
    finally:
        loop.stop()
        thread.join()


def test_a_trigger_wakes_a_sleeping_loop_at_once(
    engine: Engine, sleeping_loop: tuple[Loop, InstantManager]
) -> None:
    run = trigger_dag("d", creator="test", engine=engine)
    wait_for(lambda: status(engine, run.id) == "succeeded", what="the run to succeed")


def test_a_retry_is_started_when_its_delay_runs_out(
    engine: Engine, sleeping_loop: tuple[Loop, InstantManager]
) -> None:
    _, manager = sleeping_loop
    run = trigger_dag("flaky", creator="test", engine=engine)
    wait_for(lambda: status(engine, run.id) == "succeeded", what="the retry to succeed")
    assert manager.ran() == [("flaky", "a.yaml", 1), ("flaky", "a.yaml", 2)]


def test_the_listener_reconnects_after_losing_its_connection(
    engine: Engine, sleeping_loop: tuple[Loop, InstantManager]
) -> None:
    [first] = listener_pids(engine)
    with engine.connect() as conn:
        conn.execute(text(f"SELECT pg_terminate_backend({first})"))
    wait_for(lambda: listener_pids(engine) not in ([], [first]), what="a new LISTEN connection")
    run = trigger_dag("d", creator="test", engine=engine)
    wait_for(lambda: status(engine, run.id) == "succeeded", what="the run to succeed")


def test_a_rolled_back_change_wakes_no_one(engine: Engine) -> None:
    listening = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        queries.listen_for_work(listening)
        raw = listening.connection.dbapi_connection
        with engine.connect() as conn, conn.begin() as transaction:
            queries.notify_work(conn)
            transaction.rollback()
        with engine.begin() as conn:
            queries.notify_work(conn)
        queries.ping(listening)  # delivers what is queued
        assert [n.channel for n in raw.notifies] == [queries.WORK_CHANNEL]  # type: ignore[union-attr]
    finally:
        listening.invalidate()
        listening.close()


# --- every command that creates or changes work wakes the loop -------------------------

CONTROL_DAGS = {
    "d": ONE_TASK,
    "hangs": {"workflow.yaml": "description: x\nretries: 0\n", "a.yaml": "type: no_op\n"},
    "once": {"workflow.yaml": "description: x\nretries: 0\n", "a.yaml": "type: no_op\n"},
    "daily": {
        "workflow.yaml": "description: x\nschedule: '0 3 * * *'\n",
        "a.yaml": "type: no_op\n",
    },
}


def control_outcome(launch: Launch) -> bool | None:
    """``hangs`` never ends (until cancelled); ``once`` fails its first attempt."""
    if launch.dag.name == "hangs":
        return None
    return launch.dag.name != "once" or launch.attempt > 1


class Asleep:
    """Tells when a looping scheduler is asleep: it entered its sleep and no pass has
    started since. Work picked up after an action taken then was woken up for."""

    def __init__(self, loop: Loop) -> None:
        self.events: list[str] = []
        run_pass, sleep = loop.ticker.run_pass, loop._sleep

        def pass_logged() -> PassResult:
            self.events.append("pass")
            return run_pass()

        def sleep_logged(timeout: float) -> None:
            self.events.append("sleep")
            sleep(timeout)

        loop.ticker.run_pass = pass_logged  # type: ignore[method-assign]
        loop._sleep = sleep_logged  # type: ignore[method-assign]

    def wait(self) -> None:
        wait_for(lambda: self.events[-1:] == ["sleep"], what="the loop to fall asleep")


@pytest.fixture
def long_asleep(engine: Engine, tmp_path: Path) -> Iterator[tuple[Loop, Asleep]]:
    """A loop in a thread with nothing to wake it for an hour but a notification:
    ``--interval`` and the lease (renewed every third of it) an hour long."""
    reg = write_project(tmp_path, CONTROL_DAGS)
    options = SchedulerOptions(
        config="config.py", interval=LONG_INTERVAL, lease_seconds=3 * LONG_INTERVAL
    )
    loop = Loop(reg, InstantManager(outcome=control_outcome), engine, options)
    asleep = Asleep(loop)
    thread = threading.Thread(target=loop.run)
    thread.start()
    try:
        wait_for(lambda: loop.listener is not None and loop.listener.listening.is_set())
        yield loop, asleep
    finally:
        loop.stop()
        thread.join()


def task_statuses(engine: Engine, run_id: int) -> list[str]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(f"SELECT status FROM task_run WHERE dag_run_id = {run_id} ORDER BY id")
        )
        return [str(r[0]) for r in rows]


def test_a_cancel_wakes_a_sleeping_loop_which_stops_the_attempt_at_once(
    engine: Engine, long_asleep: tuple[Loop, Asleep]
) -> None:
    _, asleep = long_asleep
    run = trigger_dag("hangs", creator="test", engine=engine)
    wait_for(lambda: task_statuses(engine, run.id) == ["running"], what="the attempt to start")
    asleep.wait()
    cancel_run(run.id, engine=engine)
    wait_for(lambda: task_statuses(engine, run.id) == ["cancelled"], what="the attempt stopped")


def test_a_rerun_wakes_a_sleeping_loop(engine: Engine, long_asleep: tuple[Loop, Asleep]) -> None:
    _, asleep = long_asleep
    run = trigger_dag("once", creator="test", engine=engine)
    wait_for(lambda: status(engine, run.id) == "failed", what="the first attempt to fail")
    asleep.wait()
    rerun_run(run.id, engine=engine)
    wait_for(lambda: status(engine, run.id) == "succeeded", what="the rerun to succeed")


def test_a_backfill_wakes_a_sleeping_loop(engine: Engine, long_asleep: tuple[Loop, Asleep]) -> None:
    loop, asleep = long_asleep
    asleep.wait()
    fire = (datetime.now(UTC) - timedelta(days=2)).replace(
        hour=3, minute=0, second=0, microsecond=0
    )
    hour = timedelta(hours=1)
    [made] = backfill(loop.ticker.dags["daily"], fire - hour, fire + hour, engine=engine).created
    wait_for(lambda: status(engine, made.id) == "succeeded", what="the backfilled run to succeed")


def test_an_unpause_wakes_a_sleeping_loop(engine: Engine, long_asleep: tuple[Loop, Asleep]) -> None:
    _, asleep = long_asleep
    assert pause_dag("daily", engine=engine)  # pausing starts nothing: no wake-up
    asleep.wait()
    passes = asleep.events.count("pass")
    assert unpause_dag("daily", engine=engine)
    wait_for(lambda: asleep.events.count("pass") > passes, what="a pass after the unpause")
