"""Rolling deploys: schedulers loading different copies of the DAG folder share one
database (docs/scheduler.md, "Rolling deploys"). Real PostgreSQL, a settable clock."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine, event, text

from tests.support import rows, write_project
from workflows_tick import queries
from workflows_tick.dags import DagRegistry
from workflows_tick.scheduler import trigger_dag
from workflows_tick.testing import FakeClock, InstantManager
from workflows_tick.tick import Ticker

CHAIN = {
    "workflow.yaml": "description: a chain\n",
    "a.yaml": "type: no_op\n",
    "b.yaml": "type: no_op\ninputs: [a.yaml]\n",
}
WIDER = {**CHAIN, "x.yaml": "type: no_op\ninputs: [b.yaml]\n"}  # a task added
GONE = "DAG 'added' is no longer in the registry"


def scheduler(engine: Engine, registry: DagRegistry, clock: FakeClock) -> Ticker:
    return Ticker(registry, InstantManager(), engine, "config.py", clock=clock)


def passes(t: Ticker, count: int = 5) -> None:
    """What a loop does: passes, reading the folder again when a pass met an unknown DAG."""
    for _ in range(count):
        if t.run_pass().unknown_dags:
            t.reload_dags()


def until_idle(t: Ticker, limit: int = 50) -> None:
    for _ in range(limit):
        if not t.run_pass().did_work:
            return
    raise AssertionError("no quiescence")


def ran(t: Ticker) -> list[tuple[str, str, int]]:
    assert isinstance(t.manager, InstantManager)
    return t.manager.ran()


def hold(t: Ticker, finish: bool = False) -> None:
    """Keep the attempts ``t`` starts running (or let them finish again)."""
    assert isinstance(t.manager, InstantManager)
    t.manager.finish = finish


def both(clock: FakeClock, minutes: int, *tickers: Ticker) -> None:
    """Let ``minutes`` pass, each scheduler passing every 5 minutes (in turn, until idle)."""
    for _ in range(minutes // 5):
        clock.advance(minutes=5)
        for t in tickers:
            until_idle(t)


# --- a DAG only the new copy has -----------------------------------------------------------


def test_a_dag_only_the_new_copy_has_is_never_failed_while_the_new_scheduler_is_live(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    old = scheduler(engine, write_project(tmp_path / "old", {"shared": CHAIN}), clock)
    new = scheduler(
        engine, write_project(tmp_path / "new", {"shared": CHAIN, "added": CHAIN}), clock
    )
    hold(new)  # a.yaml keeps running while the old scheduler passes
    new.run_pass()  # its heartbeat: it has "added"
    run = trigger_dag(new.dags["added"], creator="test", engine=engine, clock=clock)
    for _ in range(3):
        clock.advance(minutes=4)
        new.run_pass()
        passes(old)
    assert rows(engine, "SELECT status, message FROM dag_run") == [("running", None)]
    assert ran(old) == []
    hold(new, finish=True)
    until_idle(new)
    assert rows(engine, f"SELECT status FROM dag_run WHERE id = {run.id}") == [("succeeded",)]


def test_a_dag_no_live_scheduler_knows_is_failed_as_removed_once_the_grace_has_passed(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    old = scheduler(engine, write_project(tmp_path / "old", {"shared": CHAIN}), clock)
    new = scheduler(
        engine, write_project(tmp_path / "new", {"shared": CHAIN, "added": CHAIN}), clock
    )
    new.run_pass()
    trigger_dag(new.dags["added"], creator="test", engine=engine, clock=clock)
    clock.advance(minutes=9)  # the new scheduler's last pass is 9 minutes old: still live
    passes(old)
    assert rows(engine, "SELECT status FROM dag_run") == [("running",)]
    clock.advance(minutes=2)  # 11 minutes: past the default --removed-grace of 10
    passes(old)
    assert rows(engine, "SELECT status, message FROM dag_run") == [("failed", GONE)]


def test_a_dag_known_only_to_a_stopped_scheduler_is_failed_as_removed_at_once(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    old = scheduler(engine, write_project(tmp_path / "old", {"shared": CHAIN}), clock)
    new = scheduler(
        engine, write_project(tmp_path / "new", {"shared": CHAIN, "added": CHAIN}), clock
    )
    new.run_pass()
    trigger_dag("added", creator="test", engine=engine, clock=clock)  # by name: no copy
    passes(old)
    assert rows(engine, "SELECT status FROM dag_run") == [("running",)]
    new.mark_stopped()  # a clean exit (rolled back)
    passes(old)
    assert rows(engine, "SELECT status, message FROM dag_run") == [("failed", GONE)]


def test_a_run_a_new_copy_triggered_before_any_new_scheduler_passed_is_not_failed(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    old = scheduler(engine, write_project(tmp_path / "old", {"shared": CHAIN}), clock)
    new_folder = write_project(tmp_path / "new", {"shared": CHAIN, "added": CHAIN})
    # The new version's command line triggers it; no new scheduler has passed yet.
    trigger_dag(new_folder.get("added"), creator="test", engine=engine, clock=clock)
    clock.advance(minutes=9)
    passes(old)
    assert rows(engine, "SELECT status FROM dag_run") == [("running",)]
    new = scheduler(engine, new_folder, clock)  # the new version starts
    until_idle(new)
    assert rows(engine, "SELECT status FROM dag_run") == [("succeeded",)]
    assert ran(new) and ran(old) == []


def test_a_run_of_a_dag_no_scheduler_ever_had_is_failed_once_older_than_the_grace(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    old = scheduler(engine, write_project(tmp_path / "old", {"shared": CHAIN}), clock)
    new_folder = write_project(tmp_path / "new", {"shared": CHAIN, "added": CHAIN})
    trigger_dag(new_folder.get("added"), creator="test", engine=engine, clock=clock)
    passes(old)
    assert rows(engine, "SELECT status FROM dag_run") == [("running",)]
    clock.advance(minutes=11)  # past the default --removed-grace of 10
    passes(old)
    assert rows(engine, "SELECT status, message FROM dag_run") == [("failed", GONE)]


# --- a DAG whose copies differ -------------------------------------------------------------


def test_runs_of_the_old_copy_are_advanced_only_by_the_old_scheduler_while_it_is_live(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    old = scheduler(engine, write_project(tmp_path / "old", {"d": CHAIN}), clock)
    new = scheduler(engine, write_project(tmp_path / "new", {"d": WIDER}), clock)
    assert old.dags["d"].fingerprint != new.dags["d"].fingerprint
    old.run_pass()
    mine = trigger_dag(old.dags["d"], creator="test", engine=engine, clock=clock)
    theirs = trigger_dag(new.dags["d"], creator="test", engine=engine, clock=clock)
    for _ in range(10):  # interleaved passes, the new scheduler first each time
        new.run_pass()
        old.run_pass()
    # Each copy ran the run it created, and only that one: the old copy never met the
    # task it does not have, and the new one waited for the old copy's run to end
    # (runs of one DAG run one at a time) before it ran its own.
    tasks = rows(engine, "SELECT dag_run_id, task_name FROM task_run ORDER BY id")
    assert [t for r, t in tasks if r == mine.id] == ["a.yaml", "b.yaml"]
    assert [t for r, t in tasks if r == theirs.id] == ["a.yaml", "b.yaml", "x.yaml"]
    assert ran(old) == [("d", "a.yaml", 1), ("d", "b.yaml", 1)]
    assert ran(new) == [("d", "a.yaml", 1), ("d", "b.yaml", 1), ("d", "x.yaml", 1)]
    assert rows(engine, "SELECT status, fingerprint FROM dag_run ORDER BY id") == [
        ("succeeded", old.dags["d"].fingerprint),
        ("succeeded", new.dags["d"].fingerprint),
    ]


def test_a_run_of_the_old_copy_is_adopted_by_the_new_scheduler_once_the_old_one_stops(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    old = scheduler(engine, write_project(tmp_path / "old", {"d": CHAIN}), clock)
    new = scheduler(engine, write_project(tmp_path / "new", {"d": WIDER}), clock)
    old.run_pass()
    new.run_pass()
    run = trigger_dag(old.dags["d"], creator="test", engine=engine, clock=clock)
    old.run_pass()  # creates a.yaml and starts it
    for _ in range(3):
        new.run_pass()
    assert ran(new) == []
    assert rows(engine, "SELECT task_name FROM task_run") == [("a.yaml",)]
    old.run_pass()  # a.yaml succeeded; b.yaml waits
    assert rows(engine, "SELECT task_name, status FROM task_run ORDER BY id") == [
        ("a.yaml", "succeeded"),
        ("b.yaml", "running"),
    ]
    old.record(old.manager.shutdown(kill=False))  # b.yaml finishes as it stops (SIGINT)
    old.mark_stopped()
    until_idle(new)
    assert rows(engine, f"SELECT status, fingerprint FROM dag_run WHERE id = {run.id}") == [
        ("succeeded", new.dags["d"].fingerprint)
    ]
    assert ran(new) == [("d", "x.yaml", 1)]


def test_a_run_of_a_copy_no_live_scheduler_has_is_adopted_once_the_grace_has_passed(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    old = scheduler(engine, write_project(tmp_path / "old", {"d": CHAIN}), clock)
    new = scheduler(engine, write_project(tmp_path / "new", {"d": WIDER}), clock)
    old.run_pass()
    trigger_dag(old.dags["d"], creator="test", engine=engine, clock=clock)
    hold(old)
    old.run_pass()  # a.yaml running under the old scheduler, which then dies (kill -9)
    clock.advance(minutes=5)
    until_idle(new)
    assert ran(new) == []
    clock.advance(minutes=6)  # the old scheduler's last pass is 11 minutes old
    until_idle(new)  # a.yaml's lease expired meanwhile: retried, by the new copy
    assert rows(engine, "SELECT status, fingerprint FROM dag_run") == [
        ("succeeded", new.dags["d"].fingerprint)
    ]
    assert ran(new) == [("d", "a.yaml", 2), ("d", "b.yaml", 1), ("d", "x.yaml", 1)]


# --- the schedule cursor ------------------------------------------------------------------


def _hourly(files: dict[str, str], schedule: str = "0 * * * *") -> dict[str, str]:
    return {**files, "workflow.yaml": f"description: x\nschedule: '{schedule}'\n"}


def test_old_and_new_schedulers_never_fight_over_the_cursor(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    old = scheduler(engine, write_project(tmp_path / "old", {"d": _hourly(CHAIN)}), clock)
    new = scheduler(engine, write_project(tmp_path / "new", {"d": _hourly(WIDER)}), clock)
    fp_old, fp_new = old.dags["d"].fingerprint, new.dags["d"].fingerprint
    old.run_pass()  # 12:00:30: the cursor is the old copy's, at 13:00
    for step in range(36):  # three hours, both passing every 5 minutes, in either order
        both(clock, 5, *((old, new) if step % 2 else (new, old)))
        assert rows(engine, "SELECT fingerprint FROM dag_schedule") == [(fp_old,)]
    assert rows(
        engine, "SELECT extract(hour FROM scheduled_for), fingerprint FROM dag_run ORDER BY 1"
    ) == [(13, fp_old), (14, fp_old), (15, fp_old)]
    assert ("d", "x.yaml", 1) not in ran(new) + ran(old)
    old.mark_stopped()  # 15:00:30: the rollout ends
    both(clock, 15, new)
    # Taken over where it stands (the same schedule): no replay, the next time kept.
    assert rows(
        engine, "SELECT fingerprint, extract(hour FROM next_fire_at) FROM dag_schedule"
    ) == [(fp_new, 16)]
    both(clock, 45, new)
    assert rows(
        engine, "SELECT extract(hour FROM scheduled_for), fingerprint FROM dag_run ORDER BY 1"
    ) == [(13, fp_old), (14, fp_old), (15, fp_old), (16, fp_new)]
    assert ("d", "x.yaml", 1) in ran(new)


def test_a_cursor_taken_over_with_another_schedule_applies_it_from_now(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    old = scheduler(engine, write_project(tmp_path / "old", {"d": _hourly(CHAIN)}), clock)
    new = scheduler(
        engine, write_project(tmp_path / "new", {"d": _hourly(CHAIN, "30 * * * *")}), clock
    )
    old.run_pass()
    # 12:30 is the new copy's time, but the cursor is the old one's until 13:00:30.
    both(clock, 60, old, new)
    assert rows(engine, "SELECT extract(hour FROM scheduled_for) FROM dag_run") == [(13,)]
    both(clock, 35, old, new)  # 13:35:30: 13:30 passed while the cursor was the old copy's
    old.mark_stopped()
    both(clock, 5, new)  # 13:40:30: taken over, reset to the next time of the new schedule
    assert rows(engine, "SELECT count(*) FROM dag_run") == [(1,)]  # 13:30 is not replayed
    assert rows(engine, "SELECT to_char(next_fire_at, 'HH24:MI') FROM dag_schedule") == [("14:30",)]
    both(clock, 50, new)  # 14:30:30
    assert rows(
        engine, "SELECT to_char(scheduled_for, 'HH24:MI') FROM dag_run ORDER BY scheduled_for"
    ) == [("13:00",), ("14:30",)]


def test_a_cursor_of_a_dag_only_the_new_copy_has_is_kept_while_the_new_scheduler_is_live(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    old = scheduler(engine, write_project(tmp_path / "old", {"shared": CHAIN}), clock)
    new = scheduler(
        engine,
        write_project(tmp_path / "new", {"shared": CHAIN, "added": _hourly(CHAIN)}),
        clock,
    )
    new.run_pass()
    both(clock, 60, old, new)
    assert rows(engine, "SELECT dag_name FROM dag_schedule") == [("added",)]
    assert rows(engine, "SELECT dag_name, extract(hour FROM scheduled_for) FROM dag_run") == [
        ("added", 13)
    ]
    new.mark_stopped()
    old.run_pass()
    assert rows(engine, "SELECT dag_name FROM dag_schedule") == []


# --- a schedule edit and a rename, rolled out to three schedulers ----------------------------


def test_a_schedule_edit_and_a_rename_rolled_out_to_three_schedulers_never_replay_or_duplicate(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    """Three schedulers, each with its own copy of the folder, pick the edit (then the
    rename) up at different times, as a rolling deploy does. In process with a fake
    clock: cron times are minutes apart, which real processes would have to wait for."""
    roots = [tmp_path / name for name in ("a", "b", "c")]
    tickers = [
        scheduler(engine, write_project(root, {"d": _hourly(CHAIN)}), clock) for root in roots
    ]
    turn = 0

    def every_five_minutes(minutes: int) -> None:
        nonlocal turn
        for _ in range(minutes // 5):
            turn += 1
            both(clock, 5, *(tickers[turn % 3 :] + tickers[: turn % 3]))

    def roll_out(i: int, change: Callable[[Path], None]) -> None:
        change(roots[i])
        tickers[i].reload_dags()

    def edit(root: Path) -> None:
        (root / "d" / "workflow.yaml").write_text("description: x\nschedule: '30 * * * *'\n")

    def rename(root: Path) -> None:
        (root / "d").rename(root / "e")

    every_five_minutes(60)  # 13:00:30
    for i in range(3):  # 13:05:30, 13:15:30, 13:25:30: the edit reaches one after the other
        every_five_minutes(5 if i == 0 else 10)
        roll_out(i, edit)
    every_five_minutes(10)  # 13:35:30: 13:30 passed while a scheduler still had the old copy
    every_five_minutes(60)  # 14:35:30
    for i in range(3):  # 14:35:30, 14:45:30, 14:55:30: the rename
        roll_out(i, rename)
        every_five_minutes(10)
    every_five_minutes(40)  # 15:35:30
    assert rows(
        engine,
        "SELECT dag_name, to_char(scheduled_for, 'HH24:MI'), count(*) FROM dag_run "
        "GROUP BY 1, 2 ORDER BY 2",
    ) == [
        ("d", "13:00", 1),  # the old schedule
        ("d", "14:30", 1),  # the edit, from the time every scheduler had it on
        ("e", "15:30", 1),  # the renamed DAG: a new DAG, from its next time on
    ]
    assert rows(engine, "SELECT dag_name, to_char(next_fire_at, 'HH24:MI') FROM dag_schedule") == [
        ("e", "16:30")
    ]
    assert rows(engine, "SELECT count(*) FROM dag_run WHERE status <> 'succeeded'") == [(0,)]


def test_the_copies_a_claim_matches_survive_any_dag_name(engine: Engine) -> None:
    names = ["plain", 'with "quotes"', "back\\slash", "a,b", "{braces}", "NULL", "é ü", ""]
    with engine.connect() as conn:
        got = conn.execute(
            text("SELECT CAST(:a AS text[])"), {"a": queries.text_array(names)}
        ).scalar_one()
    assert got == names


def test_the_other_schedulers_copies_are_read_only_by_a_pass_that_meets_another_copy(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    old = scheduler(engine, write_project(tmp_path / "old", {"d": _hourly(CHAIN)}), clock)
    new = scheduler(engine, write_project(tmp_path / "new", {"d": _hourly(WIDER)}), clock)
    same = scheduler(engine, write_project(tmp_path / "same", {"d": _hourly(CHAIN)}), clock)
    reads: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        if "FROM scheduler_heartbeat" in statement:
            reads.append(statement)

    old.run_pass()
    event.listen(engine, "before_cursor_execute", count)
    try:
        for _ in range(3):
            until_idle(old)
            until_idle(same)
        assert reads == []  # schedulers that agree never read the others' copies
        new.run_pass()  # the cursor is the old copy's: one read, in that pass only
        assert len(reads) == 1
    finally:
        event.remove(engine, "before_cursor_execute", count)
