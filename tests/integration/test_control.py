"""The control commands (cancel, pause, rerun, backfill, prune, status, wait), on a real PostgreSQL: the database rules and the races with passes."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar

import pytest
from sqlalchemy import Engine, text

from tests.support import write_project
from workflows_tick import queries, tick
from workflows_tick.errors import RunStateError, RunWaitTimeout, UnknownRunError, UsageError
from workflows_tick.managers.base import (
    Launch,
    Outcome,
    PollResult,
    RunningTaskRun,
    TaskManager,
)
from workflows_tick.scheduler import (
    backfill,
    cancel_run,
    parse_time,
    pause_dag,
    paused_dags,
    prune,
    rerun_run,
    status,
    trigger_dag,
    unpause_dag,
    wait_for_run,
)
from workflows_tick.testing import FakeClock, InstantManager
from workflows_tick.tick import Ticker

CHAIN = {
    "workflow.yaml": "description: a chain\n",
    "a.yaml": "type: no_op\nretries: 2\n",
    "b.yaml": "type: no_op\ninputs: [a.yaml]\n",
}


class HeldManager(TaskManager):
    """Starts attempts and keeps them running until told how they end."""

    name: ClassVar[str] = "test"

    def __init__(self) -> None:
        self.started: list[Launch] = []
        self.seen: list[RunningTaskRun] = []
        self.ending: list[Outcome] = []

    def capacity(self) -> int:
        return 1000

    def host_for(self, task_run_id: int, attempt: int, dag_name: str, task_name: str) -> str:
        return "here"

    def start(self, launch: Launch) -> None:
        self.started.append(launch)

    def poll(self, running: Sequence[RunningTaskRun]) -> PollResult:
        self.seen = list(running)
        ending, self.ending = self.ending, []
        done = {o.task_run_id for o in ending}
        return PollResult(finished=ending, alive=[r.id for r in running if r.id not in done])


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
            conn,
            manager.name,
            queries.LoadedCopies.of({"chain": t.dags["chain"].fingerprint}),
            10,
            clock(),
            clock.advance(0) + t.lease,
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
    engine: Engine, project, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tick, "HEARTBEAT_SECONDS", 0.0)
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


def test_passes_record_the_heartbeat_at_most_once_a_second_idle_or_busy(
    engine: Engine, project, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tick, "HEARTBEAT_SECONDS", 3600.0)
    t = Ticker(project, InstantManager(), engine, "config.py", clock=clock)
    beat = f"SELECT last_pass_at FROM scheduler_heartbeat WHERE id = '{t.scheduler_id}'"
    t.run_pass()
    first = clock()
    clock.advance(5)
    t.run_pass()  # idle, and the heartbeat is fresh: no write at all
    assert rows(engine, beat) == [(first,)]
    trigger_dag("chain", creator="t", engine=engine, clock=clock)
    # It starts a task: one statement fewer between a task's end and the next start.
    assert t.run_pass().started
    assert rows(engine, beat) == [(first,)]
    monkeypatch.setattr(tick, "HEARTBEAT_SECONDS", 0.0)
    t.run_pass()
    assert rows(engine, beat) == [(clock(),)]


# --- pause ------------------------------------------------------------------------------

HOURLY = {**CHAIN, "workflow.yaml": "description: x\nschedule: '0 * * * *'\n"}


def test_a_paused_dag_gets_no_scheduled_runs_and_unpause_replays_nothing(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    reg = write_project(tmp_path, {"hourly": HOURLY})
    t = Ticker(reg, InstantManager(), engine, "config.py", clock=clock)
    t.run_pass()  # 12:00:30: the cursor waits for 13:00
    assert pause_dag("hourly", by="ops", engine=engine, clock=clock)
    assert not pause_dag("hourly", engine=engine, clock=clock)  # safe to repeat
    clock.advance(hours=2)  # 14:00:30: 13:00 and 14:00 pass while paused
    assert t.run_pass().created_runs == []
    other = Ticker(reg, InstantManager(), engine, "config.py", clock=clock)
    assert other.run_pass().created_runs == []  # every scheduler obeys it
    assert [p.dag_name for p in paused_dags(engine=engine)] == ["hourly"]

    assert unpause_dag("hourly", engine=engine, clock=clock)
    assert not unpause_dag("hourly", engine=engine, clock=clock)
    assert t.run_pass().created_runs == []  # 14:00 is not replayed
    clock.advance(hours=1)  # 15:00:30
    assert len(t.run_pass().created_runs) == 1
    assert rows(engine, "SELECT scheduled_for FROM dag_run") == [
        (datetime(2024, 1, 1, 15, tzinfo=UTC),)
    ]


def test_unpause_after_no_scheduler_ran_while_paused_replays_nothing(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    reg = write_project(tmp_path, {"hourly": HOURLY})
    Ticker(reg, InstantManager(), engine, "config.py", clock=clock).run_pass()
    pause_dag("hourly", engine=engine, clock=clock)
    clock.advance(hours=3)  # no pass at all while paused: the cursor still says 13:00
    unpause_dag("hourly", engine=engine, clock=clock)
    t = Ticker(reg, InstantManager(), engine, "config.py", clock=clock)
    assert t.run_pass().created_runs == []
    assert rows(engine, "SELECT next_fire_at FROM dag_schedule") == [
        (datetime(2024, 1, 1, 16, tzinfo=UTC),)
    ]


def test_a_manual_trigger_of_a_paused_dag_runs(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    reg = write_project(tmp_path, {"hourly": HOURLY})
    t = Ticker(reg, InstantManager(), engine, "config.py", clock=clock)
    pause_dag("hourly", engine=engine, clock=clock)
    trigger_dag("hourly", creator="t", engine=engine, clock=clock)
    for _ in range(4):
        t.run_pass()
    assert rows(engine, "SELECT status FROM dag_run") == [("succeeded",)]


# --- rerun ------------------------------------------------------------------------------

LINE = {
    "workflow.yaml": "description: x\nretries: 1\n",
    "a.yaml": "type: no_op\n",
    "b.yaml": "type: no_op\ninputs: [a.yaml]\n",
    "c.yaml": "type: no_op\ninputs: [b.yaml]\n",
    "side.yaml": "type: no_op\n",
}


def run_until_ended(t: Ticker, engine: Engine, run_id: int) -> str:
    for _ in range(20):
        t.run_pass()
        status = rows(engine, f"SELECT status FROM dag_run WHERE id = {run_id}")[0][0]
        if status != "running":
            return str(status)
    raise AssertionError("the run never ended")


def test_rerun_from_failure_keeps_successes_and_history(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    reg = write_project(tmp_path, {"line": LINE})
    failing = {"b.yaml"}
    manager = InstantManager(outcome=lambda launch: launch.task.name not in failing)
    t = Ticker(reg, manager, engine, "config.py", clock=clock)
    run = trigger_dag("line", creator="t", engine=engine, clock=clock)
    assert run_until_ended(t, engine, run.id) == "failed"

    failing.clear()
    done = rerun_run(run.id, by="ops", registry=reg, engine=engine, clock=clock)
    assert done.tasks == ["b.yaml"]
    assert rows(engine, "SELECT status, ended_at, message FROM dag_run") == [
        ("running", None, "rerun by ops")
    ]
    assert run_until_ended(t, engine, run.id) == "succeeded"

    assert rows(
        engine,
        "SELECT task_name, attempt, status, superseded FROM task_run ORDER BY task_name, attempt",
    ) == [
        ("a.yaml", 1, "succeeded", False),
        ("b.yaml", 1, "failed", True),
        ("b.yaml", 2, "failed", True),
        ("b.yaml", 3, "succeeded", False),
        ("c.yaml", 1, "succeeded", False),
        ("side.yaml", 1, "succeeded", False),
    ]
    assert [launch.task.name for launch in manager.started].count("a.yaml") == 1


def test_rerun_gives_a_fresh_retry_budget_and_reruns_cancelled_tasks_downstream(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    reg = write_project(tmp_path, {"line": LINE})
    manager = InstantManager(finish=False)
    t = Ticker(reg, manager, engine, "config.py", clock=clock)
    run = trigger_dag("line", creator="t", engine=engine, clock=clock)
    t.run_pass()
    cancel_run(run.id, engine=engine, clock=clock)  # a.yaml and side.yaml are running
    with pytest.raises(RunStateError, match="still being stopped"):
        rerun_run(run.id, registry=reg, engine=engine, clock=clock)
    with engine.begin() as conn:
        queries.record_outcomes(
            conn,
            [Outcome(launch.task_run_id, succeeded=False) for launch in manager.started],
            clock(),
        )
    assert rows(engine, "SELECT DISTINCT status FROM task_run") == [("cancelled",)]

    done = rerun_run(run.id, registry=reg, engine=engine, clock=clock)
    assert done.tasks == ["a.yaml", "side.yaml"]
    t2 = Ticker(reg, InstantManager(), engine, "config.py", clock=clock)
    assert run_until_ended(t2, engine, run.id) == "succeeded"


def test_rerun_is_refused_while_running_and_needs_all_for_a_success(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    reg = write_project(tmp_path, {"line": LINE})
    t = Ticker(reg, InstantManager(), engine, "config.py", clock=clock)
    run = trigger_dag("line", creator="t", engine=engine, clock=clock)
    with pytest.raises(RunStateError, match=f"run {run.id} is running"):
        rerun_run(run.id, engine=engine, clock=clock)
    assert run_until_ended(t, engine, run.id) == "succeeded"
    with pytest.raises(RunStateError, match="--all reruns every task"):
        rerun_run(run.id, engine=engine, clock=clock)
    with pytest.raises(UnknownRunError):
        rerun_run(run.id + 100, engine=engine, clock=clock)

    done = rerun_run(run.id, every_task=True, engine=engine, clock=clock)
    assert done.tasks == ["a.yaml", "b.yaml", "c.yaml", "side.yaml"]
    assert run_until_ended(t, engine, run.id) == "succeeded"
    assert rows(engine, "SELECT count(*) FILTER (WHERE superseded), count(*) FROM task_run") == [
        (4, 8)
    ]


def test_rerun_racing_the_pass_that_ends_the_run_waits_for_it(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    reg = write_project(tmp_path, {"line": LINE})
    t = Ticker(reg, InstantManager(), engine, "config.py", clock=clock)
    run = trigger_dag("line", creator="t", engine=engine, clock=clock)
    with engine.connect() as conn:
        tx = conn.begin()
        assert [r.id for r in queries.lock_earliest_runs(conn)] == [run.id]
        outcome: list[object] = []

        def go() -> None:
            try:
                outcome.append(rerun_run(run.id, every_task=True, engine=engine, clock=clock))
            except BaseException as exc:
                outcome.append(exc)

        rerunning = threading.Thread(target=go)
        rerunning.start()
        rerunning.join(0.5)
        assert rerunning.is_alive()  # waits for the pass's lock on the run
        queries.finish_runs(conn, [(run.id, queries.RunStatus.FAILED, "boom")], clock())
        tx.commit()
    rerunning.join(10)
    assert not isinstance(outcome[0], BaseException), outcome
    assert run_until_ended(t, engine, run.id) == "succeeded"


# --- backfill ---------------------------------------------------------------------------


def hourly_dag(tmp_path: Path):  # type: ignore[no-untyped-def]
    reg = write_project(tmp_path, {"hourly": HOURLY, "adhoc": CHAIN})
    return reg, reg.get("hourly")


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(2024, 1, 1, hour, minute, tzinfo=UTC)


def test_backfill_creates_one_run_per_fire_time_and_is_idempotent(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    reg, dag = hourly_dag(tmp_path)
    queued = trigger_dag("hourly", creator="t", engine=engine, clock=clock)

    done = backfill(dag, at(8, 30), at(11), by="ops", engine=engine, clock=clock)

    assert done.times == [at(9), at(10), at(11)]
    assert [r.scheduled_for for r in done.created] == done.times
    assert rows(
        engine, "SELECT scheduled_for, trigger, creator FROM dag_run WHERE id > 1 ORDER BY id"
    ) == [(t, "backfill", "ops") for t in done.times]
    again = backfill(dag, at(9), at(14), engine=engine, clock=clock)  # now is 12:00:30
    assert [r.scheduled_for for r in again.skipped] == done.times
    assert [r.scheduled_for for r in again.created] == [at(12)]
    assert again.later == 2  # 13:00 and 14:00 are left to the schedule
    assert rows(engine, "SELECT count(*) FROM dag_run") == [(5,)]

    # Runs execute in time order, behind the run already queued.
    manager = InstantManager()
    t = Ticker(reg, manager, engine, "config.py", clock=clock)
    for _ in range(30):
        t.run_pass()
    assert rows(engine, "SELECT DISTINCT status FROM dag_run") == [("succeeded",)]
    started = list(dict.fromkeys(launch.dag_run_id for launch in manager.started))
    assert started == [queued.id, *(r.id for r in done.created), again.created[0].id]


def test_backfill_reads_times_in_the_dag_time_zone(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    paris = {
        **CHAIN,
        "workflow.yaml": "description: x\nschedule: '0 3 * * *'\ntimezone: Europe/Paris\n",
    }
    reg = write_project(tmp_path, {"paris": paris})
    dag = reg.get("paris")
    start = parse_time("2023-12-30", dag.timezone, "--start")
    end = parse_time("2023-12-31T03:00", dag.timezone, "--end")
    assert start == datetime(2023, 12, 29, 23, tzinfo=UTC)
    done = backfill(dag, start, end, engine=engine, clock=clock)
    assert done.times == [
        datetime(2023, 12, 30, 2, tzinfo=UTC),
        datetime(2023, 12, 31, 2, tzinfo=UTC),
    ]
    with pytest.raises(UsageError, match="--start 'yesterday' is not an ISO time"):
        parse_time("yesterday", dag.timezone, "--start")


def test_backfill_rerun_failed_reruns_failed_runs_in_place(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    reg, dag = hourly_dag(tmp_path)
    failing = True
    t = Ticker(
        reg, InstantManager(outcome=lambda launch: not failing), engine, "config.py", clock=clock
    )
    first = backfill(dag, at(9), at(10), engine=engine, clock=clock)
    for _ in range(30):
        t.run_pass()
    assert rows(engine, "SELECT DISTINCT status FROM dag_run") == [("failed",)]
    failing = False
    with engine.begin() as conn:
        conn.execute(
            text(f"UPDATE dag_run SET status = 'succeeded' WHERE id = {first.created[1].id}")
        )

    dry = backfill(dag, at(9), at(10), rerun_failed=True, dry_run=True, engine=engine, clock=clock)
    assert [r.id for r in dry.rerun] == [first.created[0].id]
    assert rows(engine, "SELECT status FROM dag_run ORDER BY id") == [("failed",), ("succeeded",)]

    done = backfill(dag, at(9), at(10), rerun_failed=True, engine=engine, clock=clock)
    assert [r.id for r in done.rerun] == [first.created[0].id]
    assert [r.id for r in done.skipped] == [first.created[1].id]
    assert done.created == []
    for _ in range(30):
        t.run_pass()
    assert rows(engine, "SELECT status FROM dag_run ORDER BY id") == [
        ("succeeded",),
        ("succeeded",),
    ]


def test_two_overlapping_backfills_at_once_make_one_run_per_time(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    _, dag = hourly_dag(tmp_path)
    clock.advance(days=20)
    results: list[object] = []
    barrier = threading.Barrier(2)

    def go(start: datetime, end: datetime) -> None:
        barrier.wait()
        results.append(backfill(dag, start, end, engine=engine, clock=clock))

    threads = [
        threading.Thread(target=go, args=(at(0), at(0).replace(day=15))),
        threading.Thread(target=go, args=(at(0).replace(day=5), at(0).replace(day=20))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 2
    expected = 19 * 24 + 1  # every hour from Jan 1 00:00 to Jan 20 00:00
    assert rows(engine, "SELECT count(*), count(DISTINCT scheduled_for) FROM dag_run") == [
        (expected, expected)
    ]
    assert sum(len(r.created) for r in results) == expected  # type: ignore[attr-defined]


def test_backfill_mistakes_are_usage_errors_that_change_nothing(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    reg, dag = hourly_dag(tmp_path)
    with pytest.raises(UsageError, match="DAG adhoc has no schedule"):
        backfill(reg.get("adhoc"), at(9), at(10), engine=engine, clock=clock)
    with pytest.raises(UsageError, match="is before --start"):
        backfill(dag, at(10), at(9), engine=engine, clock=clock)
    with pytest.raises(UsageError, match="has no fire time between"):
        backfill(dag, at(9, 1), at(9, 59), engine=engine, clock=clock)
    clock.advance(days=60)
    with pytest.raises(UsageError, match="1,441 fire times: more than 1,000 need --yes"):
        backfill(dag, at(0), at(0).replace(month=3), engine=engine, clock=clock)
    assert rows(engine, "SELECT count(*) FROM dag_run") == [(0,)]
    done = backfill(
        dag, at(0), at(0).replace(month=3), confirm_many=True, engine=engine, clock=clock
    )
    assert len(done.created) == 1441


# --- prune, status, waiting ---------------------------------------------------------------


def test_prune_deletes_old_finished_runs_in_batches_but_never_the_latest_or_running(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    reg = write_project(tmp_path, {"chain": CHAIN, "other": CHAIN})
    t = Ticker(reg, InstantManager(), engine, "config.py", clock=clock)
    old = [trigger_dag("chain", creator="t", engine=engine, clock=clock) for _ in range(5)]
    lone = trigger_dag("other", creator="t", engine=engine, clock=clock)
    for _ in range(30):
        t.run_pass()
    clock.advance(days=100)
    running = trigger_dag("chain", creator="t", engine=engine, clock=clock)  # the latest of chain
    assert rows(engine, "SELECT count(*) FROM task_run") == [(12,)]

    dry = prune(timedelta(days=90), dry_run=True, engine=engine, clock=clock)
    assert dry.by_dag == {"chain": (5, 10)}  # "other" keeps its only (most recent) run
    assert rows(engine, "SELECT count(*) FROM dag_run") == [(7,)]

    done = prune(timedelta(days=90), batch_size=2, engine=engine, clock=clock)
    assert done.by_dag == {"chain": (5, 10)} and (done.runs, done.task_runs) == (5, 10)
    assert rows(engine, "SELECT id FROM dag_run ORDER BY id") == [(lone.id,), (running.id,)]
    assert rows(engine, "SELECT count(*) FROM task_run") == [(2,)]
    assert prune(timedelta(days=90), engine=engine, clock=clock).runs == 0
    assert old  # all five were old and finished


def test_status_reports_schedulers_paused_dags_work_and_next_fire_times(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    reg = write_project(tmp_path, {"hourly": HOURLY, "chain": CHAIN})
    manager = InstantManager(capacity=0)
    t = Ticker(reg, manager, engine, "config.py", clock=clock)
    trigger_dag("chain", creator="t", engine=engine, clock=clock)
    t.run_pass()
    pause_dag("hourly", engine=engine, clock=clock)
    clock.advance(30)

    now = status(engine=engine, clock=clock)

    assert [(s.id, s.manager, s.dags) for s in now.schedulers] == [
        (t.scheduler_id, "test", ["chain", "hourly"])
    ]
    assert [p.dag_name for p in now.paused] == ["hourly"]
    assert now.activity.running_runs == 1 and now.activity.waiting_task_runs == 1
    assert now.activity.oldest_waiting_since == clock() - timedelta(seconds=30)
    assert [(c.dag_name, c.next_fire_at, c.paused) for c in now.schedules] == [
        ("hourly", at(13), True)
    ]
    clock.advance(minutes=10)
    assert status(engine=engine, clock=clock).schedulers == []  # not seen for 10 minutes


def test_wait_for_run_reports_each_change_and_the_end(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    reg = write_project(tmp_path, {"chain": CHAIN})
    t = Ticker(reg, InstantManager(), engine, "config.py", clock=clock)
    run = trigger_dag("chain", creator="t", engine=engine, clock=clock)
    with pytest.raises(RunWaitTimeout, match=f"run {run.id} is still running after 0.1s"):
        wait_for_run(run.id, timeout=0.1, poll_seconds=0.02, engine=engine)
    stop = threading.Event()
    driver = threading.Thread(
        target=lambda: [t.run_pass() for _ in range(6) if not stop.wait(0.05)]
    )
    driver.start()
    changes: list[tuple[str, int, str]] = []
    ended = wait_for_run(
        run.id,
        timeout=30,
        poll_seconds=0.01,
        on_change=lambda r: changes.append((r.task_name, r.attempt, r.status.value)),
        engine=engine,
    )
    driver.join()
    assert ended.status.value == "succeeded"
    assert changes[-1] == ("b.yaml", 1, "succeeded")
    assert ("a.yaml", 1, "succeeded") in changes
    assert len(set(changes)) == len(changes)  # each state reported once
    with pytest.raises(UnknownRunError):
        wait_for_run(4242, engine=engine)
