"""A sleeping loop passes at once when work is notified (LISTEN/NOTIFY), and when a
retry's delay runs out, long before its ``--interval``."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from tests.support import wait_for, write_project
from workflows_tick import queries
from workflows_tick.loop import Loop, SchedulerOptions
from workflows_tick.scheduler import trigger_dag
from workflows_tick.testing import InstantManager

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
