"""The tick: one idempotent reconciliation pass.

A pass holds no state of its own: everything it decides comes from the database
(and, through the manager, from the processes or pods it runs), so any number of
schedulers may run passes at once, as a loop, a CronJob or a single ``--once``.

Order within a pass:

1. poll the manager about the task runs it has running (outside any transaction);
2. in one transaction: record what finished, renew leases of what is alive, fail
   what lost its lease, create due scheduled runs, advance the earliest running run
   of each DAG (create ready task runs and retries, end finished runs), resolve
   the waits of task runs on inputs of other DAGs (only when a loaded DAG has
   such inputs), claim the oldest startable waiting task runs, and record this
   scheduler's heartbeat (at most once a second); commit;
3. launch the claimed task runs; a launch that fails fails its attempt.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine

from workflows_tick import queries
from workflows_tick.dags import DagRegistry
from workflows_tick.errors import DagLoadError
from workflows_tick.managers.base import Launch, Outcome, TaskManager
from workflows_tick.model import Dag
from workflows_tick.options import DEFAULT_LEASE_SECONDS, DEFAULT_REMOVED_GRACE_SECONDS
from workflows_tick.plan import (
    LiveCopies,
    NewTaskRun,
    Owner,
    input_windows,
    plan_fires,
    plan_run,
    plan_schedules,
    replaced_message,
    run_owner,
    settle_waits,
)
from workflows_tick.states import RunStatus

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

HEARTBEAT_SECONDS = 1.0
"""An idle pass records the scheduler's heartbeat if the last one is this old."""


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class PassResult:
    """What one pass did, for the loop's pacing and for logs and tests."""

    finished: int = 0
    expired: int = 0
    created_runs: list[int] = field(default_factory=list)
    skipped_runs: list[int] = field(default_factory=list)
    """Scheduled fires recorded ``skipped`` (``overlap: skip``)."""
    replaced_runs: list[int] = field(default_factory=list)
    """Runs cancelled because a new scheduled run replaced them (``overlap: replace``)."""
    created_task_runs: int = 0
    ended_runs: int = 0
    inputs_ready: int = 0
    """Task runs whose inputs on other DAGs all came this pass (they may start)."""
    inputs_timed_out: int = 0
    """Task runs failed this pass because their inputs on other DAGs never came."""
    next_input_deadline: datetime | None = None
    """The earliest ``input_timeout`` of the task runs still waiting on other DAGs."""
    started: list[int] = field(default_factory=list)
    failed_launches: int = 0
    running_runs: int = 0
    unknown_dags: set[str] = field(default_factory=set)
    """DAGs with running runs that are not in the registry as last read: perhaps
    added since, so the loop reads the folder again before the next pass."""
    next_fire_at: datetime | None = None
    failed: bool = False
    """The pass did not complete (the loop logged why)."""

    @property
    def left_work(self) -> bool:
        """Whether a pass right away may find work this one could not do: a run ended
        (the next run of its DAG may now advance), a run was replaced (its running
        attempts are to be stopped), a task run failed waiting for inputs on other
        DAGs (its run is to end) or a launch failed (its attempt was recorded after
        the pass, to be retried). Anything else the pass did it followed through;
        what it started wakes the loop when it ends."""
        return bool(
            self.ended_runs or self.replaced_runs or self.inputs_timed_out or self.failed_launches
        )

    @property
    def did_work(self) -> bool:
        return bool(
            self.finished
            or self.expired
            or self.created_runs
            or self.created_task_runs
            or self.ended_runs
            or self.inputs_ready
            or self.inputs_timed_out
            or self.started
            or self.failed_launches
        )


class Ticker:
    """Runs passes for one registry and one manager against one database."""

    def __init__(
        self,
        registry: DagRegistry,
        manager: TaskManager,
        engine: Engine,
        config: str,
        clock: Clock = utc_now,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        removed_grace_seconds: float = DEFAULT_REMOVED_GRACE_SECONDS,
    ) -> None:
        self.registry = registry
        self.manager = manager
        self.engine = engine
        self.config = config
        self.clock = clock
        self.lease = timedelta(seconds=lease_seconds)
        self.removed_grace = timedelta(seconds=removed_grace_seconds)
        """How long another scheduler counts as live after its last pass (unless stopped)."""
        self._live: LiveCopies | None = None
        """The other live schedulers' DAG copies, read at most once a pass, and only
        when the pass meets a run or cursor of another copy or of an unknown DAG."""
        self.starting = True
        """False once the scheduler is stopping: passes then start nothing new."""
        self._dags: dict[str, Dag] = {}
        self._copies: dict[str, str] = {}
        """The fingerprint of each loaded DAG's copy, by name."""
        self._claimable = queries.LoadedCopies.of({})
        """``_copies`` as the claim query takes them (built once per load)."""
        self._waiting_dags: list[str] = []
        """The loaded DAGs with inputs on other DAGs: those whose new task runs wait."""
        self._check_waits = True
        """Whether the next pass resolves waits on other DAGs: always while a loaded
        DAG has such inputs; otherwise once after each load (waits created before an
        edit removed those inputs are then released), and again while any remain."""
        self._broken: dict[str, DagLoadError] = {}
        self._unknown_since: dict[str, int] = {}
        """DAG name -> the registry generation in which a pass first met its runs
        while it was not in the registry."""
        self.scheduler_id = uuid.uuid4().hex
        """This scheduler's row in ``scheduler_heartbeat``."""
        self._host = socket.gethostname()
        self._beat_copies: dict[str, str] | None = None
        """The DAG copies last committed in the heartbeat (None: never); a reload
        makes a new mapping, which is recorded in the next heartbeat."""
        self._beat_at: float | None = None
        """``time.perf_counter()`` at the start of the pass of the last heartbeat."""
        self._beat_now: datetime | None = None
        """The clock's time of the last heartbeat."""
        self._unrecorded: list[Outcome] = []
        """Outcomes the manager reported that are not committed yet: a manager
        reports an outcome once, so a pass that fails (the database went away)
        must record them in a later one, never lose them."""
        self.load_dags()

    def reload_dags(self) -> None:
        """Read the DAG folder again and load what it holds."""
        self.registry.reload()
        self.load_dags()

    def load_dags(self) -> None:
        """Load the registry's DAGs; broken ones are logged and left out."""
        self._dags, self._broken = {}, {}
        for name, dag in self.registry.load_all().items():
            if isinstance(dag, Dag):
                self._dags[name] = dag
            else:
                self._broken[name] = dag
                log.error("DAG %s is not loaded: %s", name, dag)
        self._copies = {name: self._dags[name].fingerprint for name in sorted(self._dags)}
        self._claimable = queries.LoadedCopies.of(self._copies)
        self._waiting_dags = sorted(
            name
            for name, dag in self._dags.items()
            if any(task.external_inputs for task in dag.tasks.values())
        )
        self._check_waits = True

    @property
    def dags(self) -> dict[str, Dag]:
        return self._dags

    @property
    def broken(self) -> list[str]:
        """The names of the DAGs that failed to load."""
        return list(self._broken)

    # --- the pass -------------------------------------------------------------------

    def run_pass(self) -> PassResult:
        result = PassResult()
        started = time.perf_counter()
        with self.engine.connect() as conn:
            alive = self._poll(conn)
            now = self.clock()
            self._live = None
            with conn.begin():
                result.finished = self._record(conn, now, alive)
                expired = queries.expire_leases(conn, now)
                result.expired = len(expired)
                if expired:
                    log.warning("task runs %s lost their lease and are failed", expired)
                result.next_fire_at = self._create_due_runs(conn, now, result)
                self._advance_runs(conn, now, result)
                if self._check_waits:
                    found = self._resolve_input_waits(conn, now, result)
                    self._check_waits = bool(self._waiting_dags) or found
                claims = self._claim(conn, now) if self.starting else []
                copies = self._copies
                beat = self._heartbeat_due(copies, started, now)
                if beat:
                    changed = copies is not self._beat_copies
                    queries.record_heartbeat(
                        conn,
                        self.scheduler_id,
                        self._host,
                        os.getpid(),
                        self.manager.name,
                        now,
                        time.perf_counter() - started,
                        list(copies) if changed else None,
                        copies if changed else None,
                    )
            if beat:
                self._beat_copies, self._beat_at, self._beat_now = copies, started, now
            self._unrecorded.clear()
            self._launch(conn, claims, result)
        if result.did_work:
            log.info(
                "pass: %d finished, %d expired, %d runs created, %d task runs created, "
                "%d runs ended, %d inputs ready, %d inputs timed out, %d started, "
                "%d launch failures",
                result.finished,
                result.expired,
                len(result.created_runs),
                result.created_task_runs,
                result.ended_runs,
                result.inputs_ready,
                result.inputs_timed_out,
                len(result.started),
                result.failed_launches,
            )
        return result

    def tend(self) -> int:
        """Poll, record what finished and renew leases; plan and start nothing.

        Used while ``--once`` waits for the tasks its pass started.
        """
        with self.engine.connect() as conn:
            alive = self._poll(conn)
            with conn.begin():
                recorded = self._record(conn, self.clock(), alive)
            self._unrecorded.clear()
        return recorded

    def record(self, outcomes: Sequence[Outcome]) -> int:
        """Record outcomes outside a pass (at shutdown)."""
        self._unrecorded.extend(outcomes)
        with self.engine.begin() as conn:
            recorded = self._record(conn, self.clock(), ())
        self._unrecorded.clear()
        return recorded

    def _heartbeat_due(self, copies: dict[str, str], started: float, now: datetime) -> bool:
        """Whether this pass records the heartbeat: when the loaded DAGs (or their
        copies) changed, or when the last heartbeat is HEARTBEAT_SECONDS old (by the
        wall clock or by the scheduler's clock).

        An idle pass writes nothing else, and its commit is then free; writing the
        heartbeat on every one of them would cost a WAL flush each, and on every pass
        that starts a task one more statement between a task's end and the next
        task's start.
        """
        return (
            copies is not self._beat_copies
            or self._beat_at is None
            or self._beat_now is None
            or started - self._beat_at >= HEARTBEAT_SECONDS
            or (now - self._beat_now).total_seconds() >= HEARTBEAT_SECONDS
        )

    def mark_stopped(self) -> None:
        """Record in the heartbeat row that this scheduler exited cleanly."""
        with self.engine.begin() as conn:
            queries.mark_scheduler_stopped(conn, self.scheduler_id, self.clock())

    def has_running_runs(self) -> bool:
        """Whether any run of a loaded DAG is running (whoever is advancing it)."""
        with self.engine.connect() as conn:
            return queries.has_running_runs(conn, list(self._dags))

    def next_retry_at(self) -> datetime | None:
        """When the earliest retry waiting out its ``retry_delay`` becomes due, if any."""
        with self.engine.connect() as conn:
            return queries.next_retry_at(conn, self.clock())

    def _poll(self, conn: Connection) -> Sequence[int]:
        """Ask the manager about its running task runs; the ids still alive."""
        running = queries.running_task_runs(conn, self.manager.name)
        conn.rollback()
        polled = self.manager.poll(running)
        self._unrecorded.extend(polled.finished)
        return polled.alive

    def _record(self, conn: Connection, now: datetime, alive: Sequence[int]) -> int:
        """Write outcomes not yet committed and renew leases (in the caller's transaction).

        The caller clears ``_unrecorded`` once its transaction has committed.
        """
        recorded = queries.record_outcomes(conn, self._unrecorded, now)
        queries.renew_leases(conn, alive, now + self.lease)
        return recorded

    # --- steps ----------------------------------------------------------------------

    def _create_due_runs(
        self, conn: Connection, now: datetime, result: PassResult
    ) -> datetime | None:
        cursors = queries.schedule_cursors(conn)
        plan = plan_schedules(self._dags, cursors, now, self._broken)
        if plan.needs_live:  # a cursor of another copy, or of a DAG not loaded here
            plan = plan_schedules(
                self._dags, cursors, now, self._broken, self._live_copies(conn, now)
            )
        queries.upsert_cursors(conn, plan.reset, now, plan.expected)
        queries.delete_cursors(conn, plan.drop, plan.expected)
        # Another scheduler may have fired (or taken over) a due cursor since it was
        # read: lock it and decide on what the lock shows.
        due = (
            queries.lock_due_cursors(conn, {name: self._copies[name] for name in plan.due}, now)
            if plan.due
            else []
        )
        fires = plan_fires(due, now, {c.dag_name: self._dags[c.dag_name].overlap for c in due})
        for name, problem in {**plan.problems, **fires.problems}.items():
            log.error("DAG %s: cannot compute its schedule: %s", name, problem)
        for name, fire in fires.skipped:
            log.info("DAG %s is paused: no run for %s", name, fire)
        created = queries.insert_scheduled_runs(
            conn, fires.runs, now, {name: self._copies[name] for name, _ in fires.runs}
        )
        skipped = queries.insert_skipped_runs(conn, fires.overlapped, now)
        queries.advance_cursors(conn, fires.advanced, now)
        for run in created:
            log.info("scheduled run %d of %s for %s", run.id, run.dag_name, run.scheduled_for)
        for run in skipped:
            log.info("run %d of %s for %s %s", run.id, run.dag_name, run.scheduled_for, run.message)
        result.created_runs.extend(run.id for run in created)
        result.skipped_runs.extend(run.id for run in skipped)
        self._replace(conn, fires.replace, created, now, result)
        cursors = {**plan.cursors, **{c.dag_name: c for c in fires.advanced}}
        return min((c.next_fire_at for c in cursors.values()), default=None)

    def _replace(
        self,
        conn: Connection,
        replace: Mapping[str, Sequence[int]],
        created: Sequence[queries.DagRunRow],
        now: datetime,
        result: PassResult,
    ) -> None:
        """Cancel the runs that the new scheduled runs of ``overlap: replace`` DAGs
        replace, as ``cancel`` does; only where the new run was created here."""
        for run in created:
            for old in replace.get(run.dag_name, ()):
                cancelled = queries.cancel_run(conn, old, replaced_message(run.id), now)
                if cancelled is None:
                    continue  # it ended meanwhile
                result.replaced_runs.append(old)
                log.info(
                    "run %d of %s cancelled: replaced by run %d (overlap: replace); "
                    "%d running attempt(s) to stop",
                    old,
                    run.dag_name,
                    run.id,
                    cancelled.running,
                )
        if result.replaced_runs:
            queries.notify_work(conn)  # the schedulers running their attempts stop them

    def _advance_runs(self, conn: Connection, now: datetime, result: PassResult) -> None:
        runs = queries.lock_earliest_runs(conn)
        finished: list[tuple[int, RunStatus, str | None]] = []
        active = []
        stamp: dict[int, str] = {}
        unknown: set[str] = set()
        elsewhere: set[str] = set()
        gone: list[queries.DagRunRow] = []
        for run in runs:
            dag = self._dags.get(run.dag_name)
            if dag is not None:
                owner = run_owner(dag, run.fingerprint)
                if owner is Owner.ASK:
                    owner = run_owner(dag, run.fingerprint, self._live_copies(conn, now))
                if owner is Owner.OTHERS:
                    continue  # created by another copy of the DAG, which a live scheduler has
                if owner is Owner.ADOPT:
                    log.info(
                        "run %d of %s: adopted (no live scheduler has its copy %s of the DAG)",
                        run.id,
                        run.dag_name,
                        run.fingerprint,
                    )
                if run.fingerprint != dag.fingerprint:
                    stamp[run.id] = dag.fingerprint
                active.append(run)
            elif run.dag_name in self.registry:
                continue  # a broken DAG: its runs wait for a fix
            elif self._is_gone(run):
                if self._live_copies(conn, now).knows(run.dag_name):
                    elsewhere.add(run.dag_name)  # another live scheduler runs it
                    continue
                gone.append(run)
            else:
                unknown.add(run.dag_name)
        awaited = {r.id for r in self._not_yet_started(conn, gone, now)}
        for run in gone:
            if run.id in awaited:
                elsewhere.add(run.dag_name)  # its version's schedulers may be starting
            else:
                message = f"DAG {run.dag_name!r} is no longer in the registry"
                log.warning("run %d failed: %s", run.id, message)
                finished.append((run.id, RunStatus.FAILED, message))
        self._unknown_since = {
            n: g for n, g in self._unknown_since.items() if n in unknown or n in elsewhere
        }
        queries.set_run_fingerprints(conn, stamp)
        result.unknown_dags = unknown
        # Runs of DAGs that do not load wait for a fix; they do not keep --until-idle busy.
        result.running_runs = len(active)
        states = queries.task_run_states(conn, [r.id for r in active])
        new: list[tuple[int, NewTaskRun]] = []
        for run in active:
            try:
                plan = plan_run(self._dags[run.dag_name], states[run.id], now)
            except Exception:  # a bug in one DAG's plan never stops the others
                log.exception("run %d of %s: cannot plan it", run.id, run.dag_name)
                continue
            new.extend((run.id, task) for task in plan.create)
            if plan.finish is not None:
                finished.append((run.id, plan.finish, plan.message))
                log.info(
                    "run %d of %s %s%s",
                    run.id,
                    run.dag_name,
                    plan.finish.value,
                    f": {plan.message}" if plan.message else "",
                )
        result.created_task_runs = queries.insert_task_runs(conn, new, now)
        queries.finish_runs(conn, finished, now)
        result.ended_runs = len(finished)

    def _live_copies(self, conn: Connection, now: datetime) -> LiveCopies:
        """The DAG copies of the other live schedulers (read once a pass, when needed)."""
        if self._live is None:
            self._live = queries.live_copies(conn, self.scheduler_id, now - self.removed_grace)
        return self._live

    def _resolve_input_waits(self, conn: Connection, now: datetime, result: PassResult) -> bool:
        """Let task runs whose inputs on other DAGs have come start, and fail those
        whose ``input_timeout`` passed first; whether any wait was found. Three
        statements at most, however many waits: lock the waits, check every window
        at once, write what changed."""
        waits = queries.lock_input_waits(conn, self._claimable)
        if not waits:
            return False
        windows = input_windows(waits, self._dags)
        needed = {window for found in windows.values() for window in found.values()}
        satisfied = queries.satisfied_windows(conn, needed)
        plan = settle_waits(waits, windows, satisfied, self._dags, now)
        queries.update_input_waits(conn, plan.updates, now)
        result.next_input_deadline = plan.next_deadline
        for update in plan.updates:
            if update.error is not None:
                result.inputs_timed_out += 1
                log.warning("task run %d failed: %s", update.task_run_id, update.error)
            elif not update.waiting_for:
                result.inputs_ready += 1
        if result.inputs_ready:
            # Another scheduler, asleep, may have the capacity to start them.
            queries.notify_work(conn)
        return True

    def _not_yet_started(
        self, conn: Connection, runs: Sequence[queries.DagRunRow], now: datetime
    ) -> list[queries.DagRunRow]:
        """The ``runs`` (of DAGs no live scheduler knows) that a copy of their DAG
        created within ``--removed-grace`` and no scheduler has advanced yet: a new
        version's ``trigger`` may come before any scheduler of that version has
        passed, so such a run is not failed as removed until the grace has passed."""
        young = [
            r for r in runs if r.fingerprint is not None and r.created_at > now - self.removed_grace
        ]
        if not young:
            return []
        states = queries.task_run_states(conn, [r.id for r in young])
        return [r for r in young if not states[r.id]]

    def _is_gone(self, run: queries.DagRunRow) -> bool:
        """Whether a run's DAG, absent from the registry, is really gone: the folder
        was read after the run was created, or again since a pass first met the run.
        Otherwise the DAG may have been added (and triggered) since the last read."""
        if run.created_at < self.registry.scanned_at:
            return True
        first = self._unknown_since.setdefault(run.dag_name, self.registry.generation)
        return self.registry.generation > first

    def _claim(self, conn: Connection, now: datetime) -> list[queries.Claim]:
        limit = self.manager.capacity()
        if limit <= 0:
            return []
        if self.manager.global_limit is not None:
            queries.lock_manager(conn, self.manager.name)
            limit = min(
                limit, self.manager.global_limit - queries.count_running(conn, self.manager.name)
            )
        host = self.manager.fixed_host()
        claims = queries.claim_waiting(
            conn, self.manager.name, self._claimable, limit, now, now + self.lease, host
        )
        if host is None:
            hosts = {
                c.task_run_id: self.manager.host_for(
                    c.task_run_id, c.attempt, c.dag_name, c.task_name
                )
                for c in claims
            }
            queries.set_hosts(conn, hosts)
        return claims

    def _launch(
        self, conn: Connection, claims: Sequence[queries.Claim], result: PassResult
    ) -> None:
        failures: list[Outcome] = []
        for claim in claims:
            try:
                dag = self._dags[claim.dag_name]
                task = dag.task(claim.task_name)
                launch = Launch(
                    task_run_id=claim.task_run_id,
                    dag_run_id=claim.dag_run_id,
                    attempt=claim.attempt,
                    dag=dag,
                    task=task,
                    config=self.config,
                    parameters=claim.parameters,
                    worker_config=self.registry.worker_config_for(dag, task),
                )
                self.manager.start(launch)
            except Exception as exc:
                log.error(
                    "cannot start %s/%s (task run %d): %s",
                    claim.dag_name,
                    claim.task_name,
                    claim.task_run_id,
                    exc,
                )
                failures.append(
                    Outcome(claim.task_run_id, succeeded=False, error=f"launch failed: {exc}")
                )
            else:
                result.started.append(claim.task_run_id)
                log.info(
                    "started %s/%s attempt %d (task run %d)",
                    claim.dag_name,
                    claim.task_name,
                    claim.attempt,
                    claim.task_run_id,
                )
        if failures:
            result.failed_launches = len(failures)
            self._unrecorded.extend(failures)
            with conn.begin():
                self._record(conn, self.clock(), ())
            self._unrecorded.clear()
