"""The pure decisions of a pass, on plain values: schedules, fires, and the next step of a run."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from workflows_tick.cron import DstPolicy
from workflows_tick.model import Dag, DstGap, DstRepeat, ExternalInput, Overlap, Task, TaskType
from workflows_tick.plan import (
    Cursor,
    InputWait,
    InputWindow,
    LiveCopies,
    NewTaskRun,
    Owner,
    TaskRunState,
    WaitPlan,
    WaitUpdate,
    input_window,
    input_windows,
    plan_fires,
    plan_run,
    plan_schedules,
    run_owner,
    settle_waits,
)
from workflows_tick.states import RunStatus, TaskStatus

NOW = datetime(2024, 1, 1, 12, 0, 30, tzinfo=UTC)
HOURLY = "0 * * * *"


def task(name: str, *inputs: str, retries: int | None = None, delay: float | None = None) -> Task:
    return Task(name, TaskType.NO_OP, Path(name), inputs=inputs, retries=retries, retry_delay=delay)


def dag(
    *tasks: Task,
    name: str = "d",
    schedule: str | None = None,
    timezone: str = "UTC",
    retries: int = 2,
    retry_delay: float = 0.0,
    input_timeout: float | None = None,
) -> Dag:
    return Dag(
        name=name,
        path=Path(name),
        description="",
        tasks={t.name: t for t in tasks},
        schedule=schedule,
        timezone=timezone,
        retries=retries,
        retry_delay=retry_delay,
        input_timeout=input_timeout,
    )


def state(name: str, attempt: int, status: TaskStatus) -> TaskRunState:
    return TaskRunState(name, attempt, status)


OK, FAILED, RUNNING, WAITING = (
    TaskStatus.SUCCEEDED,
    TaskStatus.FAILED,
    TaskStatus.RUNNING,
    TaskStatus.WAITING,
)

# A diamond: a -> (b, c) -> d
DIAMOND = dag(task("a"), task("b", "a"), task("c", "a"), task("d", "b", "c"))


# --- plan_run: ready tasks -----------------------------------------------------------


def test_a_new_run_starts_the_tasks_without_inputs() -> None:
    plan = plan_run(dag(task("a"), task("x"), task("b", "a")), [], NOW)
    assert plan.create == [NewTaskRun("a", 1, NOW), NewTaskRun("x", 1, NOW)]
    assert plan.finish is None


def test_a_task_waits_for_every_input_to_succeed() -> None:
    plan = plan_run(DIAMOND, [state("a", 1, OK), state("b", 1, OK), state("c", 1, RUNNING)], NOW)
    assert plan.create == [] and plan.finish is None
    plan = plan_run(DIAMOND, [state("a", 1, OK), state("b", 1, OK), state("c", 1, OK)], NOW)
    assert plan.create == [NewTaskRun("d", 1, NOW)]


def test_both_branches_start_once_their_input_succeeded() -> None:
    plan = plan_run(DIAMOND, [state("a", 1, OK)], NOW)
    assert plan.create == [NewTaskRun("b", 1, NOW), NewTaskRun("c", 1, NOW)]


def test_a_task_already_created_is_not_created_again() -> None:
    plan = plan_run(DIAMOND, [state("a", 1, WAITING)], NOW)
    assert plan.create == [] and plan.finish is None


# --- plan_run: retries ---------------------------------------------------------------


def test_a_failed_attempt_is_retried_until_the_dag_retries_are_spent() -> None:
    d = dag(task("a"), retries=2)
    assert plan_run(d, [state("a", 1, FAILED)], NOW).create == [NewTaskRun("a", 2, NOW)]
    assert plan_run(d, [state("a", 1, FAILED), state("a", 2, FAILED)], NOW).create == [
        NewTaskRun("a", 3, NOW)
    ]
    attempts = [state("a", n, FAILED) for n in (1, 2, 3)]
    plan = plan_run(d, attempts, NOW)
    assert plan.create == []
    assert plan.finish is RunStatus.FAILED
    assert plan.message == "failed: a (after 3 attempts)"


def test_a_task_retries_overrides_the_dag_retries() -> None:
    d = dag(task("a", retries=0), retries=5)
    plan = plan_run(d, [state("a", 1, FAILED)], NOW)
    assert plan.create == []
    assert plan.message == "failed: a (after 1 attempt)"


def test_retry_delay_sets_when_the_retry_may_start() -> None:
    d = dag(task("a"), task("b", delay=0.5), retry_delay=90)
    plan = plan_run(d, [state("a", 1, FAILED), state("b", 1, FAILED)], NOW)
    assert plan.create == [
        NewTaskRun("a", 2, NOW + timedelta(seconds=90)),
        NewTaskRun("b", 2, NOW + timedelta(seconds=0.5)),
    ]


def test_only_the_latest_attempt_counts() -> None:
    plan = plan_run(dag(task("a"), task("b", "a")), [state("a", 2, OK), state("a", 1, FAILED)], NOW)
    assert plan.create == [NewTaskRun("b", 1, NOW)]


# --- plan_run: completion ------------------------------------------------------------


def test_a_run_succeeds_when_every_task_succeeded() -> None:
    plan = plan_run(DIAMOND, [state(n, 1, OK) for n in "abcd"], NOW)
    assert plan.finish is RunStatus.SUCCEEDED and plan.message is None and plan.create == []


def test_an_empty_dag_succeeds_at_once() -> None:
    assert plan_run(dag(), [], NOW).finish is RunStatus.SUCCEEDED


def test_independent_branches_finish_before_the_run_fails() -> None:
    d = dag(task("bad", retries=0), task("after_bad", "bad"), task("good"), task("after", "good"))
    plan = plan_run(d, [state("bad", 1, FAILED), state("good", 1, OK)], NOW)
    assert plan.create == [NewTaskRun("after", 1, NOW)]
    assert plan.finish is None
    plan = plan_run(d, [state("bad", 1, FAILED), state("good", 1, OK), state("after", 1, OK)], NOW)
    assert plan.finish is RunStatus.FAILED
    assert plan.message == "failed: bad (after 1 attempt); not run: after_bad"


def test_a_run_waits_while_a_task_is_running() -> None:
    plan = plan_run(dag(task("a"), task("b")), [state("a", 1, FAILED), state("b", 1, RUNNING)], NOW)
    assert plan.finish is None


# --- plan_schedules ------------------------------------------------------------------


def cursor(
    name: str, fire: datetime, schedule: str = HOURLY, tz: str = "UTC", fp: str | None = None
) -> Cursor:
    return Cursor(name, schedule, tz, fire, fingerprint=fp)


def mine(name: str, fire: datetime, schedule: str = HOURLY, tz: str = "UTC") -> Cursor:
    """A cursor set by the copy ``dag(schedule=schedule, timezone=tz)`` (any name)."""
    return cursor(name, fire, schedule, tz, dag(schedule=schedule, timezone=tz).fingerprint)


def at(hour: int, minute: int = 0, day: int = 1) -> datetime:
    return datetime(2024, 1, day, hour, minute, tzinfo=UTC)


def test_a_new_dag_gets_a_cursor_at_its_next_fire_time_not_a_past_one() -> None:
    plan = plan_schedules({"d": dag(schedule=HOURLY)}, {}, NOW)
    assert plan.reset == [mine("d", at(13))]
    assert plan.due == [] and plan.drop == [] and plan.expected == {}
    assert plan.cursors == {"d": mine("d", at(13))}


def test_a_cursor_whose_time_has_come_is_due() -> None:
    d = {"d": dag(schedule=HOURLY)}
    assert plan_schedules(d, {"d": mine("d", at(12))}, NOW).due == ["d"]
    assert plan_schedules(d, {"d": mine("d", NOW)}, NOW).due == ["d"]
    plan = plan_schedules(d, {"d": mine("d", at(13))}, NOW)
    assert plan.due == [] and plan.reset == []
    assert plan.cursors == {"d": mine("d", at(13))}


def test_a_cursor_set_by_no_particular_copy_is_stamped_where_it_stands() -> None:
    plan = plan_schedules({"d": dag(schedule=HOURLY)}, {"d": cursor("d", at(12))}, NOW)
    assert plan.reset == [mine("d", at(12))]
    assert plan.expected == {"d": None}
    assert plan.due == ["d"] and not plan.needs_live


def test_an_edited_schedule_applies_from_now_on() -> None:
    cursors = {"d": mine("d", at(11))}  # due under the old schedule
    edited = dag(schedule="30 * * * *")
    plan = plan_schedules({"d": edited}, cursors, NOW, live=LiveCopies())
    assert plan.reset == [mine("d", at(12, 30), "30 * * * *")]
    assert plan.expected == {"d": cursors["d"].fingerprint}
    assert plan.due == []


def test_an_edited_time_zone_resets_the_cursor() -> None:
    cursors = {"d": mine("d", at(13), "0 3 * * *")}
    tokyo = dag(schedule="0 3 * * *", timezone="Asia/Tokyo")
    plan = plan_schedules({"d": tokyo}, cursors, NOW, live=LiveCopies())
    # 03:00 in Tokyo (UTC+9) is 18:00 UTC the day before.
    assert plan.reset == [mine("d", at(18), "0 3 * * *", "Asia/Tokyo")]


def test_a_dag_without_a_schedule_or_gone_drops_its_cursor_a_broken_one_keeps_it() -> None:
    cursors = {n: mine(n, at(13)) for n in ("unscheduled", "gone", "broken", "kept")}
    dags = {"unscheduled": dag(name="unscheduled"), "kept": dag(name="kept", schedule=HOURLY)}
    plan = plan_schedules(dags, cursors, NOW, broken={"broken"}, live=LiveCopies())
    assert sorted(plan.drop) == ["gone", "unscheduled"]
    assert plan.cursors == {"kept": mine("kept", at(13))}


def test_a_removed_then_re_added_dag_waits_for_its_next_time() -> None:
    d = {"d": dag(schedule=HOURLY)}
    removed = plan_schedules({}, {"d": mine("d", at(13))}, NOW, live=LiveCopies())
    assert removed.drop == ["d"]
    later = NOW + timedelta(days=3)  # back three days later: no cursor, so like a new DAG
    plan = plan_schedules(d, {}, later)
    assert plan.due == [] and plan.reset == [mine("d", at(13, day=4))]


def test_one_dag_whose_schedule_cannot_be_computed_does_not_stop_the_others() -> None:
    dags = {"bad": dag(name="bad", schedule="not cron"), "good": dag(name="good", schedule=HOURLY)}
    plan = plan_schedules(dags, {}, NOW)
    assert list(plan.problems) == ["bad"]
    assert plan.reset == [mine("good", at(13))]
    assert "bad" not in plan.cursors


# --- plan_schedules: other copies of a DAG (rolling deploys) ---------------------------

OLD = dag(task("a"), schedule=HOURLY)
NEW = dag(task("a"), task("b", "a"), schedule=HOURLY)  # a task added: another copy


def test_copies_differ_when_what_the_scheduler_decides_with_differs() -> None:
    assert OLD.fingerprint != NEW.fingerprint
    assert dag(task("a"), schedule=HOURLY).fingerprint == OLD.fingerprint
    assert len(OLD.fingerprint) == 16


def test_a_cursor_of_another_copy_needs_the_live_schedulers_and_decides_nothing_without() -> None:
    cursors = {"d": cursor("d", at(12), fp=OLD.fingerprint)}
    plan = plan_schedules({"d": NEW}, cursors, NOW)
    assert plan.needs_live
    assert plan.reset == [] and plan.due == [] and plan.drop == [] and plan.cursors == {}


def test_a_cursor_of_another_copy_is_left_while_a_live_scheduler_has_that_copy() -> None:
    cursors = {"d": cursor("d", at(12), fp=OLD.fingerprint)}
    live = LiveCopies({"d": frozenset({OLD.fingerprint})})
    plan = plan_schedules({"d": NEW}, cursors, NOW, live=live)
    assert plan.left == ["d"] and not plan.needs_live
    assert plan.reset == [] and plan.due == [] and plan.drop == []
    assert plan.cursors == {}  # not ours to fire: the loop does not wake up for it


def test_a_cursor_of_a_copy_no_live_scheduler_has_is_taken_over_where_it_stands() -> None:
    cursors = {"d": cursor("d", at(12), fp=OLD.fingerprint)}
    live = LiveCopies({"d": frozenset({"0123456789abcdef"})})  # some third copy
    plan = plan_schedules({"d": NEW}, cursors, NOW, live=live)
    assert plan.reset == [cursor("d", at(12), fp=NEW.fingerprint)]  # the fire time kept
    assert plan.expected == {"d": OLD.fingerprint}
    assert plan.due == ["d"]  # and fired by this copy, once


def test_a_cursor_taken_over_with_another_schedule_is_reset_from_now() -> None:
    cursors = {"d": cursor("d", at(11), fp=OLD.fingerprint)}
    edited = dag(task("a"), schedule="30 * * * *")
    plan = plan_schedules({"d": edited}, cursors, NOW, live=LiveCopies())
    assert plan.reset == [cursor("d", at(12, 30), "30 * * * *", fp=edited.fingerprint)]
    assert plan.due == []  # 11:00 is never replayed


def test_a_cursor_of_a_dag_not_loaded_here_is_dropped_only_when_no_live_scheduler_knows_it() -> (
    None
):
    cursors = {"new": cursor("new", at(13), fp=NEW.fingerprint)}
    assert plan_schedules({}, cursors, NOW).needs_live
    known = LiveCopies({"new": frozenset({NEW.fingerprint})})
    kept = plan_schedules({}, cursors, NOW, live=known)
    assert kept.drop == [] and kept.left == ["new"]
    gone = plan_schedules({}, cursors, NOW, live=LiveCopies({"other": frozenset()}))
    assert gone.drop == ["new"] and gone.expected == {"new": NEW.fingerprint}


def test_a_dag_unscheduled_here_leaves_the_cursor_of_a_live_scheduled_copy() -> None:
    unscheduled = dag(task("a"))
    cursors = {"d": cursor("d", at(13), fp=OLD.fingerprint)}
    live = LiveCopies({"d": frozenset({OLD.fingerprint})})
    assert plan_schedules({"d": unscheduled}, cursors, NOW, live=live).drop == []
    assert plan_schedules({"d": unscheduled}, cursors, NOW, live=LiveCopies()).drop == ["d"]


# --- run_owner ---------------------------------------------------------------------------


def test_a_run_of_this_copy_or_of_no_particular_copy_is_ours() -> None:
    assert run_owner(NEW, NEW.fingerprint) is Owner.OURS
    assert run_owner(NEW, None) is Owner.OURS


def test_a_run_of_another_copy_is_left_to_a_live_scheduler_that_has_it_else_adopted() -> None:
    assert run_owner(NEW, OLD.fingerprint) is Owner.ASK
    live = LiveCopies({"d": frozenset({OLD.fingerprint})})
    assert run_owner(NEW, OLD.fingerprint, live) is Owner.OTHERS
    assert run_owner(NEW, OLD.fingerprint, LiveCopies({"d": frozenset()})) is Owner.ADOPT
    assert run_owner(NEW, OLD.fingerprint, LiveCopies()) is Owner.ADOPT


# --- plan_fires -----------------------------------------------------------------------


def test_a_due_cursor_makes_one_run_and_moves_on() -> None:
    plan = plan_fires([cursor("d", at(12))], NOW)
    assert plan.runs == [("d", at(12))]
    assert plan.advanced == [cursor("d", at(13))]


def test_missed_fire_times_make_one_run_for_the_most_recent() -> None:
    late = at(17, 0) + timedelta(seconds=45)
    plan = plan_fires([cursor("d", at(12, 1), "* * * * *")], late)
    assert plan.runs == [("d", at(17))]
    assert plan.advanced == [cursor("d", at(17, 1), "* * * * *")]


def test_a_fire_is_never_before_the_cursor() -> None:
    # A cursor ahead of the latest fire time (e.g. reset at 12:30 for an hourly
    # schedule) fires at its own time, never at 12:00 again.
    plan = plan_fires([cursor("d", at(13))], at(13, 0))
    assert plan.runs == [("d", at(13))]


def test_fires_across_the_fall_back_fold_run_each_hour_once() -> None:
    ny = "America/New_York"
    first = datetime(2024, 11, 3, 5, 30, tzinfo=UTC)  # 01:30 EDT
    second = datetime(2024, 11, 3, 6, 30, tzinfo=UTC)  # 01:30 EST
    plan = plan_fires([cursor("d", first, "30 * * * *", ny)], first + timedelta(minutes=1))
    assert plan.runs == [("d", first)]
    assert plan.advanced == [cursor("d", second, "30 * * * *", ny)]
    # A pass a minute late in the repeated hour runs it, and the cursor moves ahead of now.
    late = second + timedelta(minutes=1)
    plan = plan_fires(plan.advanced, late)
    assert plan.runs == [("d", second)]
    assert plan.advanced[0].next_fire_at > late


def test_a_cursor_with_a_broken_schedule_is_reported_and_left() -> None:
    plan = plan_fires([cursor("bad", at(12), "nonsense"), cursor("d", at(12))], NOW)
    assert list(plan.problems) == ["bad"]
    assert plan.runs == [("d", at(12))]


def test_a_paused_dag_s_cursor_moves_on_without_a_run() -> None:
    paused = Cursor("d", HOURLY, "UTC", at(12), paused=True)
    plan = plan_fires([paused], NOW)
    assert plan.runs == []
    assert plan.skipped == [("d", at(12))]
    assert plan.advanced == [cursor("d", at(13))]


# --- inputs on other DAGs ------------------------------------------------------------------


def reader(
    input_timeout: float | None = None, dag_timeout: float | None = None, retries: int = 2
) -> Dag:
    """DAG ``down``: ``x`` reads ``up:t`` and ``side:s``; ``y`` reads ``x``."""
    x = Task(
        "x",
        TaskType.NO_OP,
        Path("x"),
        external_inputs=(ExternalInput("up", "t"), ExternalInput("side", "s")),
        input_timeout=input_timeout,
    )
    return dag(x, task("y", "x"), name="down", retries=retries, input_timeout=dag_timeout)


UP = dag(task("t"), name="up", schedule=HOURLY)
SIDE = dag(task("s"), name="side")  # no schedule
DAILY_PARIS = dag(task("t"), name="up", schedule="30 6 * * *", timezone="Europe/Paris")


def wait(
    anchor: datetime, created: datetime = NOW, waiting_for: tuple[str, ...] = ("up:t", "side:s")
) -> InputWait:
    return InputWait(7, "down", "x", anchor, created, waiting_for)


def test_a_task_with_inputs_on_other_dags_is_created_waiting_for_them() -> None:
    plan = plan_run(reader(), [], NOW)
    assert plan.create == [NewTaskRun("x", 1, NOW, ("up:t", "side:s"))]
    retry = plan_run(reader(), [state("x", 1, FAILED)], NOW)
    assert retry.create == [NewTaskRun("x", 2, NOW, ("up:t", "side:s"))]


def test_a_task_that_failed_waiting_for_inputs_is_not_retried() -> None:
    timed_out = TaskRunState("x", 1, FAILED, waited=True)
    plan = plan_run(reader(retries=5), [timed_out], NOW)
    assert plan.create == []
    assert plan.finish is RunStatus.FAILED
    assert plan.message == "failed: x (inputs on other DAGs not ready); not run: y"


def test_the_window_runs_from_the_upstream_latest_fire_time_to_the_anchor() -> None:
    anchor = datetime(2024, 1, 1, 13, 40, tzinfo=UTC)
    assert input_window(UP, "t", anchor) == InputWindow("up", "t", at(13), anchor)
    on_time = datetime(2024, 1, 1, 13, 0, tzinfo=UTC)  # a fire time is its own latest
    assert input_window(UP, "t", on_time) == InputWindow("up", "t", on_time, on_time)


def test_the_window_follows_the_upstream_time_zone() -> None:
    # 06:30 in Paris is 05:30 UTC in winter: at 05:00 UTC the latest is yesterday's.
    early = datetime(2024, 1, 2, 5, 0, tzinfo=UTC)
    assert input_window(DAILY_PARIS, "t", early).earliest == datetime(2024, 1, 1, 5, 30, tzinfo=UTC)
    late = datetime(2024, 1, 2, 6, 0, tzinfo=UTC)
    assert input_window(DAILY_PARIS, "t", late).earliest == datetime(2024, 1, 2, 5, 30, tzinfo=UTC)


def test_an_upstream_dag_without_schedule_has_no_earliest_bound() -> None:
    assert input_window(SIDE, "s", NOW) == InputWindow("side", "s", None, NOW)


def test_waits_naming_a_dag_not_loaded_here_are_left_alone() -> None:
    dags = {"down": reader(), "up": UP}  # side is not loaded
    assert input_windows([wait(NOW)], dags) == {}
    everything = {**dags, "side": SIDE}
    assert input_windows([wait(NOW)], everything) == {
        7: {
            "up:t": InputWindow("up", "t", at(12), NOW),
            "side:s": InputWindow("side", "s", None, NOW),
        }
    }


def dags_for(down: Dag) -> dict[str, Dag]:
    return {"down": down, "up": UP, "side": SIDE}


def settle(down: Dag, satisfied: set[InputWindow], now: datetime = NOW) -> WaitPlan:
    """What becomes of ``down``'s wait on up:t and side:s (created at NOW) at ``now``."""
    waits = [wait(NOW)]
    dags = dags_for(down)
    return settle_waits(waits, input_windows(waits, dags), satisfied, dags, now)


def test_a_wait_shrinks_as_inputs_come_and_ends_when_all_came() -> None:
    up_ok = InputWindow("up", "t", at(12), NOW)
    side_ok = InputWindow("side", "s", None, NOW)
    assert settle(reader(), set()).updates == []
    assert settle(reader(), {up_ok}).updates == [WaitUpdate(7, ("side:s",))]
    assert settle(reader(), {up_ok, side_ok}).updates == [WaitUpdate(7, ())]


def test_a_wait_outliving_its_input_timeout_fails_naming_where_it_looked() -> None:
    up_ok = InputWindow("up", "t", at(12), NOW)
    late = NOW + timedelta(seconds=3600)
    assert settle(reader(input_timeout=3600), {up_ok}, late).updates == [
        WaitUpdate(
            7,
            ("side:s",),
            "input side:s not ready after 3600 s: no run of side at or before "
            "2024-01-01 12:00:30 UTC has it succeeded",
        )
    ]
    (both,) = settle(reader(input_timeout=3600), set(), late).updates
    assert both.error == (
        "inputs up:t, side:s not ready after 3600 s: no run of up from 2024-01-01 12:00:00 UTC "
        "to 2024-01-01 12:00:30 UTC has t succeeded; no run of side at or before "
        "2024-01-01 12:00:30 UTC has s succeeded"
    )


def test_the_next_deadline_is_the_earliest_input_timeout_still_ahead() -> None:
    plan = settle(reader(input_timeout=60), set(), NOW + timedelta(seconds=59))
    assert plan.updates == [] and plan.next_deadline == NOW + timedelta(seconds=60)
    assert settle(reader(), set()).next_deadline is None  # no timeout: waits as long as it takes


def test_the_task_input_timeout_overrides_the_dag_one() -> None:
    soon = NOW + timedelta(seconds=60)
    assert settle(reader(dag_timeout=60), set(), soon).updates[0].error is not None
    assert settle(reader(input_timeout=120, dag_timeout=60), set(), soon).updates == []
    # Inputs that came in time end the wait even past the timeout.
    everything = {InputWindow("up", "t", at(12), NOW), InputWindow("side", "s", None, NOW)}
    assert settle(reader(dag_timeout=60), everything, soon).updates == [WaitUpdate(7, ())]


def test_an_input_the_edited_dag_no_longer_lists_is_no_longer_waited_for() -> None:
    edited = dag(
        Task("x", TaskType.NO_OP, Path("x"), external_inputs=(ExternalInput("up", "t"),)),
        name="down",
    )
    waits = [wait(NOW)]  # created when x also read side:s
    dags = {"down": edited, "up": UP}  # side is not even loaded now
    windows = input_windows(waits, dags)
    assert windows == {7: {"up:t": InputWindow("up", "t", at(12), NOW)}}
    assert settle_waits(waits, windows, set(), dags, NOW).updates == [WaitUpdate(7, ("up:t",))]


# --- DST policies ---------------------------------------------------------------------

NY = "America/New_York"
SKIP_GAP = DstPolicy(gap=DstGap.SKIP)
BOTH_REPEATS = DstPolicy(repeat=DstRepeat.BOTH)


def test_a_changed_dst_policy_resets_the_cursor_from_now_and_replays_nothing() -> None:
    d = {"d": replace(dag(schedule=HOURLY), dst_gap=DstGap.SKIP)}
    due_under_the_old_policy = {"d": cursor("d", at(11))}
    plan = plan_schedules(d, due_under_the_old_policy, NOW)
    assert plan.due == []
    fp = d["d"].fingerprint
    assert plan.reset == [Cursor("d", HOURLY, "UTC", at(13), dst=SKIP_GAP, fingerprint=fp)]
    assert plan.cursors["d"].dst == SKIP_GAP
    # Back to the default (another copy: no live scheduler has the one above): reset again.
    plan = plan_schedules({"d": dag(schedule=HOURLY)}, {"d": plan.reset[0]}, NOW, live=LiveCopies())
    assert plan.reset == [mine("d", at(13))]


def test_a_cursor_computed_with_the_dag_s_policy_is_kept() -> None:
    d = {"d": replace(dag(schedule=HOURLY), dst_gap=DstGap.SKIP)}
    kept = Cursor("d", HOURLY, "UTC", at(12), dst=SKIP_GAP, fingerprint=d["d"].fingerprint)
    plan = plan_schedules(d, {"d": kept}, NOW)
    assert plan.reset == [] and plan.due == ["d"]


def test_a_new_cursor_follows_the_dag_s_policy() -> None:
    # On 2024-03-10 02:30 does not exist in New York: with dst_gap skip, the next fire
    # after 03-09 08:00 UTC is 03-11 02:30 EDT, not 03-10 03:00 EDT.
    d = {"d": replace(dag(schedule="30 2 * * *", timezone=NY), dst_gap=DstGap.SKIP)}
    now = datetime(2024, 3, 9, 8, tzinfo=UTC)
    plan = plan_schedules(d, {}, now)
    fire = datetime(2024, 3, 11, 6, 30, tzinfo=UTC)
    assert plan.reset == [
        Cursor("d", "30 2 * * *", NY, fire, dst=SKIP_GAP, fingerprint=d["d"].fingerprint)
    ]


def test_fires_follow_the_cursor_s_policy_across_the_fall_back_day() -> None:
    # dst_repeat both: a daily 01:30 fires at 01:30 EDT and again at 01:30 EST.
    first = datetime(2024, 11, 3, 5, 30, tzinfo=UTC)
    second = datetime(2024, 11, 3, 6, 30, tzinfo=UTC)
    due = Cursor("d", "30 1 * * *", NY, first, dst=BOTH_REPEATS)
    plan = plan_fires([due], first)
    assert plan.runs == [("d", first)]
    assert plan.advanced == [replace(due, next_fire_at=second)]
    plan = plan_fires(plan.advanced, second + timedelta(minutes=5))
    assert plan.runs == [("d", second)]
    assert plan.advanced == [replace(due, next_fire_at=datetime(2024, 11, 4, 6, 30, tzinfo=UTC))]


def test_fires_skip_a_time_the_spring_forward_gap_removes_under_skip() -> None:
    before = datetime(2024, 3, 9, 7, 30, tzinfo=UTC)  # 03-09 02:30 EST
    due = Cursor("d", "30 2 * * *", NY, before, dst=SKIP_GAP)
    plan = plan_fires([due], before)
    assert plan.advanced == [replace(due, next_fire_at=datetime(2024, 3, 11, 6, 30, tzinfo=UTC))]
    # A pass long after the gap (the scheduler was down) does not fire 03:00 either:
    # the latest fire is 03-09's, already run, so the cursor's own time runs.
    plan = plan_fires(plan.advanced, datetime(2024, 3, 11, 6, 31, tzinfo=UTC))
    assert plan.runs == [("d", datetime(2024, 3, 11, 6, 30, tzinfo=UTC))]


# --- plan_fires: overlap ----------------------------------------------------------------


def busy(name: str, fire: datetime, *running: int, paused: bool = False) -> Cursor:
    """A due cursor of a DAG whose runs ``running`` have not ended."""
    return Cursor(name, HOURLY, "UTC", fire, paused=paused, running=running)


def test_queue_creates_the_run_while_earlier_runs_have_not_ended() -> None:
    for policy in ({}, {"d": Overlap.QUEUE}):
        plan = plan_fires([busy("d", at(12), 7)], NOW, policy)
        assert plan.runs == [("d", at(12))]
        assert plan.overlapped == [] and plan.replace == {}
        assert plan.advanced == [cursor("d", at(13))]


def test_skip_records_the_fire_as_skipped_while_a_run_has_not_ended() -> None:
    plan = plan_fires([busy("d", at(12), 7, 9)], NOW, {"d": Overlap.SKIP})
    assert plan.runs == []
    assert plan.overlapped == [("d", at(12), "skipped: run 7 had not ended (overlap: skip)")]
    assert plan.advanced == [cursor("d", at(13))]  # the skipped time is passed for good


def test_skip_and_replace_create_the_run_when_nothing_is_running() -> None:
    for policy in (Overlap.SKIP, Overlap.REPLACE):
        plan = plan_fires([busy("d", at(12))], NOW, {"d": policy})
        assert plan.runs == [("d", at(12))]
        assert plan.overlapped == [] and plan.replace == {}


def test_replace_creates_the_run_and_cancels_every_run_not_ended() -> None:
    plan = plan_fires([busy("d", at(12), 7, 9)], NOW, {"d": Overlap.REPLACE})
    assert plan.runs == [("d", at(12))]
    assert plan.replace == {"d": (7, 9)}
    assert plan.overlapped == []


def test_a_paused_dag_neither_skips_nor_replaces() -> None:
    for policy in (Overlap.SKIP, Overlap.REPLACE):
        plan = plan_fires([busy("d", at(12), 7, paused=True)], NOW, {"d": policy})
        assert plan.skipped == [("d", at(12))]
        assert plan.runs == [] and plan.overlapped == [] and plan.replace == {}


def test_each_dag_follows_its_own_overlap_policy() -> None:
    due = [busy("q", at(12), 1), busy("r", at(12), 2), busy("s", at(12), 3)]
    plan = plan_fires(due, NOW, {"r": Overlap.REPLACE, "s": Overlap.SKIP})
    assert plan.runs == [("q", at(12)), ("r", at(12))]
    assert plan.replace == {"r": (2,)}
    assert [(name, fire) for name, fire, _ in plan.overlapped] == [("s", at(12))]


def test_the_window_follows_the_upstream_dst_policy() -> None:
    # 02:30 does not exist in New York on 2024-03-10: by default it fires at 03:00 EDT;
    # under dst_gap skip the latest fire at noon UTC is the day before's.
    upstream = dag(task("t"), name="up", schedule="30 2 * * *", timezone=NY)
    anchor = datetime(2024, 3, 10, 12, tzinfo=UTC)
    assert input_window(upstream, "t", anchor).earliest == datetime(2024, 3, 10, 7, tzinfo=UTC)
    skipping = replace(upstream, dst_gap=DstGap.SKIP)
    assert input_window(skipping, "t", anchor).earliest == datetime(2024, 3, 9, 7, 30, tzinfo=UTC)
