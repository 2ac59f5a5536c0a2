"""The scheduler loop in process: when it reloads, when it exits, how long it sleeps,
and how it stops."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType

import pytest
from sqlalchemy import Engine

from tests.support import rows, wait_for, write_project
from workflows_tick import database
from workflows_tick.loop import Loop, SchedulerOptions
from workflows_tick.managers.base import PollResult, RunningTaskRun
from workflows_tick.scheduler import trigger_dag
from workflows_tick.testing import InstantManager

ONE_TASK = {"workflow.yaml": "description: x\n", "a.yaml": "type: no_op\n"}


def test_a_run_of_a_just_added_dag_is_not_failed_before_the_loop_reloads(
    engine: Engine, tmp_path: Path
) -> None:
    reg = write_project(tmp_path, {"old": ONE_TASK})
    loop = Loop(
        reg,
        InstantManager(),
        engine,
        SchedulerOptions(config="config.py", until_idle=True, interval=0.1, reload_seconds=10),
    )
    # The user adds a DAG and triggers it at once (the CLI loads the folder afresh);
    # the running scheduler only looks at the folder again every --reload-interval.
    write_project(tmp_path, {"new": ONE_TASK})
    trigger_dag("new", creator="test", engine=engine)
    loop.run()
    assert rows(engine, "SELECT dag_name, status, message FROM dag_run") == [
        ("new", "succeeded", None)
    ]


class PollFailsOnce(InstantManager):
    """An InstantManager whose first poll raises (a bug, a flaky API): one failed pass."""

    def __init__(self) -> None:
        super().__init__()
        self.polls = 0

    def poll(self, running: Sequence[RunningTaskRun]) -> PollResult:
        self.polls += 1
        if self.polls == 1:
            raise RuntimeError("transient manager error")
        return super().poll(running)


def test_until_idle_does_not_exit_after_a_failed_pass(engine: Engine, tmp_path: Path) -> None:
    reg = write_project(tmp_path, {"d": ONE_TASK})
    run = trigger_dag("d", creator="test", engine=engine)
    loop = Loop(
        reg,
        PollFailsOnce(),
        engine,
        SchedulerOptions(config="config.py", until_idle=True, interval=0.1),
    )
    assert loop.run() == 1  # one failed pass, then on until the run is over
    assert rows(engine, f"SELECT status FROM dag_run WHERE id = {run.id}") == [("succeeded",)]


def test_the_loop_never_sleeps_past_the_lease_of_its_running_tasks(
    engine: Engine, tmp_path: Path
) -> None:
    reg = write_project(tmp_path, {"d": ONE_TASK})
    manager = InstantManager(finish=False)
    options = SchedulerOptions(config="config.py", interval=120, lease_seconds=30)
    loop = Loop(reg, manager, engine, options)
    trigger_dag("d", creator="test", engine=engine)
    loop.ticker.run_pass()
    loop.ticker.run_pass()
    assert manager.in_flight() == 1  # a task of ours runs; only our passes renew its lease
    assert loop._sleep_time(None) < options.lease_seconds


class _Stuck(BaseException):
    """Raised by SIGALRM when the loop never returned."""


@pytest.fixture
def alarm() -> Iterator[None]:
    def expire(signum: int, frame: FrameType | None) -> None:
        raise _Stuck

    previous = signal.signal(signal.SIGALRM, expire)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_sigterm_stops_the_loop_while_the_database_is_unreachable(
    tmp_path: Path, alarm: None
) -> None:
    reg = write_project(tmp_path, {"d": ONE_TASK})
    unreachable = database.make_engine(
        "postgresql+psycopg2://postgres@127.0.0.1:1/nowhere", purpose="test"
    )
    loop = Loop(reg, InstantManager(), unreachable, SchedulerOptions(config="config.py"))
    records = _Records()
    logger = logging.getLogger("workflows_tick")
    logger.addHandler(records)

    def terminate_while_retrying() -> None:
        wait_for(
            lambda: any("database unavailable" in m for m in records.messages),
            what="the loop to retry its connection",
        )
        os.kill(os.getpid(), signal.SIGTERM)

    sender = threading.Thread(target=terminate_while_retrying)
    sender.start()
    # Not a time limit on stopping: a guard that turns "never stops" into a failure.
    signal.setitimer(signal.ITIMER_REAL, 60.0)
    try:
        loop.run()
        stopped = True
    except _Stuck:
        stopped = False
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        sender.join()
        logger.removeHandler(records)
        unreachable.dispose()
    assert stopped, "the scheduler was still retrying the database a minute after SIGTERM"
    assert "stopping while the database is unreachable" in records.messages
