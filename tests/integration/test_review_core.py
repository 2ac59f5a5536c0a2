"""Regression tests for scheduler-core bugs found in review (DST fall-back hour,
--until-idle, just-added and re-added DAGs, leases vs. sleep, SIGTERM during a
database outage, parameter values the database cannot store)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import pytest
from sqlalchemy import Engine, text

from tests.support import write_project
from workflows_tick import cron, database
from workflows_tick.errors import UsageError
from workflows_tick.loop import Loop, SchedulerOptions
from workflows_tick.managers.base import PollResult, RunningTaskRun
from workflows_tick.scheduler import trigger_dag
from workflows_tick.testing import FakeClock, InstantManager
from workflows_tick.tick import Ticker

ONE_TASK = {"workflow.yaml": "description: x\n", "a.yaml": "type: no_op\n"}


def rows(engine: Engine, sql: str) -> list[tuple]:  # type: ignore[type-arg]
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql))]


def scheduled(schedule: str, timezone: str = "UTC") -> dict[str, str]:
    return {
        **ONE_TASK,
        "workflow.yaml": f"description: x\nschedule: '{schedule}'\ntimezone: {timezone}\n",
    }


# --- cron arithmetic across the fall-back hour ------------------------------------------


def test_latest_fire_in_the_repeated_fall_back_hour() -> None:
    # 06:31 UTC is 01:31 EST (the second 01:31 in New York on 2024-11-03); the last
    # '30 * * * *' time at or before it is 06:30 UTC (01:30 EST), not 05:30 UTC.
    at = datetime(2024, 11, 3, 6, 31, tzinfo=UTC)
    assert cron.latest_fire("30 * * * *", "America/New_York", at) == datetime(
        2024, 11, 3, 6, 30, tzinfo=UTC
    )


def test_an_hourly_run_in_the_repeated_hour_is_created_when_due(
    engine: Engine, tmp_path: Path
) -> None:
    reg = write_project(tmp_path, {"d": scheduled("30 * * * *", "America/New_York")})
    clock = FakeClock(datetime(2024, 11, 3, 5, 0, tzinfo=UTC))
    t = Ticker(reg, InstantManager(), engine, "config.py", clock=clock)
    t.run_pass()  # cursor: 05:30 UTC (01:30 EDT)
    clock.now = datetime(2024, 11, 3, 5, 31, tzinfo=UTC)
    assert len(t.run_pass().created_runs) == 1  # 01:30 EDT
    clock.now = datetime(2024, 11, 3, 6, 31, tzinfo=UTC)  # 01:31 EST, a pass a minute late
    result = t.run_pass()
    # The 01:30 EST run (06:30 UTC) is due; today it is created only at 07:00 UTC, and
    # until then every pass reports a next fire time in the past, so the loop sleeps 0 s
    # and spins against the database for half an hour.
    assert result.next_fire_at is not None and result.next_fire_at > clock.now
    assert rows(engine, "SELECT scheduled_for FROM dag_run ORDER BY 1") == [
        (datetime(2024, 11, 3, 5, 30, tzinfo=UTC),),
        (datetime(2024, 11, 3, 6, 30, tzinfo=UTC),),
    ]


# --- DAGs appearing and disappearing ---------------------------------------------------


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
    assert rows(engine, "SELECT status, message FROM dag_run") != [
        ("failed", "DAG 'new' is no longer in the registry")
    ]


def test_a_removed_then_re_added_dag_waits_for_its_next_fire_time(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    reg = write_project(tmp_path, {"d": scheduled("0 * * * *")})
    t = Ticker(reg, InstantManager(), engine, "config.py", clock=clock)
    t.run_pass()  # 12:00:30: cursor at 13:00
    workflow = tmp_path / "d" / "workflow.yaml"
    saved = workflow.read_text()
    workflow.unlink()  # the DAG leaves the registry
    reg.reload()
    t.load_dags()
    t.run_pass()
    clock.advance(days=3)
    workflow.write_text(saved)  # ... and comes back three days later
    reg.reload()
    t.load_dags()
    # Like any DAG first seen, it should wait for its next time (16:00 on Jan 4).
    assert t.run_pass().created_runs == []


# --- the loop ------------------------------------------------------------------------------


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
    loop.run()
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
    """Raised by SIGALRM when the loop failed to return in time."""


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


def test_sigterm_stops_the_loop_while_the_database_is_unreachable(
    tmp_path: Path, alarm: None
) -> None:
    reg = write_project(tmp_path, {"d": ONE_TASK})
    unreachable = database.make_engine(
        "postgresql+psycopg2://postgres@127.0.0.1:1/nowhere", purpose="test"
    )
    loop = Loop(reg, InstantManager(), unreachable, SchedulerOptions(config="config.py"))
    original = signal.getsignal(signal.SIGTERM)

    def terminate_once_handled() -> None:  # only once the loop's handler is installed
        deadline = time.monotonic() + 3
        while signal.getsignal(signal.SIGTERM) is original and time.monotonic() < deadline:
            time.sleep(0.01)
        if signal.getsignal(signal.SIGTERM) is not original:
            time.sleep(0.3)  # the loop is now retrying its connection
            os.kill(os.getpid(), signal.SIGTERM)

    sender = threading.Thread(target=terminate_once_handled)
    sender.start()
    signal.setitimer(signal.ITIMER_REAL, 3.0)
    try:
        loop.run()
        stopped = True
    except _Stuck:
        stopped = False
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        sender.join()
        unreachable.dispose()
    assert stopped, "the scheduler was still retrying the database 2.7 s after SIGTERM"


# --- trigger parameters ----------------------------------------------------------------------


@pytest.mark.parametrize("value", ["a\x00b", "\udcff"])
def test_a_parameter_value_the_database_cannot_store_is_a_usage_error(
    engine: Engine, value: str
) -> None:
    with pytest.raises(UsageError):
        trigger_dag("d", creator="test", parameters={"X": value}, engine=engine)
