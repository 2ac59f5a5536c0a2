"""Every rule of the tick pass, on a real PostgreSQL, driven by a settable clock."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tests.support import passes_at_once, rows, write_project
from workflows_tick.scheduler import trigger_dag
from workflows_tick.testing import FakeClock, InstantManager
from workflows_tick.tick import Ticker

CHAIN = {
    "workflow.yaml": "description: a chain\n",
    "a.yaml": "type: no_op\n",
    "b.yaml": "type: no_op\ninputs: [a.yaml]\n",
    "c.yaml": "type: no_op\ninputs: [b.yaml]\n",
}


def ticker(engine: Engine, registry, manager, clock, **kw) -> Ticker:  # type: ignore[no-untyped-def]
    return Ticker(registry, manager, engine, "config.py", clock=clock, **kw)


def until_idle(t: Ticker, limit: int = 50) -> None:
    for _ in range(limit):
        if not t.run_pass().did_work:
            return
    raise AssertionError("no quiescence")


# --- due runs ---------------------------------------------------------------------------


def test_new_dag_waits_for_its_next_fire_time(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    reg = write_project(
        tmp_path, {"hourly": {**CHAIN, "workflow.yaml": "description: x\nschedule: '0 * * * *'\n"}}
    )
    t = ticker(engine, reg, InstantManager(), clock)
    assert t.run_pass().created_runs == []  # 12:00:30: the 12:00 time passed before we saw the DAG
    clock.advance(minutes=59)  # 12:59:30
    assert t.run_pass().created_runs == []
    clock.advance(seconds=30)  # 13:00:00 exactly
    assert len(t.run_pass().created_runs) == 1
    assert rows(engine, "SELECT scheduled_for FROM dag_run") == [
        (datetime(2024, 1, 1, 13, tzinfo=UTC),)
    ]


def test_missed_times_make_one_run_for_the_most_recent(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    reg = write_project(
        tmp_path,
        {"every_minute": {**CHAIN, "workflow.yaml": "description: x\nschedule: '* * * * *'\n"}},
    )
    t = ticker(engine, reg, InstantManager(), clock)
    t.run_pass()
    clock.advance(hours=5, seconds=15)  # 17:00:45; 300 fire times were missed
    assert len(t.run_pass().created_runs) == 1
    assert t.run_pass().created_runs == []
    assert rows(engine, "SELECT scheduled_for FROM dag_run") == [
        (datetime(2024, 1, 1, 17, 0, tzinfo=UTC),)
    ]
    clock.advance(seconds=15)  # 17:01:00
    assert len(t.run_pass().created_runs) == 1


def test_many_schedulers_never_duplicate_a_scheduled_run(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    dags = {
        f"d{i}": {**CHAIN, "workflow.yaml": "description: x\nschedule: '* * * * *'\n"}
        for i in range(20)
    }
    reg = write_project(tmp_path, dags)
    tickers = [ticker(engine, reg, InstantManager(capacity=0), clock) for _ in range(6)]
    tickers[0].run_pass()
    for _ in range(5):
        clock.advance(minutes=1)
        passes_at_once(tickers)
    counts = rows(
        engine, "SELECT dag_name, count(*), count(DISTINCT scheduled_for) FROM dag_run GROUP BY 1"
    )
    assert len(counts) == 20
    assert all(c == 5 and d == 5 for _, c, d in counts)


def test_a_schedule_edit_applies_from_now_and_never_replays(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    files = {**CHAIN, "workflow.yaml": "description: x\nschedule: '0 0 * * *'\n"}
    reg = write_project(tmp_path, {"d": files})
    t = ticker(engine, reg, InstantManager(), clock)
    t.run_pass()
    clock.advance(hours=3)  # 15:00:30: the old daily schedule is not due
    (tmp_path / "d" / "workflow.yaml").write_text("description: x\nschedule: '0 * * * *'\n")
    reg.reload()
    t.load_dags()
    assert t.run_pass().created_runs == []  # 13:00, 14:00 and 15:00 are not replayed
    clock.advance(minutes=59, seconds=30)  # 16:00
    assert len(t.run_pass().created_runs) == 1


def test_unscheduling_and_rescheduling_does_not_replay(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    reg = write_project(
        tmp_path, {"d": {**CHAIN, "workflow.yaml": "description: x\nschedule: '0 * * * *'\n"}}
    )
    t = ticker(engine, reg, InstantManager(), clock)
    t.run_pass()
    (tmp_path / "d" / "workflow.yaml").write_text("description: x\n")
    reg.reload()
    t.load_dags()
    t.run_pass()
    clock.advance(hours=3)
    (tmp_path / "d" / "workflow.yaml").write_text("description: x\nschedule: '0 * * * *'\n")
    reg.reload()
    t.load_dags()
    assert t.run_pass().created_runs == []


def test_a_removed_then_re_added_dag_waits_for_its_next_fire_time(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    reg = write_project(
        tmp_path, {"d": {**CHAIN, "workflow.yaml": "description: x\nschedule: '0 * * * *'\n"}}
    )
    t = ticker(engine, reg, InstantManager(), clock)
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
    # Like any DAG first seen, it waits for its next time (13:00 on Jan 4).
    assert t.run_pass().created_runs == []
    clock.advance(minutes=59, seconds=30)
    assert len(t.run_pass().created_runs) == 1


def _fires_over(
    engine: Engine, tmp_path: Path, schedule: str, start: datetime, hours: int
) -> list[str]:
    reg = write_project(
        tmp_path,
        {
            "d": {
                "workflow.yaml": f"description: x\nschedule: '{schedule}'\ntimezone: America/New_York\n",
                "a.yaml": "type: no_op\n",
            }
        },
    )
    clock = FakeClock(start)
    t = ticker(engine, reg, InstantManager(), clock)
    for _ in range(hours * 12):  # a pass every 5 minutes
        t.run_pass()
        clock.advance(minutes=5)
    return [
        r[0]
        for r in rows(
            engine,
            "SELECT to_char(scheduled_for AT TIME ZONE 'America/New_York', 'MM-DD HH24:MI') "
            "|| ' ' || to_char(scheduled_for AT TIME ZONE 'UTC', 'HH24:MI') FROM dag_run ORDER BY scheduled_for",
        )
    ]


def test_spring_forward_runs_a_skipped_daily_time_once(engine: Engine, tmp_path: Path) -> None:
    # 2024-03-10 02:30 does not exist in New York: it runs at 03:00 EDT, once.
    fires = _fires_over(engine, tmp_path, "30 2 * * *", datetime(2024, 3, 9, 5, tzinfo=UTC), 72)
    assert fires == ["03-09 02:30 07:30", "03-10 03:00 07:00", "03-11 02:30 06:30"]


def test_fall_back_runs_a_repeated_daily_time_once(engine: Engine, tmp_path: Path) -> None:
    # 2024-11-03 01:30 happens twice in New York (EDT, then EST): it runs once.
    fires = _fires_over(engine, tmp_path, "30 1 * * *", datetime(2024, 11, 2, 4, tzinfo=UTC), 72)
    assert fires == ["11-02 01:30 05:30", "11-03 01:30 05:30", "11-04 01:30 06:30"]


def test_fall_back_runs_an_hourly_schedule_in_both_repeated_hours(
    engine: Engine, tmp_path: Path
) -> None:
    fires = _fires_over(
        engine, tmp_path, "30 * * * *", datetime(2024, 11, 3, 4, 0, 1, tzinfo=UTC), 4
    )
    assert fires == [
        "11-03 00:30 04:30",
        "11-03 01:30 05:30",
        "11-03 01:30 06:30",
        "11-03 02:30 07:30",
    ]


def test_an_hourly_run_in_the_repeated_fall_back_hour_is_created_when_due(
    engine: Engine, tmp_path: Path
) -> None:
    reg = write_project(
        tmp_path,
        {
            "d": {
                "workflow.yaml": "description: x\nschedule: '30 * * * *'\n"
                "timezone: America/New_York\n",
                "a.yaml": "type: no_op\n",
            }
        },
    )
    clock = FakeClock(datetime(2024, 11, 3, 5, 0, tzinfo=UTC))
    t = ticker(engine, reg, InstantManager(), clock)
    t.run_pass()  # cursor: 05:30 UTC (01:30 EDT)
    clock.now = datetime(2024, 11, 3, 5, 31, tzinfo=UTC)
    assert len(t.run_pass().created_runs) == 1  # 01:30 EDT
    clock.now = datetime(2024, 11, 3, 6, 31, tzinfo=UTC)  # 01:31 EST, a pass a minute late
    result = t.run_pass()
    # The 01:30 EST run (06:30 UTC) is created now, and the next fire time is ahead
    # (a next fire time in the past would make the loop spin without sleeping).
    assert result.next_fire_at is not None and result.next_fire_at > clock.now
    assert rows(engine, "SELECT scheduled_for FROM dag_run ORDER BY 1") == [
        (datetime(2024, 11, 3, 5, 30, tzinfo=UTC),),
        (datetime(2024, 11, 3, 6, 30, tzinfo=UTC),),
    ]


# --- advancing runs ---------------------------------------------------------------------


def test_a_chain_runs_in_order_and_succeeds(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    reg = write_project(tmp_path, {"chain": CHAIN})
    manager = InstantManager()
    t = ticker(engine, reg, manager, clock)
    run = trigger_dag("chain", creator="test", engine=engine, clock=clock)
    until_idle(t)
    assert manager.ran() == [("chain", "a.yaml", 1), ("chain", "b.yaml", 1), ("chain", "c.yaml", 1)]
    assert rows(engine, f"SELECT status FROM dag_run WHERE id = {run.id}") == [("succeeded",)]


def test_fan_in_waits_for_every_input(engine: Engine, tmp_path: Path, clock: FakeClock) -> None:
    dag = {
        "workflow.yaml": "description: fan\n",
        "start.yaml": "type: no_op\n",
        "x.yaml": "type: no_op\ninputs: [start.yaml]\n",
        "y.yaml": "type: no_op\ninputs: [start.yaml]\n",
        "join.yaml": "type: no_op\ninputs: [x.yaml, y.yaml]\n",
    }
    reg = write_project(tmp_path, {"fan": dag})
    manager = InstantManager(
        outcome=lambda launch: not (launch.task.name == "y.yaml" and launch.attempt == 1)
    )
    t = ticker(engine, reg, manager, clock)
    trigger_dag("fan", creator="test", engine=engine, clock=clock)
    until_idle(t)
    ran = manager.ran()
    assert ran.index(("fan", "join.yaml", 1)) > ran.index(("fan", "y.yaml", 2))
    assert rows(engine, "SELECT status FROM dag_run") == [("succeeded",)]


def test_only_the_earliest_run_of_a_dag_advances(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    reg = write_project(tmp_path, {"chain": CHAIN})
    manager = InstantManager(finish=False)
    t = ticker(engine, reg, manager, clock)
    first = trigger_dag("chain", creator="test", engine=engine, clock=clock)
    second = trigger_dag("chain", creator="test", engine=engine, clock=clock)
    for _ in range(3):
        t.run_pass()
    assert rows(engine, "SELECT DISTINCT dag_run_id FROM task_run") == [(first.id,)]
    manager.finish = True
    until_idle(t)
    assert rows(engine, "SELECT id, status FROM dag_run ORDER BY id") == [
        (first.id, "succeeded"),
        (second.id, "succeeded"),
    ]
    # Runs never overlapped: every task run of the second started after the first ended.
    overlap = rows(
        engine,
        f"SELECT count(*) FROM task_run WHERE dag_run_id = {second.id} AND created_at < "
        f"(SELECT ended_at FROM dag_run WHERE id = {first.id})",
    )
    assert overlap == [(0,)]


def test_a_failing_task_is_tried_three_times_by_default(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    reg = write_project(tmp_path, {"chain": CHAIN})
    manager = InstantManager(outcome=lambda launch: launch.task.name != "b.yaml")
    t = ticker(engine, reg, manager, clock)
    trigger_dag("chain", creator="test", engine=engine, clock=clock)
    until_idle(t)
    assert manager.ran() == [("chain", "a.yaml", 1)] + [("chain", "b.yaml", n) for n in (1, 2, 3)]
    assert rows(engine, "SELECT status, message FROM dag_run") == [
        ("failed", "failed: b.yaml (after 3 attempts); not run: c.yaml")
    ]


def test_retries_and_retry_delay_come_from_the_dag_and_the_task(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    dag = {
        "workflow.yaml": "description: x\nretries: 1\nretry_delay: 60\n",
        "once.yaml": "type: no_op\nretries: 0\n",
        "twice.yaml": "type: no_op\n",
    }
    reg = write_project(tmp_path, {"d": dag})
    manager = InstantManager(outcome=lambda launch: False)
    t = ticker(engine, reg, manager, clock)
    trigger_dag("d", creator="test", engine=engine, clock=clock)
    until_idle(t)
    assert sorted(manager.ran()) == [("d", "once.yaml", 1), ("d", "twice.yaml", 1)]
    clock.advance(59)
    until_idle(t)
    assert len(manager.ran()) == 2  # the retry waits out its delay
    clock.advance(1)
    until_idle(t)
    assert sorted(manager.ran()) == [
        ("d", "once.yaml", 1),
        ("d", "twice.yaml", 1),
        ("d", "twice.yaml", 2),
    ]
    assert rows(engine, "SELECT status FROM dag_run") == [("failed",)]


def test_independent_branches_finish_before_the_run_fails(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    dag = {
        "workflow.yaml": "description: x\nretries: 0\n",
        "bad.yaml": "type: no_op\n",
        "after_bad.yaml": "type: no_op\ninputs: [bad.yaml]\n",
        "good.yaml": "type: no_op\n",
        "after_good.yaml": "type: no_op\ninputs: [good.yaml]\n",
    }
    reg = write_project(tmp_path, {"d": dag})
    manager = InstantManager(outcome=lambda launch: launch.task.name != "bad.yaml")
    t = ticker(engine, reg, manager, clock)
    trigger_dag("d", creator="test", engine=engine, clock=clock)
    until_idle(t)
    assert ("d", "after_good.yaml", 1) in manager.ran()
    assert ("d", "after_bad.yaml", 1) not in manager.ran()
    assert rows(engine, "SELECT status, message FROM dag_run") == [
        ("failed", "failed: bad.yaml (after 1 attempt); not run: after_bad.yaml")
    ]


def test_a_pass_leaves_a_run_of_a_dag_it_has_not_read_for_the_loop_to_reload(
    engine: Engine, tmp_path: Path
) -> None:
    reg = write_project(tmp_path, {"old": CHAIN})
    t = Ticker(reg, InstantManager(), engine, "config.py")  # the real clock
    write_project(tmp_path, {"new": CHAIN})  # added and triggered after the folder was read
    trigger_dag("new", creator="test", engine=engine)
    result = t.run_pass()
    assert result.unknown_dags == {"new"}
    assert reg.generation == 0  # the pass did not read the folder again
    assert rows(engine, "SELECT status FROM dag_run") == [("running",)]
    t.reload_dags()  # what the loop does before its next pass
    until_idle(t)
    assert rows(engine, "SELECT status FROM dag_run") == [("succeeded",)]


def test_a_run_of_an_unknown_dag_created_ahead_of_the_read_fails_after_one_reload(
    engine: Engine, tmp_path: Path
) -> None:
    reg = write_project(tmp_path, {"old": CHAIN})
    t = Ticker(reg, InstantManager(), engine, "config.py")
    # Created by a machine whose clock runs ahead: after the folder was read, by its clock.
    ahead = FakeClock(datetime.now(UTC).replace(year=datetime.now(UTC).year + 1))
    trigger_dag("ghost", creator="test", engine=engine, clock=ahead)
    assert t.run_pass().unknown_dags == {"ghost"}
    t.reload_dags()
    assert t.run_pass().unknown_dags == set()
    assert rows(engine, "SELECT status, message FROM dag_run") == [
        ("failed", "DAG 'ghost' is no longer in the registry")
    ]


def test_a_removed_dag_fails_its_running_runs(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    reg = write_project(tmp_path, {"chain": CHAIN, "other": CHAIN})
    t = ticker(engine, reg, InstantManager(finish=False), clock)
    trigger_dag("chain", creator="test", engine=engine, clock=clock)
    t.run_pass()
    for f in (tmp_path / "chain").iterdir():
        f.unlink()
    (tmp_path / "chain").rmdir()
    reg.reload()
    t.load_dags()
    t.run_pass()
    assert rows(engine, "SELECT status, message FROM dag_run") == [
        ("failed", "DAG 'chain' is no longer in the registry")
    ]
    assert rows(engine, "SELECT status FROM task_run") == [("running",)]  # its lease decides


def test_a_broken_dag_does_not_stop_the_others(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    reg = write_project(
        tmp_path,
        {"chain": CHAIN, "broken": {"workflow.yaml": "description: x\n", "a.yaml": "type: nope\n"}},
    )
    manager = InstantManager()
    t = ticker(engine, reg, manager, clock)
    trigger_dag("broken", creator="test", engine=engine, clock=clock)
    trigger_dag("chain", creator="test", engine=engine, clock=clock)
    until_idle(t)
    assert rows(engine, "SELECT dag_name, status FROM dag_run ORDER BY id") == [
        ("broken", "running"),
        ("chain", "succeeded"),
    ]


# --- the manager step ---------------------------------------------------------------------


def test_a_failed_launch_fails_the_attempt_and_is_retried(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    reg = write_project(tmp_path, {"chain": CHAIN})
    manager = InstantManager(
        fail_launch=lambda launch: launch.task.name == "a.yaml" and launch.attempt == 1
    )
    t = ticker(engine, reg, manager, clock)
    trigger_dag("chain", creator="test", engine=engine, clock=clock)
    until_idle(t)
    assert rows(
        engine,
        "SELECT task_name, attempt, status, error FROM task_run WHERE task_name = 'a.yaml' ORDER BY attempt",
    ) == [
        ("a.yaml", 1, "failed", "launch failed: no room at the inn"),
        ("a.yaml", 2, "succeeded", None),
    ]
    assert rows(engine, "SELECT status FROM dag_run") == [("succeeded",)]


def test_the_oldest_waiting_task_run_starts_first(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    reg = write_project(tmp_path, {"one": CHAIN, "two": CHAIN})
    manager = InstantManager(capacity=1)
    t = ticker(engine, reg, manager, clock)
    trigger_dag("two", creator="test", engine=engine, clock=clock)
    trigger_dag("one", creator="test", engine=engine, clock=clock)
    t.run_pass()
    assert manager.ran() == [("two", "a.yaml", 1)]


def test_concurrent_claims_never_start_a_task_twice(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    dag = {"workflow.yaml": "description: wide\n"} | {
        f"t{i:03}.yaml": "type: no_op\n" for i in range(200)
    }
    reg = write_project(tmp_path, {"wide": dag})
    managers = [InstantManager(capacity=7) for _ in range(4)]
    tickers = [ticker(engine, reg, m, clock) for m in managers]
    trigger_dag("wide", creator="test", engine=engine, clock=clock)

    def drive(tk: Ticker) -> None:
        for _ in range(200):
            tk.run_pass()

    threads = [threading.Thread(target=drive, args=(tk,)) for tk in tickers]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    started = [launch.task_run_id for m in managers for launch in m.started]
    assert len(started) == len(set(started)) == 200
    assert rows(engine, "SELECT status FROM dag_run") == [("succeeded",)]


def test_an_expired_lease_fails_the_attempt_and_it_is_retried(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    reg = write_project(tmp_path, {"chain": CHAIN})
    dead = InstantManager(finish=False)
    t_dead = ticker(engine, reg, dead, clock, lease_seconds=30)
    trigger_dag("chain", creator="test", engine=engine, clock=clock)
    t_dead.run_pass()  # claims a.yaml, then "dies": no more passes, no renewals
    survivor = InstantManager()
    t = ticker(engine, reg, survivor, clock, lease_seconds=30)
    clock.advance(29)
    t.run_pass()
    assert rows(engine, "SELECT status FROM task_run") == [("running",)]
    clock.advance(2)
    until_idle(t)
    assert rows(
        engine,
        "SELECT task_name, attempt, status, COALESCE(error LIKE 'lease expired%', false) FROM task_run ORDER BY id",
    )[:2] == [
        ("a.yaml", 1, "failed", True),
        ("a.yaml", 2, "succeeded", False),
    ]
    assert rows(engine, "SELECT status FROM dag_run") == [("succeeded",)]


def test_alive_task_runs_keep_their_lease(engine: Engine, tmp_path: Path, clock: FakeClock) -> None:
    reg = write_project(tmp_path, {"chain": CHAIN})
    slow = InstantManager(finish=False)
    t = ticker(engine, reg, slow, clock, lease_seconds=30)
    trigger_dag("chain", creator="test", engine=engine, clock=clock)
    for _ in range(10):
        t.run_pass()
        clock.advance(20)
    assert rows(engine, "SELECT attempt, status FROM task_run") == [(1, "running")]


# --- triggers ----------------------------------------------------------------------------


def test_two_triggers_in_the_same_second_both_succeed(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    write_project(tmp_path, {"chain": CHAIN})
    a = trigger_dag("chain", creator="x", engine=engine, clock=clock, parameters={"DAY": "1"})
    b = trigger_dag("chain", creator="x", engine=engine, clock=clock)
    assert a.id != b.id
    assert a.parameters == {"DAY": "1"}
    assert rows(engine, "SELECT count(*) FROM dag_run") == [(2,)]


def test_trigger_parameters_reach_the_launch(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    reg = write_project(tmp_path, {"chain": CHAIN})
    manager = InstantManager()
    t = ticker(engine, reg, manager, clock)
    trigger_dag("chain", creator="x", engine=engine, clock=clock, parameters={"DAY": "2024-01-01"})
    t.run_pass()
    assert manager.started[0].parameters == {"DAY": "2024-01-01"}


@pytest.mark.parametrize(
    "bad",
    [
        {"1X": "a"},
        {"A-B": "a"},
        {"A": 1},
        pytest.param({"A": "a\x00b"}, id="nul-character"),
        pytest.param({"A": "\udcff"}, id="not-utf8"),
    ],
)
def test_bad_trigger_parameters_are_refused(engine: Engine, bad: dict) -> None:  # type: ignore[type-arg]
    from workflows_tick.errors import UsageError

    with pytest.raises(UsageError):
        trigger_dag("chain", creator="x", engine=engine, parameters=bad)


def test_outcomes_of_a_failed_pass_are_recorded_by_the_next(
    engine: Engine, tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    from workflows_tick import queries

    reg = write_project(tmp_path, {"chain": CHAIN})
    manager = InstantManager()
    t = ticker(engine, reg, manager, clock)
    trigger_dag("chain", creator="test", engine=engine, clock=clock)
    t.run_pass()  # starts a.yaml; the manager reports it at the next poll, once

    real = queries.expire_leases

    def broken(*args: object) -> list[int]:
        raise OperationalError("SELECT 1", {}, Exception("server closed the connection"))

    monkeypatch.setattr(queries, "expire_leases", broken)
    with pytest.raises(OperationalError):
        t.run_pass()
    monkeypatch.setattr(queries, "expire_leases", real)
    until_idle(t)
    assert rows(engine, "SELECT task_name, attempt, status FROM task_run ORDER BY id") == [
        ("a.yaml", 1, "succeeded"),
        ("b.yaml", 1, "succeeded"),
        ("c.yaml", 1, "succeeded"),
    ]


def test_nul_characters_in_output_do_not_poison_the_pass(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    from workflows_tick.managers.base import Outcome

    reg = write_project(tmp_path, {"chain": CHAIN})
    manager = InstantManager(finish=False)
    t = ticker(engine, reg, manager, clock)
    trigger_dag("chain", creator="test", engine=engine, clock=clock)
    t.run_pass()
    task_run_id = manager.started[0].task_run_id
    t.record([Outcome(task_run_id, succeeded=False, error="bad\x00byte", output_tail="out\x00put")])
    assert rows(engine, "SELECT error, output_tail FROM task_run") == [
        ("bad\ufffdbyte", "out\ufffdput")
    ]


# --- hosts ------------------------------------------------------------------------------


class OneHostManager(InstantManager):
    """Every attempt runs on one host, which the claim itself records."""

    def fixed_host(self) -> str | None:
        return "box:42"


@pytest.mark.parametrize(
    ("manager", "host"), [(OneHostManager(finish=False), "box:42"), (InstantManager(), "test-1-1")]
)
def test_each_claim_records_its_host(
    engine: Engine,
    tmp_path: Path,
    clock: FakeClock,
    manager: InstantManager,
    host: str,
) -> None:
    reg = write_project(tmp_path, {"chain": CHAIN})
    t = ticker(engine, reg, manager, clock)
    trigger_dag("chain", creator="t", engine=engine, clock=clock)
    assert t.run_pass().started == [1]
    assert rows(engine, "SELECT host FROM task_run") == [(host,)]
