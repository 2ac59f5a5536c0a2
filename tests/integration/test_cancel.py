"""Cancelling runs, on a real PostgreSQL: the database rules and the races with passes."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from tests.support import FakeClock, InstantManager, write_project
from workflows_tick import queries
from workflows_tick.errors import RunStateError, UnknownRunError
from workflows_tick.managers.base import Outcome, PollResult, RunningTaskRun
from workflows_tick.scheduler import cancel_run, trigger_dag
from workflows_tick.tick import Ticker

CHAIN = {
    "workflow.yaml": "description: a chain\n",
    "a.yaml": "type: no_op\nretries: 2\n",
    "b.yaml": "type: no_op\ninputs: [a.yaml]\n",
}


class HeldManager(InstantManager):
    """Starts attempts and keeps them running until told how they end."""

    def __init__(self) -> None:
        super().__init__(finish=False)
        self.seen: list[RunningTaskRun] = []
        self.ending: list[Outcome] = []

    def poll(self, running: Sequence[RunningTaskRun]) -> PollResult:
        self.seen = list(running)
        ending, self.ending = self.ending, []
        done = {o.task_run_id for o in ending}
        self._pending = [p for p in self._pending if p.task_run_id not in done]
        return PollResult(
            finished=ending,
            alive=[p.task_run_id for p in self._pending if p.task_run_id not in done],
        )


def rows(engine: Engine, sql: str) -> list[tuple]:  # type: ignore[type-arg]
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql))]


@pytest.fixture
def project(tmp_path: Path):  # type: ignore[no-untyped-def]
    return write_project(tmp_path, {"chain": CHAIN})


def test_cancel_ends_the_run_and_its_waiting_task_runs_and_the_next_run_proceeds(
    engine: Engine, project, clock: FakeClock
) -> None:
    manager = InstantManager(capacity=0)  # nothing starts: a.yaml stays waiting
    t = Ticker(project, manager, engine, "config.py", clock=clock)
    first = trigger_dag("chain", creator="t", engine=engine, clock=clock)
    second = trigger_dag("chain", creator="t", engine=engine, clock=clock)
    t.run_pass()
    assert rows(engine, "SELECT dag_run_id, status FROM task_run") == [(first.id, "waiting")]

    done = cancel_run(first.id, reason="wrong data", by="ops", engine=engine, clock=clock)

    assert (done.waiting, done.running) == (1, 0)
    assert rows(engine, f"SELECT status, message FROM dag_run WHERE id = {first.id}") == [
        ("cancelled", "cancelled by ops: wrong data")
    ]
    assert rows(engine, "SELECT status FROM task_run") == [("cancelled",)]
    manager._capacity = 10
    for _ in range(6):
        t.run_pass()
    assert rows(engine, f"SELECT status FROM dag_run WHERE id = {second.id}") == [("succeeded",)]
    assert rows(engine, f"SELECT status FROM dag_run WHERE id = {first.id}") == [("cancelled",)]


def test_cancel_of_a_finished_run_changes_nothing(
    engine: Engine, project, clock: FakeClock
) -> None:
    t = Ticker(project, InstantManager(), engine, "config.py", clock=clock)
    run = trigger_dag("chain", creator="t", engine=engine, clock=clock)
    for _ in range(5):
        t.run_pass()
    before = rows(engine, "SELECT status, ended_at, message FROM dag_run")
    with pytest.raises(RunStateError, match=f"run {run.id} has already ended \\(succeeded\\)"):
        cancel_run(run.id, engine=engine, clock=clock)
    assert rows(engine, "SELECT status, ended_at, message FROM dag_run") == before
    with pytest.raises(UnknownRunError, match="no run 999"):
        cancel_run(999, engine=engine, clock=clock)


def test_running_attempt_of_a_cancelled_run_is_stopped_and_recorded_cancelled_never_retried(
    engine: Engine, project, clock: FakeClock
) -> None:
    manager = HeldManager()
    t = Ticker(project, manager, engine, "config.py", clock=clock)
    run = trigger_dag("chain", creator="t", engine=engine, clock=clock)
    t.run_pass()
    t.run_pass()
    (task_run_id,) = [launch.task_run_id for launch in manager.started]
    cancel_run(run.id, engine=engine, clock=clock)

    t.run_pass()  # the manager is told to stop it
    assert [(r.id, r.cancelled) for r in manager.seen] == [(task_run_id, True)]
    assert rows(engine, "SELECT status FROM task_run") == [("running",)]
    manager.ending = [Outcome(task_run_id, succeeded=False, exit_code=-15, error="stopped")]
    for _ in range(3):
        t.run_pass()

    assert rows(engine, "SELECT attempt, status, error FROM task_run") == [
        (1, "cancelled", "stopped")
    ]
    assert len(manager.started) == 1


def test_an_attempt_that_succeeds_as_its_run_is_cancelled_stays_succeeded(
    engine: Engine, project, clock: FakeClock
) -> None:
    manager = HeldManager()
    t = Ticker(project, manager, engine, "config.py", clock=clock)
    run = trigger_dag("chain", creator="t", engine=engine, clock=clock)
    t.run_pass()
    t.run_pass()
    (task_run_id,) = [launch.task_run_id for launch in manager.started]
    cancel_run(run.id, engine=engine, clock=clock)
    manager.ending = [Outcome(task_run_id, succeeded=True, exit_code=0)]
    for _ in range(3):
        t.run_pass()
    assert rows(engine, "SELECT status FROM task_run ORDER BY id") == [("succeeded",)]
    assert rows(engine, "SELECT status FROM dag_run") == [("cancelled",)]


def test_a_cancelled_attempt_whose_scheduler_died_is_cancelled_when_its_lease_expires(
    engine: Engine, project, clock: FakeClock
) -> None:
    manager = HeldManager()
    t = Ticker(project, manager, engine, "config.py", clock=clock, lease_seconds=10)
    run = trigger_dag("chain", creator="t", engine=engine, clock=clock)
    t.run_pass()
    t.run_pass()
    cancel_run(run.id, engine=engine, clock=clock)
    clock.advance(11)
    other = Ticker(project, InstantManager(), engine, "config.py", clock=clock)
    assert other.run_pass().expired == 1
    assert rows(engine, "SELECT attempt, status FROM task_run") == [(1, "cancelled")]
    for _ in range(3):
        other.run_pass()
    assert rows(engine, "SELECT count(*) FROM task_run") == [(1,)]


def test_cancel_while_a_pass_claims_the_next_task_stops_it(
    engine: Engine, project, clock: FakeClock
) -> None:
    manager = HeldManager()
    t = Ticker(project, manager, engine, "config.py", clock=clock)
    run = trigger_dag("chain", creator="t", engine=engine, clock=clock)
    t.starting = False
    t.run_pass()  # a.yaml waiting
    t.starting = True
    waiting = rows(engine, "SELECT id FROM task_run")[0][0]
    # A pass has claimed a.yaml but not committed yet when the cancel arrives.
    with engine.connect() as conn:
        tx = conn.begin()
        claims = queries.claim_waiting(
            conn, manager.name, ["chain"], 10, clock(), clock.advance(0) + t.lease
        )
        assert [c.task_run_id for c in claims] == [waiting]
        outcome: list[object] = []
        cancelling = threading.Thread(
            target=lambda: outcome.append(cancel_run(run.id, engine=engine, clock=clock))
        )
        cancelling.start()
        cancelling.join(0.5)
        assert cancelling.is_alive()  # it waits for the claim's row lock
        tx.commit()
    cancelling.join(10)
    assert outcome and outcome[0].running == 1  # type: ignore[attr-defined]
    # The attempt was claimed: the next pass of its scheduler stops it.
    t.run_pass()
    assert [(r.id, r.cancelled) for r in manager.seen] == [(waiting, True)]
    manager.ending = [Outcome(waiting, succeeded=False, error="stopped")]
    t.run_pass()
    assert rows(engine, "SELECT status FROM task_run") == [("cancelled",)]


def test_cancel_racing_the_pass_that_finishes_the_run_has_one_winner(
    engine: Engine, project, clock: FakeClock
) -> None:
    t = Ticker(project, InstantManager(), engine, "config.py", clock=clock)
    run = trigger_dag("chain", creator="t", engine=engine, clock=clock)
    t.run_pass()
    t.run_pass()  # b.yaml started; the next pass records it succeeded and ends the run
    with engine.connect() as conn:
        tx = conn.begin()
        assert [r.id for r in queries.lock_earliest_runs(conn)] == [run.id]
        errors: list[BaseException] = []

        def go() -> None:
            try:
                cancel_run(run.id, engine=engine, clock=clock)
            except BaseException as exc:
                errors.append(exc)

        cancelling = threading.Thread(target=go)
        cancelling.start()
        cancelling.join(0.5)
        assert cancelling.is_alive()  # the pass holds the run
        queries.finish_runs(conn, [(run.id, queries.RunStatus.SUCCEEDED, None)], clock())
        tx.commit()
    cancelling.join(10)
    assert len(errors) == 1 and isinstance(errors[0], RunStateError)
    assert rows(engine, "SELECT status FROM dag_run") == [("succeeded",)]


def test_each_pass_records_one_heartbeat_row_per_scheduler(
    engine: Engine, project, clock: FakeClock
) -> None:
    t = Ticker(project, InstantManager(), engine, "config.py", clock=clock)
    t.run_pass()
    clock.advance(5)
    t.run_pass()
    other = Ticker(project, InstantManager(), engine, "config.py", clock=clock)
    other.run_pass()
    beats = rows(
        engine,
        "SELECT id, manager, started_at, last_pass_at, dags, stopped_at, pid > 0, "
        "last_pass_seconds >= 0 FROM scheduler_heartbeat ORDER BY last_pass_at, id",
    )
    assert len(beats) == 2
    mine = next(b for b in beats if b[0] == t.scheduler_id)
    assert mine[1:] == ("test", mine[2], clock(), ["chain"], None, True, True)
    assert mine[3] - mine[2] == clock.advance(0) - mine[2]
    t.mark_stopped()
    assert rows(
        engine, f"SELECT stopped_at FROM scheduler_heartbeat WHERE id = '{t.scheduler_id}'"
    ) == [(clock(),)]
