"""What should happen next: pure decisions, no I/O.

- :func:`plan_schedules`: given the DAGs and their schedule cursors, which cursors
  to create, reset or drop, and which DAGs are due;
- :func:`plan_fires`: given the due cursors (locked), which scheduled runs to
  create, which fires to record as skipped and which runs they replace (the
  DAG's ``overlap`` policy), and where each cursor moves next;
- :func:`plan_run`: given a DAG and the task runs its run has so far, which task
  runs to create (first attempts whose inputs all succeeded, and retries) and
  whether the run is over;
- :func:`run_owner`: whether this scheduler's copy of a DAG advances a run, leaves
  it to another scheduler, or adopts it (rolling deploys, see docs/scheduler.md).
- :func:`input_windows` and :func:`settle_waits`: which runs of other DAGs may
  satisfy the cross-DAG inputs of waiting task runs, and, once the database has
  said which windows hold a success, which waits end, shrink or time out.

The tick (:mod:`workflows_tick.tick`) reads what these need from the database and
writes what they decide.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from workflows_tick import cron
from workflows_tick.model import Dag, Overlap, Task
from workflows_tick.states import RunStatus, TaskStatus

# --- schedules ---------------------------------------------------------------------


@dataclass(frozen=True)
class Cursor:
    """Where a DAG's schedule stands: the next fire time not yet run."""

    dag_name: str
    schedule: str
    timezone: str
    next_fire_at: datetime
    paused: bool = False
    """The DAG is paused: its fire times pass without runs."""
    running: tuple[int, ...] = ()
    """The ids of the DAG's runs that have not ended, oldest first (read after the
    cursor is locked; only due cursors carry them)."""
    dst: cron.DstPolicy = cron.DEFAULT_DST
    """The DST policy ``next_fire_at`` was computed with (the DAG's when it was set)."""
    fingerprint: str | None = None
    """The fingerprint of the DAG copy that set the cursor (None: any copy may fire it)."""


@dataclass(frozen=True)
class LiveCopies:
    """The DAG copies the other live schedulers have loaded (see docs/scheduler.md,
    "Rolling deploys"): for each DAG name one of them knows, the fingerprints of
    their copies (empty for a scheduler that records names only)."""

    fingerprints: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def knows(self, dag_name: str) -> bool:
        """Whether a live scheduler other than this one has loaded ``dag_name``."""
        return dag_name in self.fingerprints

    def has(self, dag_name: str, fingerprint: str | None) -> bool:
        """Whether a live scheduler other than this one has that copy of ``dag_name``."""
        return fingerprint is not None and fingerprint in self.fingerprints.get(dag_name, ())


@dataclass(frozen=True)
class SchedulePlan:
    reset: list[Cursor] = field(default_factory=list)
    """Cursors to write: those of new DAGs, of edited schedules (time zones, DST
    policies) from now on, and those taken over from a copy no live scheduler has
    (the fire time kept when the schedule is the same). Each carries this
    scheduler's fingerprint."""
    due: list[str] = field(default_factory=list)
    """DAGs whose next fire time has come (on cursors this scheduler may fire)."""
    drop: list[str] = field(default_factory=list)
    """Cursors of DAGs that have no schedule now, or are gone from the folder (and
    from every live scheduler's)."""
    expected: dict[str, str | None] = field(default_factory=dict)
    """For each cursor of ``reset`` and ``drop`` that exists: the fingerprint read.
    The write applies only if the row still has it (another scheduler may have
    taken the cursor over since)."""
    cursors: dict[str, Cursor] = field(default_factory=dict)
    """The cursor of every scheduled DAG this scheduler fires, once ``reset`` is applied."""
    left: list[str] = field(default_factory=list)
    """Cursors left to another live scheduler (another copy of the DAG, or a DAG this
    one does not know)."""
    needs_live: bool = False
    """Some cursor's fate depends on the other schedulers' copies and no ``live``
    was given: plan again with it. Nothing is decided for those cursors."""
    problems: dict[str, str] = field(default_factory=dict)
    """DAGs whose schedule cannot be computed, and why."""


@dataclass(frozen=True)
class FirePlan:
    runs: list[tuple[str, datetime]] = field(default_factory=list)
    """Scheduled runs to create: (DAG, fire time)."""
    advanced: list[Cursor] = field(default_factory=list)
    """The fired cursors, moved to their next fire time."""
    skipped: list[tuple[str, datetime]] = field(default_factory=list)
    """Fire times of paused DAGs, passed without a run: (DAG, fire time)."""
    overlapped: list[tuple[str, datetime, str]] = field(default_factory=list)
    """Fires of ``overlap: skip`` DAGs while a run had not ended, recorded as
    ``skipped`` runs: (DAG, fire time, message)."""
    replace: dict[str, tuple[int, ...]] = field(default_factory=dict)
    """``overlap: replace``: the runs to cancel, by DAG, once its new run exists."""
    problems: dict[str, str] = field(default_factory=dict)


def plan_schedules(
    dags: Mapping[str, Dag],
    cursors: Mapping[str, Cursor],
    now: datetime,
    broken: Collection[str] = (),
    live: LiveCopies | None = None,
) -> SchedulePlan:
    """What to do with the schedule cursors of ``dags`` (the DAGs that load).

    A DAG first seen, or whose schedule, time zone or DST policy changed, gets a
    cursor at its next fire time after ``now``: past times never replay. A DAG without a schedule,
    or gone from the folder, keeps no cursor, so when it (or its schedule) comes
    back it waits for its next time like a new DAG. ``broken`` DAGs (in the folder,
    failing to load) keep theirs.

    A cursor set by another copy of the DAG (another fingerprint) is left alone
    while a live scheduler (``live``) has that copy, and the cursor of a DAG not
    loaded here while a live scheduler knows the DAG; otherwise this copy takes the
    cursor over (keeping its fire time if the schedule is the same) or drops it.
    Without ``live`` those cursors are left undecided and ``needs_live`` is set.
    """
    plan = SchedulePlan()
    undecided = False
    for name, dag in dags.items():
        if dag.schedule is None:
            continue
        read = cursors.get(name)
        if read is not None and read.fingerprint not in (None, dag.fingerprint):
            if live is None:
                undecided = True
                continue
            if live.has(name, read.fingerprint):
                plan.left.append(name)
                continue
        dst = cron.DstPolicy.of(dag)
        if read is None or (read.schedule, read.timezone, read.dst) != (
            dag.schedule,
            dag.timezone,
            dst,
        ):
            try:
                fire = cron.next_fire(dag.schedule, dag.timezone, now, dst)
            except Exception as exc:  # one DAG's bad schedule never stops the others
                plan.problems[name] = str(exc)
                continue
            if read is not None:
                plan.expected[name] = read.fingerprint
            cursor = Cursor(
                name, dag.schedule, dag.timezone, fire, dst=dst, fingerprint=dag.fingerprint
            )
            plan.reset.append(cursor)
        elif read.fingerprint != dag.fingerprint:
            # The same schedule, set by a copy no live scheduler has (or before copies
            # were recorded): this copy takes the cursor over where it stands.
            plan.expected[name] = read.fingerprint
            cursor = replace(read, fingerprint=dag.fingerprint)
            plan.reset.append(cursor)
        else:
            cursor = read
        if cursor.next_fire_at <= now:
            plan.due.append(name)
        plan.cursors[name] = cursor
    for name, read in cursors.items():
        here = dags.get(name)
        if (here is not None and here.schedule is not None) or name in broken:
            continue
        # No schedule here, or a DAG not loaded here: dropped unless another copy lives.
        if here is None or read.fingerprint not in (None, here.fingerprint):
            if live is None:
                undecided = True
                continue
            if live.knows(name) if here is None else live.has(name, read.fingerprint):
                plan.left.append(name)
                continue
        plan.drop.append(name)
        plan.expected[name] = read.fingerprint
    return replace(plan, needs_live=True) if undecided else plan


def plan_fires(
    due: Iterable[Cursor], now: datetime, overlap: Mapping[str, Overlap] | None = None
) -> FirePlan:
    """One run per due cursor, for its most recent fire time however many were
    missed, and never for a time before the cursor (no time runs twice). A paused
    DAG's cursor moves on without a run, so unpausing replays nothing. Fire times
    follow each cursor's DST policy.

    While runs of the DAG have not ended (``cursor.running``), its ``overlap``
    policy (default ``queue``) decides: ``queue`` creates the run, ``skip`` records
    the fire as skipped instead, ``replace`` creates it and cancels those runs.
    """
    plan = FirePlan()
    for cursor in due:
        try:
            latest = cron.latest_fire(cursor.schedule, cursor.timezone, now, cursor.dst)
            fire = max(latest, cursor.next_fire_at)
            following = cron.next_fire(cursor.schedule, cursor.timezone, fire, cursor.dst)
        except Exception as exc:
            plan.problems[cursor.dag_name] = str(exc)
            continue
        policy = (overlap or {}).get(cursor.dag_name, Overlap.QUEUE)
        if cursor.paused:
            plan.skipped.append((cursor.dag_name, fire))
        elif cursor.running and policy is Overlap.SKIP:
            plan.overlapped.append((cursor.dag_name, fire, skipped_message(cursor.running[0])))
        else:
            plan.runs.append((cursor.dag_name, fire))
            if cursor.running and policy is Overlap.REPLACE:
                plan.replace[cursor.dag_name] = cursor.running
        plan.advanced.append(replace(cursor, next_fire_at=following, paused=False, running=()))
    return plan


def skipped_message(run_id: int) -> str:
    """The message of a fire skipped because run ``run_id`` had not ended."""
    return f"skipped: run {run_id} had not ended (overlap: skip)"


def replaced_message(run_id: int) -> str:
    """The message of a run cancelled because scheduled run ``run_id`` replaced it."""
    return f"replaced by run {run_id} (overlap: replace)"


# --- runs --------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskRunState:
    task_name: str
    attempt: int
    status: TaskStatus
    superseded: bool = False
    """Replaced by a rerun: history only, ignored by the plan (but never renumbered)."""
    waited: bool = False
    """It still lists inputs on other DAGs (``waiting_for``): when failed, it failed
    waiting for them (``input_timeout``) and is not retried."""


@dataclass(frozen=True)
class NewTaskRun:
    task_name: str
    attempt: int
    not_before: datetime
    waiting_for: tuple[str, ...] = ()
    """Its inputs on other DAGs (``dag:task``), which it waits for before it may start."""


@dataclass(frozen=True)
class RunPlan:
    create: list[NewTaskRun] = field(default_factory=list)
    finish: RunStatus | None = None
    message: str | None = None


class _State(enum.Enum):
    DONE = "done"
    ACTIVE = "active"  # waiting or running, or about to be created
    PENDING = "pending"  # inputs not finished yet
    DEAD = "dead"  # failed with no attempts left
    BLOCKED = "blocked"  # an input is dead or blocked


def latest_attempts(task_runs: Iterable[TaskRunState]) -> dict[str, TaskRunState]:
    """The latest attempt of each task that a rerun has not superseded."""
    latest: dict[str, TaskRunState] = {}
    for run in task_runs:
        if run.superseded:
            continue
        seen = latest.get(run.task_name)
        if seen is None or run.attempt > seen.attempt:
            latest[run.task_name] = run
    return latest


def plan_run(dag: Dag, task_runs: Iterable[TaskRunState], now: datetime) -> RunPlan:
    """The next step of a run of ``dag`` whose task runs are ``task_runs``.

    A run succeeds when every task succeeded, and fails once nothing more can run:
    independent branches still finish first.
    """
    task_runs = list(task_runs)
    latest = latest_attempts(task_runs)
    # Attempt numbers go on across reruns; the retry budget counts the current ones.
    numbered: dict[str, int] = {}
    current: dict[str, int] = {}
    for run in task_runs:
        numbered[run.task_name] = max(numbered.get(run.task_name, 0), run.attempt)
        if not run.superseded:
            current[run.task_name] = current.get(run.task_name, 0) + 1
    states: dict[str, _State] = {}
    create: list[NewTaskRun] = []
    for task in dag.tasks.values():  # topological order: inputs are decided first
        inputs = [states[name] for name in task.inputs]
        last = latest.get(task.name)
        if last is None:
            if any(s in (_State.DEAD, _State.BLOCKED) for s in inputs):
                states[task.name] = _State.BLOCKED
            elif all(s is _State.DONE for s in inputs):
                attempt = numbered.get(task.name, 0) + 1
                create.append(NewTaskRun(task.name, attempt, now, external_names(task)))
                states[task.name] = _State.ACTIVE
            else:
                states[task.name] = _State.PENDING
        elif last.status is TaskStatus.SUCCEEDED:
            states[task.name] = _State.DONE
        elif last.status is TaskStatus.CANCELLED:
            states[task.name] = _State.DEAD  # never retried
        elif last.status is TaskStatus.FAILED and last.waited:
            states[task.name] = _State.DEAD  # its inputs on other DAGs never came: no retry
        elif last.status is TaskStatus.FAILED:
            if current[task.name] < dag.max_attempts(task):
                delay = timedelta(seconds=dag.retry_delay_of(task))
                attempt = numbered[task.name] + 1
                create.append(NewTaskRun(task.name, attempt, now + delay, external_names(task)))
                states[task.name] = _State.ACTIVE
            else:
                states[task.name] = _State.DEAD
        else:
            states[task.name] = _State.ACTIVE

    if any(s in (_State.ACTIVE, _State.PENDING) for s in states.values()):
        return RunPlan(create=create)
    dead = sorted(name for name, s in states.items() if s is _State.DEAD)
    if not dead:
        return RunPlan(finish=RunStatus.SUCCEEDED)
    blocked = sorted(name for name, s in states.items() if s is _State.BLOCKED)
    message = "failed: " + ", ".join(
        _dead_reason(name, latest[name], current[name]) for name in dead
    )
    if blocked:
        message += "; not run: " + ", ".join(blocked)
    return RunPlan(finish=RunStatus.FAILED, message=message)


class Owner(enum.Enum):
    """Which scheduler advances a run (and starts its task runs)."""

    OURS = "ours"
    """The run was created by this copy of the DAG, or by no particular copy."""
    ADOPT = "adopt"
    """Created by another copy that no live scheduler has: this one takes it over."""
    OTHERS = "others"
    """Created by another copy that a live scheduler has: left to it."""
    ASK = "ask"
    """Created by another copy: it depends on the live schedulers (none given)."""


def run_owner(dag: Dag, run_fingerprint: str | None, live: LiveCopies | None = None) -> Owner:
    """Whether this scheduler, whose copy of the run's DAG is ``dag``, advances a
    run created by the copy ``run_fingerprint`` (None: no particular copy)."""
    if run_fingerprint is None or run_fingerprint == dag.fingerprint:
        return Owner.OURS
    if live is None:
        return Owner.ASK
    return Owner.OTHERS if live.has(dag.name, run_fingerprint) else Owner.ADOPT


def _dead_reason(name: str, last: TaskRunState, attempts: int) -> str:
    if last.status is TaskStatus.CANCELLED:
        return f"{name} (cancelled)"
    if last.waited:
        return f"{name} (inputs on other DAGs not ready)"
    return f"{name} (after {attempts} attempt{'s' if attempts > 1 else ''})"


def external_names(task: Task) -> tuple[str, ...]:
    """The ``dag:task`` names of ``task``'s inputs on other DAGs, as ``waiting_for`` stores them."""
    return tuple(f"{ref.dag}:{ref.task}" for ref in task.external_inputs)


def tasks_to_rerun(
    task_runs: Iterable[TaskRunState], dag: Dag | None, every_task: bool = False
) -> list[str]:
    """The tasks whose current attempts a rerun supersedes: with ``every_task``, all
    that ran; otherwise those that failed or were cancelled and, when ``dag`` is
    known, every task downstream of them that ran. Sorted by name."""
    latest = latest_attempts(task_runs)
    if every_task:
        return sorted(latest)
    chosen = {
        name
        for name, run in latest.items()
        if run.status in (TaskStatus.FAILED, TaskStatus.CANCELLED)
    }
    if dag is not None:
        for task in dag.tasks.values():  # topological order: inputs are decided first
            if any(name in chosen for name in task.inputs) and task.name in latest:
                chosen.add(task.name)
    return sorted(chosen)


# --- inputs on other DAGs ------------------------------------------------------------


@dataclass(frozen=True)
class InputWait:
    """A waiting task run that still waits for inputs on other DAGs."""

    task_run_id: int
    dag_name: str
    task_name: str
    anchor: datetime
    """Its run's ``scheduled_for``, or ``created_at`` for a manual run."""
    created_at: datetime
    """When the task run was created: its ``input_timeout`` counts from then."""
    waiting_for: tuple[str, ...]
    """The ``dag:task`` inputs it still waits for."""


@dataclass(frozen=True)
class InputWindow:
    """The runs of DAG ``dag_name`` in which a success of ``task_name`` satisfies an
    input: those anchored from ``earliest`` (None: any time) to ``latest``, inclusive."""

    dag_name: str
    task_name: str
    earliest: datetime | None
    latest: datetime


@dataclass(frozen=True)
class WaitUpdate:
    """What becomes of one wait: the inputs it still waits for (empty: it may start
    now) and, when its ``input_timeout`` has passed, the error it fails with."""

    task_run_id: int
    waiting_for: tuple[str, ...]
    error: str | None = None


@dataclass(frozen=True)
class WaitPlan:
    updates: list[WaitUpdate] = field(default_factory=list)
    """Only the waits that change: an input came, or the time ran out."""
    next_deadline: datetime | None = None
    """The earliest ``input_timeout`` of the waits that go on."""


def input_window(upstream: Dag, task_name: str, anchor: datetime) -> InputWindow:
    """Where a run anchored at ``anchor`` finds its input ``upstream:task_name``: in a
    run of ``upstream`` anchored at or before ``anchor`` and no older than
    ``upstream``'s latest fire time at ``anchor`` (its latest due run; under its own
    DST policy). An upstream DAG
    without a schedule has no such bound: any run at or before ``anchor`` counts."""
    if upstream.schedule is None:
        return InputWindow(upstream.name, task_name, None, anchor)
    earliest = cron.latest_fire(
        upstream.schedule, upstream.timezone, anchor, cron.DstPolicy.of(upstream)
    )
    return InputWindow(upstream.name, task_name, earliest, anchor)


def input_windows(
    waits: Iterable[InputWait], dags: Mapping[str, Dag]
) -> dict[int, dict[str, InputWindow]]:
    """Task run id -> each input it still waits for -> its window, for the waits this
    scheduler can decide (its DAG is in ``dags``).

    An input the task no longer lists in ``dags``' copy (the DAG was edited since the
    task run was created) is left out: it is no longer waited for, as the plan of a
    run follows the current DAG. A wait naming a DAG that is not in ``dags`` (not
    loaded here), or one whose schedule cannot be computed, is left out whole, and so
    left alone.
    """
    windows: dict[int, dict[str, InputWindow]] = {}
    for wait in waits:
        dag = dags.get(wait.dag_name)
        if dag is None:
            continue
        task = dag.tasks.get(wait.task_name)
        listed = set(external_names(task)) if task is not None else set()
        found: dict[str, InputWindow] = {}
        for name in wait.waiting_for:
            if name not in listed:
                continue
            dag_name, _, task_name = name.partition(":")
            upstream = dags.get(dag_name)
            if upstream is None:
                break
            try:
                found[name] = input_window(upstream, task_name, wait.anchor)
            except Exception:  # a schedule cron cannot compute: plan_schedules reports it
                break
        else:
            windows[wait.task_run_id] = found
    return windows


def settle_waits(
    waits: Iterable[InputWait],
    windows: Mapping[int, Mapping[str, InputWindow]],
    satisfied: Collection[InputWindow],
    dags: Mapping[str, Dag],
    now: datetime,
) -> WaitPlan:
    """Which waits end, shrink or time out, given the ``satisfied`` windows (those in
    which the database holds a success). A wait left out of ``windows`` is not
    changed; an input left out of its ``windows`` entry is no longer waited for. One whose inputs are not all there once ``input_timeout`` seconds have
    passed since it was created fails, naming what it waited for and where."""
    updates: list[WaitUpdate] = []
    deadlines: list[datetime] = []
    for wait in waits:
        found = windows.get(wait.task_run_id)
        if found is None:
            continue
        missing = tuple(
            name for name in wait.waiting_for if name in found and found[name] not in satisfied
        )
        dag = dags[wait.dag_name]
        task = dag.tasks.get(wait.task_name)
        timeout = dag.input_timeout if task is None else dag.input_timeout_of(task)
        deadline = None if timeout is None else wait.created_at + timedelta(seconds=timeout)
        if missing and deadline is not None and deadline <= now:
            error = _not_ready(missing, found, timeout or 0.0)
            updates.append(WaitUpdate(wait.task_run_id, missing, error))
            continue
        if missing != wait.waiting_for:
            updates.append(WaitUpdate(wait.task_run_id, missing))
        if missing and deadline is not None:
            deadlines.append(deadline)
    return WaitPlan(updates, min(deadlines, default=None))


def _not_ready(missing: tuple[str, ...], windows: Mapping[str, InputWindow], timeout: float) -> str:
    def where(name: str) -> str:
        window = windows[name]
        span = (
            f"at or before {_utc(window.latest)}"
            if window.earliest is None
            else f"from {_utc(window.earliest)} to {_utc(window.latest)}"
        )
        what = "it" if len(missing) == 1 else window.task_name
        return f"no run of {window.dag_name} {span} has {what} succeeded"

    inputs = f"input {missing[0]}" if len(missing) == 1 else f"inputs {', '.join(missing)}"
    return f"{inputs} not ready after {timeout:g} s: " + "; ".join(where(n) for n in missing)


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
