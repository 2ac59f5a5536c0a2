"""The public Python API: operating runs from outside the scheduler.

>>> from workflows_tick import scheduler
>>> run = scheduler.trigger_dag("daily_load", creator="backfill script", parameters={"DAY": "2024-01-01"})
>>> scheduler.cancel_run(run.id, reason="wrong day")

Each function runs in one transaction: it changes everything it says or nothing.
Without an ``engine``, the database is found as the scheduler finds it (and migrated).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine

from workflows_tick import cron, queries
from workflows_tick.dags import DagRegistry
from workflows_tick.errors import RunStateError, RunWaitTimeout, UnknownRunError, UsageError
from workflows_tick.model import Dag
from workflows_tick.plan import Cursor, tasks_to_rerun
from workflows_tick.queries import (
    Activity,
    Cancelled,
    DagRunRow,
    PausedDag,
    SchedulerRow,
    TaskRunRow,
)
from workflows_tick.states import RunStatus, TaskStatus
from workflows_tick.tick import Clock, utc_now

__all__ = [
    "Backfill",
    "Cancelled",
    "DagRunRow",
    "PausedDag",
    "Rerun",
    "backfill",
    "cancel_run",
    "pause_dag",
    "paused_dags",
    "rerun_run",
    "trigger_dag",
    "unpause_dag",
]


@dataclass(frozen=True)
class Rerun:
    run: DagRunRow
    """The run as it was before the rerun."""
    tasks: list[str]
    """The tasks that get new attempts (tasks that never ran are started as usual)."""


@contextmanager
def _transaction(engine: Engine | None, purpose: str) -> Iterator[Connection]:
    """One transaction on ``engine``, or on the configured database (migrated first)."""
    with _connection(engine, purpose) as db, db.begin() as conn:
        yield conn


@contextmanager
def _changing_work(engine: Engine | None, purpose: str) -> Iterator[Connection]:
    """:func:`_transaction`, waking every sleeping scheduler on the database when it
    commits (``NOTIFY``; nothing is sent if the body fails)."""
    with _transaction(engine, purpose) as conn:
        yield conn
        queries.notify_work(conn)


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def check_parameters(parameters: Mapping[str, object]) -> dict[str, str]:
    """Parameters become environment variables: names must be valid, values strings."""
    checked = {}
    for name, value in parameters.items():
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            raise UsageError(f"parameter name {name!r} is not a valid environment variable name")
        if not isinstance(value, str):
            raise UsageError(
                f"parameter {name}: value must be a string, not {type(value).__name__}"
            )
        # The value is never echoed: parameters may be secrets.
        if "\x00" in value:
            raise UsageError(f"parameter {name}: the value contains a NUL character")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise UsageError(f"parameter {name}: the value is not valid UTF-8") from None
        checked[name] = value
    return checked


def trigger_dag(
    dag: Dag | str,
    *,
    creator: str,
    parameters: Mapping[str, str] | None = None,
    engine: Engine | None = None,
    clock: Clock = utc_now,
) -> DagRunRow:
    """Create a running run of ``dag`` now and return it.

    ``parameters`` reach the run's tasks as environment variables. Without an
    ``engine``, the database is found as the scheduler finds it (and migrated).
    Triggers never collide: two in the same second make two runs. A loaded ``dag``
    records its copy (fingerprint) on the run, so that a scheduler with another copy
    of the DAG leaves it to one with this copy while one is live; a name records none.
    """
    name = dag.name if isinstance(dag, Dag) else dag
    fingerprint = dag.fingerprint if isinstance(dag, Dag) else None
    params = check_parameters(parameters or {})
    with _changing_work(engine, "trigger") as conn:
        return queries.insert_manual_run(conn, name, creator, params, clock(), fingerprint)


def cancel_run(
    run_id: int,
    *,
    reason: str | None = None,
    by: str = "api",
    engine: Engine | None = None,
    clock: Clock = utc_now,
) -> Cancelled:
    """End a running run ``cancelled``; its waiting task runs are cancelled with it.

    Its running attempts are stopped by the next pass of the scheduler that runs
    them (worker: the process group gets SIGTERM, then SIGKILL; Kubernetes: the
    pod is deleted) and recorded ``cancelled``; they are never retried. Raises
    :class:`UnknownRunError` for an unknown id and :class:`RunStateError` when the
    run has already ended (its state is left as it is).
    """
    message = f"cancelled by {by}" + (f": {reason}" if reason else "")
    with _changing_work(engine, "cancel") as conn:
        run = queries.lock_run(conn, run_id)
        if run is None:
            raise UnknownRunError(run_id)
        cancelled = queries.cancel_run(conn, run_id, message, clock())
        if cancelled is None:
            raise RunStateError(
                f"run {run_id} has already ended ({run.status.value}); nothing to cancel"
            )
        return cancelled


def pause_dag(
    dag: Dag | str, *, by: str = "api", engine: Engine | None = None, clock: Clock = utc_now
) -> bool:
    """Pause ``dag`` for every scheduler: it gets no scheduled runs until unpaused.

    Runs already created go on; manual triggers and backfills are still accepted
    and run. Returns False if it was already paused (nothing changes then).
    """
    name = dag.name if isinstance(dag, Dag) else dag
    with _transaction(engine, "pause") as conn:
        return not queries.set_paused(conn, name, True, by, clock())


def unpause_dag(
    dag: Dag | str, *, by: str = "api", engine: Engine | None = None, clock: Clock = utc_now
) -> bool:
    """Let ``dag`` be scheduled again, from its next fire time: the times missed
    while it was paused are not replayed. Returns False if it was not paused."""
    name = dag.name if isinstance(dag, Dag) else dag
    with _changing_work(engine, "unpause") as conn:
        was_paused = queries.set_paused(conn, name, False, by, clock())
        cursor = queries.lock_cursor(conn, name)
        now = clock()
        if cursor is not None and cursor.next_fire_at <= now:
            # No scheduler moved the cursor on while the DAG was paused (none ran):
            # move it past now so that the missed time is not run on unpause.
            following = cron.next_fire(cursor.schedule, cursor.timezone, now, cursor.dst)
            queries.advance_cursors(conn, [replace(cursor, next_fire_at=following)], now)
        return was_paused


def paused_dags(*, engine: Engine | None = None) -> list[PausedDag]:
    """The paused DAGs, by name, with when and by whom they were paused."""
    with _transaction(engine, "paused") as conn:
        return queries.paused_dags(conn)


MAX_BACKFILL_UNCONFIRMED = 1000
"""A backfill of more fire times than this needs ``confirm_many`` (``--yes``)."""
MAX_BACKFILL = 100_000
"""No backfill creates more runs than this in one command."""


@dataclass(frozen=True)
class Backfill:
    dag_name: str
    times: list[datetime]
    """Every fire time in the range, up to now (UTC, in order)."""
    created: list[DagRunRow]
    """The runs created (none for a dry run)."""
    skipped: list[DagRunRow]
    """The runs that already existed at fire times of the range (and were left alone)."""
    rerun: list[DagRunRow]
    """Failed runs rerun in place (``rerun_failed``), as they were before."""
    later: int
    """Fire times of the range after now: left to the schedule."""


def parse_time(value: str, timezone: str, option: str) -> datetime:
    """An ISO 8601 time; without an offset it is a wall-clock time in ``timezone``."""
    from zoneinfo import ZoneInfo

    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise UsageError(
            f"{option} {value!r} is not an ISO time (e.g. 2024-01-31 or 2024-01-31T06:00+01:00)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=ZoneInfo(timezone))
    return parsed.astimezone(UTC)


def backfill(
    dag: Dag,
    start: datetime,
    end: datetime,
    *,
    dry_run: bool = False,
    rerun_failed: bool = False,
    confirm_many: bool = False,
    by: str = "api",
    engine: Engine | None = None,
    clock: Clock = utc_now,
) -> Backfill:
    """One run of ``dag`` per fire time of its schedule in ``[start, end]`` (aware
    times), each with that ``scheduled_for``, queued in time order behind the runs
    already queued.

    Idempotent: a fire time that has a run already (scheduled, backfilled) is
    skipped, or, with ``rerun_failed``, rerun in place if that run failed. Fire
    times after now are left to the schedule. Raises :class:`UsageError` for a DAG
    without a schedule, an empty range, or more than :data:`MAX_BACKFILL_UNCONFIRMED`
    times without ``confirm_many``.
    """
    if dag.schedule is None:
        raise UsageError(f"DAG {dag.name} has no schedule: there are no fire times to backfill")
    if start.tzinfo is None or end.tzinfo is None:
        raise UsageError("backfill start and end must be aware times")
    if end < start:
        raise UsageError(f"--end {end.isoformat()} is before --start {start.isoformat()}")
    now = clock()
    every = cron.fire_times(
        dag.schedule, dag.timezone, start, end, MAX_BACKFILL, cron.DstPolicy.of(dag)
    )
    if len(every) > MAX_BACKFILL:
        raise UsageError(f"more than {MAX_BACKFILL:,} fire times in the range: split it")
    times = [t for t in every if t <= now]
    if not every:
        raise UsageError(
            f"DAG {dag.name} ({dag.schedule!r}, {dag.timezone}) has no fire time between "
            f"{start.isoformat()} and {end.isoformat()}"
        )
    if len(times) > MAX_BACKFILL_UNCONFIRMED and not confirm_many and not dry_run:
        raise UsageError(
            f"{len(times):,} fire times: more than {MAX_BACKFILL_UNCONFIRMED:,} need --yes"
        )
    with _changing_work(engine, "backfill") as conn:
        created: list[DagRunRow] = []
        if not dry_run:
            created = queries.insert_backfill_runs(conn, dag.name, times, by, now, dag.fingerprint)
        made = {r.scheduled_for for r in created}
        # Read after the insert: runs a concurrent command created meanwhile are skipped.
        existing = queries.runs_at(conn, dag.name, [t for t in times if t not in made])
        skipped = [existing[t] for t in times if t in existing]
        rerun: list[DagRunRow] = []
        if rerun_failed:
            for run in skipped:
                if run.status is not RunStatus.FAILED:
                    continue
                if not dry_run:
                    locked = queries.lock_run(conn, run.id)
                    if locked is None or locked.status is not RunStatus.FAILED:
                        continue  # rerun by someone else meanwhile
                    try:
                        _rerun(conn, locked, False, by, dag, now)
                    except RunStateError:  # nothing to rerun (it changed nothing)
                        continue
                rerun.append(run)
        return Backfill(
            dag.name,
            times,
            created,
            [r for r in skipped if r not in rerun],
            rerun,
            len(every) - len(times),
        )


def rerun_run(
    run_id: int,
    *,
    every_task: bool = False,
    by: str = "api",
    registry: DagRegistry | None = None,
    engine: Engine | None = None,
    clock: Clock = utc_now,
) -> Rerun:
    """Rerun an ended run from failure, in place.

    Its failed and cancelled tasks and everything downstream of them (found in
    ``registry``'s copy of the DAG, when given) get new attempts at the next pass;
    succeeded tasks are kept (``every_task`` reruns them all). Earlier attempts stay
    in the history with their output. Refused (:class:`RunStateError`) while the run
    is running or any of its attempts is still being stopped.
    """
    with _changing_work(engine, "rerun") as conn:
        run = queries.lock_run(conn, run_id)
        if run is None:
            raise UnknownRunError(run_id)
        if run.status is RunStatus.RUNNING:
            raise RunStateError(f"run {run_id} is running; it can be rerun once it has ended")
        return Rerun(
            run, _rerun(conn, run, every_task, by, _loaded_dag(registry, run.dag_name), clock())
        )


def _rerun(
    conn: Connection, run: DagRunRow, every_task: bool, by: str, dag: Dag | None, now: datetime
) -> list[str]:
    """Rerun an ended, locked run in the caller's transaction; the tasks rerun."""
    states = queries.task_run_states(conn, [run.id])[run.id]
    if any(s.status in (TaskStatus.RUNNING, TaskStatus.WAITING) for s in states):
        raise RunStateError(
            f"run {run.id} has attempts that are still being stopped; rerun it once they have ended"
        )
    tasks = tasks_to_rerun(states, dag, every_task)
    if not tasks and not every_task:
        raise RunStateError(
            f"run {run.id} {run.status.value} with no failed or cancelled task run; "
            "--all reruns every task"
        )
    fingerprint = None if dag is None else dag.fingerprint
    queries.rerun_run(conn, run.id, tasks, f"rerun by {by}", now, fingerprint)
    return tasks


def _loaded_dag(registry: DagRegistry | None, name: str) -> Dag | None:
    if registry is None or name not in registry:
        return None
    loaded = registry.load(name)
    return loaded if isinstance(loaded, Dag) else None


DEFAULT_WAIT_POLL_SECONDS = 0.5
"""How often :func:`wait_for_run` reads the run's state."""


def wait_for_run(
    run_id: int,
    *,
    timeout: float | None = None,
    on_change: Callable[[TaskRunRow], None] | None = None,
    poll_seconds: float = DEFAULT_WAIT_POLL_SECONDS,
    engine: Engine | None = None,
) -> DagRunRow:
    """Block until the run has ended and return it; ``on_change`` gets each task run
    whose state changed (in id order). A scheduler must be running: this only reads.

    Raises :class:`RunWaitTimeout` (exit code 124) after ``timeout`` seconds.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    seen: dict[int, tuple[str, int | None, tuple[str, ...] | None]] = {}
    with _connection(engine, "wait") as db:
        while True:
            with db.connect() as conn:
                run = queries.dag_run_by_id(conn, run_id)
                if run is None:
                    raise UnknownRunError(run_id)
                task_runs = queries.task_runs_of(conn, [run_id])
            for task_run in task_runs:
                state = (task_run.status.value, task_run.exit_code, task_run.waiting_for)
                if seen.get(task_run.id) != state:
                    seen[task_run.id] = state
                    if on_change is not None:
                        on_change(task_run)
            if run.status is not RunStatus.RUNNING:
                return run
            if deadline is not None and time.monotonic() >= deadline:
                raise RunWaitTimeout(f"run {run_id} is still running after {timeout:g}s")
            pause = poll_seconds
            if deadline is not None:
                pause = max(0.0, min(pause, deadline - time.monotonic()))
            time.sleep(pause)


@contextmanager
def _connection(engine: Engine | None, purpose: str) -> Iterator[Engine]:
    """``engine``, or an engine on the configured database (migrated first)."""
    if engine is not None:
        yield engine
        return
    from workflows_tick.database import connect
    from workflows_tick.migrate import upgrade

    with connect(purpose=purpose) as db:
        upgrade(db.engine)
        yield db.engine


_DURATION = re.compile(r"\s*(\d+)\s*([smhdw])\s*\Z")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: str, option: str = "--older-than") -> timedelta:
    """``90d``, ``12h``, ``30m``, ``45s``, ``2w``: a positive duration."""
    match = _DURATION.match(value)
    if match is None or int(match.group(1)) == 0:
        raise UsageError(
            f"{option} {value!r} is not a positive duration such as 90d, 12h, 30m, 45s or 2w"
        )
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if seconds > 100 * 365 * 86400:
        raise UsageError(f"{option} {value!r} is more than 100 years")
    return timedelta(seconds=seconds)


DEFAULT_PRUNE_BATCH = 500
"""Runs deleted per transaction: each batch holds its locks for a moment only."""


@dataclass(frozen=True)
class Pruned:
    cutoff: datetime
    by_dag: dict[str, tuple[int, int]]
    """DAG -> (runs, task runs) deleted (or, for a dry run, that would be)."""
    heartbeats: int
    """Rows of schedulers not seen since the cutoff, deleted."""

    @property
    def runs(self) -> int:
        return sum(r for r, _ in self.by_dag.values())

    @property
    def task_runs(self) -> int:
        return sum(t for _, t in self.by_dag.values())


EVENT_PRUNE_BATCH = 10_000


def prune(
    older_than: timedelta,
    *,
    dry_run: bool = False,
    batch_size: int = DEFAULT_PRUNE_BATCH,
    engine: Engine | None = None,
    clock: Clock = utc_now,
) -> Pruned:
    """Delete finished runs that ended more than ``older_than`` ago, with their task
    runs and stored output, in batches of ``batch_size`` runs (one short transaction
    each, rows locked elsewhere skipped). Never a running run, a run whose attempts
    are still being stopped, or a DAG's most recent run. Each deleted run goes with
    all its task runs: stopped halfway, a prune leaves whole runs only.
    """
    if batch_size < 1:
        raise UsageError("batch size must be at least 1")
    cutoff = clock() - older_than
    by_dag: dict[str, tuple[int, int]] = {}
    with _connection(engine, "prune") as db:
        if dry_run:
            with db.connect() as conn:
                return Pruned(cutoff, queries.prunable_runs(conn, cutoff), 0)
        while True:
            with db.begin() as conn:
                batch = queries.prune_batch(conn, cutoff, batch_size)
            for dag, (runs, task_runs) in batch.items():
                before = by_dag.get(dag, (0, 0))
                by_dag[dag] = (before[0] + runs, before[1] + task_runs)
            if sum(r for r, _ in batch.values()) < batch_size:
                break
        with db.begin() as conn:
            heartbeats = queries.prune_heartbeats(conn, cutoff)
        # Events delivered (or given up) before the cutoff, those of the runs just
        # deleted among them: they have no foreign key to cascade from.
        while True:
            with db.begin() as conn:
                if queries.prune_events(conn, cutoff, EVENT_PRUNE_BATCH) < EVENT_PRUNE_BATCH:
                    break
    return Pruned(cutoff, dict(sorted(by_dag.items())), heartbeats)


DEFAULT_STATUS_WINDOW = timedelta(minutes=5)
"""``status`` lists the schedulers whose last pass is this recent."""


@dataclass(frozen=True)
class Status:
    now: datetime
    schedulers: list[SchedulerRow]
    paused: list[PausedDag]
    activity: Activity
    schedules: list[Cursor]
    """Each scheduled DAG's next fire time (``paused`` set for paused DAGs), soonest first."""


def status(
    *,
    window: timedelta = DEFAULT_STATUS_WINDOW,
    engine: Engine | None = None,
    clock: Clock = utc_now,
) -> Status:
    """What the schedulers are doing: those seen within ``window``, paused DAGs,
    running and waiting work, and the next fire times."""
    now = clock()
    with _connection(engine, "status") as db, db.connect() as conn:
        return Status(
            now,
            queries.schedulers_seen(conn, now - window),
            queries.paused_dags(conn),
            queries.activity(conn, now),
            queries.next_fire_times(conn),
        )
