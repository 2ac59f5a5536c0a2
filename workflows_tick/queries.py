"""Every SQL statement of workflows-tick.

Functions take a Connection and never commit: the caller owns the transaction.
They return small frozen dataclasses, never ORM objects. Batches use arrays and
``unnest`` so that a pass issues a fixed number of statements however many DAGs
or task runs it touches.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from workflows_tick.cron import DEFAULT_DST, DstPolicy
from workflows_tick.logs import redact
from workflows_tick.managers.base import Outcome, RunningTaskRun
from workflows_tick.model import DstGap, DstRepeat
from workflows_tick.plan import (
    Cursor,
    InputWait,
    InputWindow,
    LiveCopies,
    NewTaskRun,
    TaskRunState,
    WaitUpdate,
)
from workflows_tick.states import RunStatus, TaskStatus, Trigger


@dataclass(frozen=True)
class DagRunRow:
    id: int
    dag_name: str
    status: RunStatus
    trigger: Trigger
    scheduled_for: datetime | None
    creator: str | None
    parameters: dict[str, str]
    created_at: datetime
    ended_at: datetime | None
    message: str | None
    fingerprint: str | None = None
    """The DAG copy that created (or adopted) the run; None: no particular copy."""


@dataclass(frozen=True)
class TaskRunRow:
    id: int
    dag_run_id: int
    task_name: str
    attempt: int
    status: TaskStatus
    manager: str | None
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    host: str | None
    exit_code: int | None
    error: str | None
    waiting_for: tuple[str, ...] | None = None
    """The inputs on other DAGs (``dag:task``) it waits for, or waited for when it
    failed for want of them; None: none."""


@dataclass(frozen=True)
class Claim:
    task_run_id: int
    dag_run_id: int
    dag_name: str
    task_name: str
    attempt: int
    parameters: dict[str, str]


_RUN_COLUMNS = (
    "id, dag_name, status, trigger, scheduled_for, creator, parameters, created_at, ended_at, "
    "message, fingerprint"
)
_TASK_COLUMNS = (
    "id, dag_run_id, task_name, attempt, status, manager, created_at, started_at, ended_at, "
    "host, exit_code, error, waiting_for"
)


def _run_row(row: Any) -> DagRunRow:
    return DagRunRow(
        id=row.id,
        dag_name=row.dag_name,
        status=RunStatus(row.status),
        trigger=Trigger(row.trigger),
        scheduled_for=row.scheduled_for,
        creator=row.creator,
        parameters=dict(row.parameters or {}),
        created_at=row.created_at,
        ended_at=row.ended_at,
        message=row.message,
        fingerprint=row.fingerprint,
    )


def _task_row(row: Any) -> TaskRunRow:
    return TaskRunRow(
        id=row.id,
        dag_run_id=row.dag_run_id,
        task_name=row.task_name,
        attempt=row.attempt,
        status=TaskStatus(row.status),
        manager=row.manager,
        created_at=row.created_at,
        started_at=row.started_at,
        ended_at=row.ended_at,
        host=row.host,
        exit_code=row.exit_code,
        error=row.error,
        waiting_for=None if row.waiting_for is None else tuple(row.waiting_for),
    )


# --- task runs under a manager ------------------------------------------------------


def running_task_runs(conn: Connection, manager: str) -> list[RunningTaskRun]:
    rows = conn.execute(
        text(
            "SELECT t.id, t.dag_run_id, r.dag_name, t.task_name, t.attempt, t.host, "
            "t.started_at, t.lease_expires_at, r.status = 'cancelled' AS cancelled "
            "FROM task_run t JOIN dag_run r ON r.id = t.dag_run_id "
            "WHERE t.status = 'running' AND t.manager = :manager ORDER BY t.id"
        ),
        {"manager": manager},
    )
    return [
        RunningTaskRun(
            id=r.id,
            dag_run_id=r.dag_run_id,
            dag_name=r.dag_name,
            task_name=r.task_name,
            attempt=r.attempt,
            host=r.host,
            started_at=r.started_at,
            lease_expires_at=r.lease_expires_at,
            cancelled=r.cancelled,
        )
        for r in rows
    ]


_ENDED_STATUS = (
    "CASE WHEN v.status = 'succeeded' THEN 'succeeded' "
    "WHEN r.status = 'cancelled' THEN 'cancelled' ELSE v.status END"
)
"""How an attempt ends: a success always stands; any other end of an attempt of a
cancelled run is ``cancelled`` (never failed, so never retried)."""


def record_outcomes(conn: Connection, outcomes: Sequence[Outcome], now: datetime) -> int:
    """Finish the running task runs in ``outcomes``; rows no longer running are left alone.

    A terminal status is never overwritten: only rows still ``running`` change.
    """
    if not outcomes:
        return 0
    result = conn.execute(
        text(
            f"UPDATE task_run t SET status = {_ENDED_STATUS}, ended_at = :now, "
            "exit_code = v.exit_code, error = v.error, "
            "output_tail = COALESCE(v.tail, t.output_tail), lease_expires_at = NULL "
            "FROM unnest(CAST(:ids AS bigint[]), CAST(:statuses AS text[]), "
            "CAST(:codes AS integer[]), CAST(:errors AS text[]), CAST(:tails AS text[])) "
            "AS v(id, status, exit_code, error, tail), dag_run r "
            "WHERE t.id = v.id AND t.status = 'running' AND r.id = t.dag_run_id"
        ),
        {
            "now": now,
            "ids": [o.task_run_id for o in outcomes],
            "statuses": [
                TaskStatus.SUCCEEDED.value if o.succeeded else TaskStatus.FAILED.value
                for o in outcomes
            ],
            "codes": [o.exit_code for o in outcomes],
            "errors": [_short(o.error) for o in outcomes],
            "tails": [_text(o.output_tail) for o in outcomes],
        },
    )
    return result.rowcount


def _text(value: str | None) -> str | None:
    """Task output and errors as stored: passwords and registered secrets masked,
    NUL replaced (PostgreSQL text cannot hold it: one bad byte must not poison
    every pass)."""
    return None if value is None else redact(value.replace("\x00", "\ufffd"))


def _short(message: str | None, limit: int = 2000) -> str | None:
    message = _text(message)
    if message is None or len(message) <= limit:
        return message
    return message[: limit - 3] + "..."


def renew_leases(conn: Connection, task_run_ids: Sequence[int], until: datetime) -> None:
    if task_run_ids:
        conn.execute(
            text(
                "UPDATE task_run SET lease_expires_at = :until "
                "WHERE id = ANY(CAST(:ids AS bigint[])) AND status = 'running'"
            ),
            {"ids": list(task_run_ids), "until": until},
        )


def expire_leases(conn: Connection, now: datetime) -> list[int]:
    """End running task runs whose lease ran out (their scheduler died); their ids.

    They are failed (and so retried), or ``cancelled`` when their run was cancelled.
    """
    rows = conn.execute(
        text(
            "UPDATE task_run t SET status = CASE WHEN r.status = 'cancelled' THEN 'cancelled' "
            "ELSE 'failed' END, ended_at = :now, "
            "error = 'lease expired: ' || COALESCE(t.host, 'its scheduler') "
            "|| ' stopped reporting on it (crashed or lost)', lease_expires_at = NULL "
            "FROM dag_run r WHERE t.status = 'running' AND t.lease_expires_at < :now "
            "AND r.id = t.dag_run_id RETURNING t.id"
        ),
        {"now": now},
    )
    return [r.id for r in rows]


# --- schedules ------------------------------------------------------------------------


_GAPS = {g.value: g for g in DstGap}
_REPEATS = {r.value: r for r in DstRepeat}


def _dst_policy(gap: str | None, repeat: str | None) -> DstPolicy:
    """The DST policy stored in a cursor row (a value this version does not know reads
    as unset, so the cursor differs from any DAG that chose it and is reset)."""
    if gap is None and repeat is None:
        return DEFAULT_DST  # most cursors: one shared value, read every idle pass
    return DstPolicy(_GAPS.get(gap or ""), _REPEATS.get(repeat or ""))


def schedule_cursors(conn: Connection) -> dict[str, Cursor]:
    rows = conn.execute(
        text(
            "SELECT dag_name, schedule, timezone, next_fire_at, dst_gap, dst_repeat, fingerprint "
            "FROM dag_schedule"
        )
    )
    # Every idle pass reads every cursor: unpack each row (cheaper than its
    # attributes, which add up at hundreds of DAGs).
    return {
        name: Cursor(name, schedule, zone, fire, dst=_dst_policy(gap, repeat), fingerprint=fp)
        for name, schedule, zone, fire, gap, repeat, fp in rows
    }


def upsert_cursors(
    conn: Connection,
    cursors: Sequence[Cursor],
    now: datetime,
    expected: Mapping[str, str | None] | None = None,
) -> None:
    """Create cursors, or overwrite existing ones (schedule, time zone, DST policy,
    next fire time and fingerprint) whose fingerprint is still the one in
    ``expected`` (None when absent): a cursor another scheduler took over since it
    was read is left as it is."""
    if not cursors:
        return
    expected = expected or {}
    conn.execute(
        text(
            "INSERT INTO dag_schedule (dag_name, schedule, timezone, next_fire_at, dst_gap, "
            "dst_repeat, fingerprint, updated_at) "
            "SELECT v.name, v.schedule, v.zone, v.fire, v.gap, v.repeat, v.fingerprint, :now "
            "FROM unnest(CAST(:names AS text[]), CAST(:schedules AS text[]), "
            "CAST(:zones AS text[]), CAST(:fires AS timestamptz[]), CAST(:gaps AS text[]), "
            "CAST(:repeats AS text[]), CAST(:fps AS text[])) "
            "AS v(name, schedule, zone, fire, gap, repeat, fingerprint) "
            "ON CONFLICT (dag_name) DO UPDATE SET schedule = excluded.schedule, "
            "timezone = excluded.timezone, next_fire_at = excluded.next_fire_at, "
            "dst_gap = excluded.dst_gap, dst_repeat = excluded.dst_repeat, "
            "fingerprint = excluded.fingerprint, updated_at = :now "
            "WHERE dag_schedule.fingerprint IS NOT DISTINCT FROM ("
            "SELECT e.expected FROM unnest(CAST(:names AS text[]), CAST(:expected AS text[])) "
            "AS e(name, expected) WHERE e.name = dag_schedule.dag_name)"
        ),
        {
            "now": now,
            "names": [c.dag_name for c in cursors],
            "schedules": [c.schedule for c in cursors],
            "zones": [c.timezone for c in cursors],
            "fires": [c.next_fire_at for c in cursors],
            "gaps": [c.dst.gap and c.dst.gap.value for c in cursors],
            "repeats": [c.dst.repeat and c.dst.repeat.value for c in cursors],
            "fps": [c.fingerprint for c in cursors],
            "expected": [expected.get(c.dag_name) for c in cursors],
        },
    )


def delete_cursors(
    conn: Connection, dag_names: Sequence[str], expected: Mapping[str, str | None] | None = None
) -> None:
    """Delete cursors whose fingerprint is still the one in ``expected`` (None when absent)."""
    if dag_names:
        expected = expected or {}
        conn.execute(
            text(
                "DELETE FROM dag_schedule s USING unnest(CAST(:names AS text[]), "
                "CAST(:expected AS text[])) AS v(name, expected) "
                "WHERE s.dag_name = v.name AND s.fingerprint IS NOT DISTINCT FROM v.expected"
            ),
            {"names": list(dag_names), "expected": [expected.get(n) for n in dag_names]},
        )


def lock_due_cursors(
    conn: Connection, fingerprints: Mapping[str, str], now: datetime
) -> list[Cursor]:
    """The due cursors of the DAGs of ``fingerprints`` (name: this scheduler's copy)
    that this copy may fire (set by it, or by no particular copy), locked; ones
    locked elsewhere are skipped.

    Each carries the ids of its DAG's runs that have not ended (``running``), read
    once the locks are held: a run another scheduler created for the same cursor
    committed before its lock was released, so it is seen (the statement that
    locks reads with a snapshot taken before it waited, hence a second statement,
    issued only when a cursor is due).
    """
    rows = conn.execute(
        text(
            "SELECT s.dag_name, s.schedule, s.timezone, s.next_fire_at, s.dst_gap, "
            "s.dst_repeat, s.fingerprint, EXISTS ("
            "SELECT 1 FROM dag_state p WHERE p.dag_name = s.dag_name AND p.paused) AS paused "
            "FROM dag_schedule s JOIN unnest(CAST(:names AS text[]), CAST(:fps AS text[])) "
            "AS v(name, fingerprint) ON s.dag_name = v.name "
            "WHERE s.next_fire_at <= :now "
            "AND (s.fingerprint IS NULL OR s.fingerprint = v.fingerprint) "
            "ORDER BY s.dag_name FOR UPDATE OF s SKIP LOCKED"
        ),
        {"names": list(fingerprints), "fps": list(fingerprints.values()), "now": now},
    ).all()
    if not rows:
        return []
    running = {
        r.dag_name: tuple(r.ids)
        for r in conn.execute(
            text(
                "SELECT n.name AS dag_name, ARRAY(SELECT r.id FROM dag_run r "
                "WHERE r.dag_name = n.name AND r.status = 'running' ORDER BY r.id) AS ids "
                "FROM unnest(CAST(:names AS text[])) AS n(name)"
            ),
            {"names": [r.dag_name for r in rows]},
        )
    }
    return [
        Cursor(
            r.dag_name,
            r.schedule,
            r.timezone,
            r.next_fire_at,
            r.paused,
            running[r.dag_name],
            dst=_dst_policy(r.dst_gap, r.dst_repeat),
            fingerprint=r.fingerprint,
        )
        for r in rows
    ]


def advance_cursors(conn: Connection, cursors: Sequence[Cursor], now: datetime) -> None:
    """Move locked cursors to their next fire times, with the DST policy each was
    computed with."""
    if cursors:
        conn.execute(
            text(
                "UPDATE dag_schedule s SET next_fire_at = v.fire, dst_gap = v.gap, "
                "dst_repeat = v.repeat, updated_at = :now "
                "FROM unnest(CAST(:names AS text[]), CAST(:fires AS timestamptz[]), "
                "CAST(:gaps AS text[]), CAST(:repeats AS text[])) AS v(name, fire, gap, repeat) "
                "WHERE s.dag_name = v.name"
            ),
            {
                "now": now,
                "names": [c.dag_name for c in cursors],
                "fires": [c.next_fire_at for c in cursors],
                "gaps": [c.dst.gap and c.dst.gap.value for c in cursors],
                "repeats": [c.dst.repeat and c.dst.repeat.value for c in cursors],
            },
        )


def insert_scheduled_runs(
    conn: Connection,
    runs: Sequence[tuple[str, datetime]],
    now: datetime,
    fingerprints: Mapping[str, str] | None = None,
) -> list[DagRunRow]:
    """Create scheduled runs, each with its DAG's fingerprint in ``fingerprints`` (the
    firing copy); one that exists for the same (DAG, time) is not duplicated."""
    if not runs:
        return []
    fingerprints = fingerprints or {}
    rows = conn.execute(
        text(
            "INSERT INTO dag_run (dag_name, status, trigger, scheduled_for, creator, parameters, "
            "created_at, fingerprint) SELECT v.name, 'running', 'schedule', v.fire, 'scheduler', "
            "'{}', :now, v.fp FROM unnest(CAST(:names AS text[]), CAST(:fires AS timestamptz[]), "
            "CAST(:fps AS text[])) AS v(name, fire, fp) "
            f"ON CONFLICT (dag_name, scheduled_for) DO NOTHING RETURNING {_RUN_COLUMNS}"
        ),
        {
            "now": now,
            "names": [r[0] for r in runs],
            "fires": [r[1] for r in runs],
            "fps": [fingerprints.get(r[0]) for r in runs],
        },
    )
    return [_run_row(r) for r in rows]


def insert_skipped_runs(
    conn: Connection, fires: Sequence[tuple[str, datetime, str]], now: datetime
) -> list[DagRunRow]:
    """Record scheduled fires passed by ``overlap: skip`` as runs ended ``skipped``
    (DAG, fire time, message); a time that has a run already is left alone."""
    if not fires:
        return []
    rows = conn.execute(
        text(
            "INSERT INTO dag_run (dag_name, status, trigger, scheduled_for, creator, parameters, "
            "created_at, ended_at, message) SELECT v.name, 'skipped', 'schedule', v.fire, "
            "'scheduler', '{}', :now, :now, v.message FROM unnest(CAST(:names AS text[]), "
            "CAST(:fires AS timestamptz[]), CAST(:messages AS text[])) AS v(name, fire, message) "
            f"ON CONFLICT (dag_name, scheduled_for) DO NOTHING RETURNING {_RUN_COLUMNS}"
        ),
        {
            "now": now,
            "names": [f[0] for f in fires],
            "fires": [f[1] for f in fires],
            "messages": [f[2] for f in fires],
        },
    )
    return [_run_row(r) for r in rows]


def insert_manual_run(
    conn: Connection,
    dag_name: str,
    creator: str,
    parameters: Mapping[str, str],
    now: datetime,
    fingerprint: str | None = None,
) -> DagRunRow:
    row = conn.execute(
        text(
            "INSERT INTO dag_run (dag_name, status, trigger, creator, parameters, created_at, "
            "fingerprint) VALUES (:dag, 'running', 'manual', :creator, "
            f"CAST(:parameters AS jsonb), :now, :fingerprint) RETURNING {_RUN_COLUMNS}"
        ),
        {
            "dag": dag_name,
            "creator": creator,
            "parameters": json.dumps(dict(parameters)),
            "now": now,
            "fingerprint": fingerprint,
        },
    ).one()
    return _run_row(row)


# --- waking schedulers --------------------------------------------------------------

WORK_CHANNEL = "workflows_work"
"""The PostgreSQL ``LISTEN``/``NOTIFY`` channel that wakes sleeping schedulers."""


def notify_work(conn: Connection) -> None:
    """Wake every scheduler sleeping on this database once the transaction commits.

    Call it in the transaction that creates or changes work (a trigger, a rerun...):
    PostgreSQL delivers the notification on commit and drops it on rollback. A lost
    notification only costs latency: schedulers still pass every ``--interval``.
    """
    conn.execute(text("SELECT pg_notify(:channel, '')"), {"channel": WORK_CHANNEL})


def listen_for_work(conn: Connection) -> None:
    """Subscribe ``conn`` (in autocommit mode) to :func:`notify_work`'s notifications."""
    conn.execute(text(f"LISTEN {WORK_CHANNEL}"))


# --- advancing runs -----------------------------------------------------------------


def lock_earliest_runs(conn: Connection) -> list[DagRunRow]:
    """The earliest running run of each DAG, locked; runs another scheduler holds are skipped."""
    rows = conn.execute(
        text(
            f"SELECT {_RUN_COLUMNS} FROM dag_run WHERE id IN ("
            "SELECT DISTINCT ON (dag_name) id FROM dag_run WHERE status = 'running' "
            "ORDER BY dag_name, id) AND status = 'running' ORDER BY id FOR UPDATE SKIP LOCKED"
        )
    )
    return [_run_row(r) for r in rows]


def set_run_fingerprints(conn: Connection, fingerprints: Mapping[int, str]) -> None:
    """Record which DAG copy advances each run (run id: fingerprint); the runs are
    locked by the caller."""
    if fingerprints:
        conn.execute(
            text(
                "UPDATE dag_run r SET fingerprint = v.fp FROM unnest(CAST(:ids AS bigint[]), "
                "CAST(:fps AS text[])) AS v(id, fp) WHERE r.id = v.id"
            ),
            {"ids": list(fingerprints), "fps": list(fingerprints.values())},
        )


def task_run_states(conn: Connection, dag_run_ids: Sequence[int]) -> dict[int, list[TaskRunState]]:
    states: dict[int, list[TaskRunState]] = {i: [] for i in dag_run_ids}
    if dag_run_ids:
        rows = conn.execute(
            text(
                "SELECT dag_run_id, task_name, attempt, status, superseded, "
                "waiting_for IS NOT NULL AS waited FROM task_run "
                "WHERE dag_run_id = ANY(CAST(:ids AS bigint[]))"
            ),
            {"ids": list(dag_run_ids)},
        )
        for r in rows:
            states[r.dag_run_id].append(
                TaskRunState(r.task_name, r.attempt, TaskStatus(r.status), r.superseded, r.waited)
            )
    return states


def insert_task_runs(conn: Connection, new: Sequence[tuple[int, NewTaskRun]], now: datetime) -> int:
    """Create waiting task runs; an existing (run, task, attempt) is not duplicated.

    A task run with inputs on other DAGs gets them in ``waiting_for`` in the same
    statement, so no scheduler can ever see it startable before they are there.
    """
    if not new:
        return 0
    result = conn.execute(
        text(
            "INSERT INTO task_run (dag_run_id, task_name, attempt, status, created_at, "
            "not_before, waiting_for) "
            f"SELECT v.run, v.task, v.attempt, 'waiting', :now, v.not_before, {_array_of('v.waits')} "
            "FROM unnest(CAST(:runs AS bigint[]), CAST(:tasks AS text[]), "
            "CAST(:attempts AS integer[]), CAST(:not_befores AS timestamptz[]), "
            "CAST(:waits AS text[])) AS v(run, task, attempt, not_before, waits) "
            "ON CONFLICT (dag_run_id, task_name, attempt) DO NOTHING"
        ),
        {
            "now": now,
            "runs": [run_id for run_id, _ in new],
            "tasks": [t.task_name for _, t in new],
            "attempts": [t.attempt for _, t in new],
            "not_befores": [t.not_before for _, t in new],
            "waits": [json.dumps(t.waiting_for) if t.waiting_for else None for _, t in new],
        },
    )
    return result.rowcount


def _array_of(column: str) -> str:
    """SQL for the ``text[]`` a JSON list of strings in ``column`` holds, in order;
    NULL for NULL or an empty list (unnest cannot carry arrays of varying length)."""
    return (
        "(SELECT array_agg(w.e ORDER BY w.n) FROM "
        f"jsonb_array_elements_text(CAST({column} AS jsonb)) WITH ORDINALITY AS w(e, n))"
    )


def finish_runs(
    conn: Connection, finished: Sequence[tuple[int, RunStatus, str | None]], now: datetime
) -> None:
    """End runs; a run's waiting task runs end with it (they can no longer start)."""
    if not finished:
        return
    params = {
        "now": now,
        "ids": [f[0] for f in finished],
        "statuses": [f[1].value for f in finished],
        "messages": [f[2] for f in finished],
    }
    conn.execute(
        text(
            "UPDATE dag_run r SET status = v.status, ended_at = :now, message = v.message "
            "FROM unnest(CAST(:ids AS bigint[]), CAST(:statuses AS text[]), "
            "CAST(:messages AS text[])) AS v(id, status, message) "
            "WHERE r.id = v.id AND r.status = 'running'"
        ),
        params,
    )
    conn.execute(
        text(
            "UPDATE task_run SET status = 'failed', ended_at = :now, "
            "error = 'not started: its run ended' "
            "WHERE dag_run_id = ANY(CAST(:ids AS bigint[])) AND status = 'waiting'"
        ),
        {"now": now, "ids": params["ids"]},
    )


# --- inputs on other DAGs ---------------------------------------------------------------


def lock_input_waits(conn: Connection, copies: LoadedCopies) -> list[InputWait]:
    """The waiting task runs of running runs that wait for inputs on other DAGs,
    locked, of the runs this scheduler's copies (``copies``) advance (as
    :func:`claim_waiting`); rows another scheduler holds are skipped. One probe of
    the partial index ``ix_task_run_waiting_for`` when none waits."""
    rows = conn.execute(
        text(
            "SELECT t.id, r.dag_name, t.task_name, COALESCE(r.scheduled_for, r.created_at) "
            "AS anchor, t.created_at, t.waiting_for FROM task_run t "
            "JOIN dag_run r ON r.id = t.dag_run_id "
            "WHERE t.status = 'waiting' AND t.waiting_for IS NOT NULL AND r.status = 'running' "
            "AND r.dag_name || ':' || r.fingerprint = ANY(CAST(:copies AS text[])) "
            "ORDER BY t.id FOR UPDATE OF t SKIP LOCKED"
        ),
        {"copies": copies.keys},
    )
    return [
        InputWait(r.id, r.dag_name, r.task_name, r.anchor, r.created_at, tuple(r.waiting_for))
        for r in rows
    ]


_SUCCEEDED_IN = (
    "SELECT 1 FROM dag_run x JOIN task_run u ON u.dag_run_id = x.id AND u.task_name = v.task "
    "WHERE x.dag_name = v.dag AND u.status = 'succeeded' AND NOT u.superseded"
)
"""A current attempt of window ``v``'s task succeeded in a run ``x`` of its DAG (the
caller adds the window's condition on ``x``)."""


def satisfied_windows(conn: Connection, windows: Collection[InputWindow]) -> set[InputWindow]:
    """The windows in which the task succeeded in some run: its current (not
    superseded) attempt succeeded in a run of the DAG anchored in the window."""
    if not windows:
        return set()
    ordered = list(windows)
    rows = conn.execute(
        text(
            "SELECT v.i FROM unnest(CAST(:dags AS text[]), CAST(:tasks AS text[]), "
            "CAST(:earliest AS timestamptz[]), CAST(:latest AS timestamptz[])) "
            "WITH ORDINALITY AS v(dag, task, earliest, latest, i) "
            # Scheduled and backfill runs: a range of the (dag_name, scheduled_for) index.
            f"WHERE EXISTS ({_SUCCEEDED_IN} AND x.scheduled_for "
            "BETWEEN COALESCE(v.earliest, '-infinity') AND v.latest) "
            # Manual runs: their creation time.
            f"OR EXISTS ({_SUCCEEDED_IN} AND x.scheduled_for IS NULL "
            "AND x.created_at BETWEEN COALESCE(v.earliest, '-infinity') AND v.latest)"
        ),
        {
            "dags": [w.dag_name for w in ordered],
            "tasks": [w.task_name for w in ordered],
            "earliest": [w.earliest for w in ordered],
            "latest": [w.latest for w in ordered],
        },
    )
    return {ordered[r.i - 1] for r in rows}


def update_input_waits(conn: Connection, updates: Sequence[WaitUpdate], now: datetime) -> int:
    """Write what became of waits: a wait with nothing left may start (``waiting_for``
    NULL); one with an error fails, keeping what it still waited for (so it is not
    retried). Only rows still waiting change; the number changed."""
    if not updates:
        return 0
    result = conn.execute(
        text(
            f"UPDATE task_run t SET waiting_for = {_array_of('v.waits')}, "
            "status = CASE WHEN v.error IS NULL THEN t.status ELSE 'failed' END, "
            "ended_at = CASE WHEN v.error IS NULL THEN t.ended_at ELSE :now END, "
            "error = COALESCE(v.error, t.error) "
            "FROM unnest(CAST(:ids AS bigint[]), CAST(:waits AS text[]), "
            "CAST(:errors AS text[])) AS v(id, waits, error) "
            "WHERE t.id = v.id AND t.status = 'waiting'"
        ),
        {
            "now": now,
            "ids": [u.task_run_id for u in updates],
            "waits": [json.dumps(u.waiting_for) for u in updates],
            "errors": [_short(u.error) for u in updates],
        },
    )
    return result.rowcount


# --- claiming -------------------------------------------------------------------------


def lock_manager(conn: Connection, manager: str) -> None:
    """Serialize claims of one manager across schedulers (for a global cap)."""
    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"claim:{manager}"})


def count_running(conn: Connection, manager: str) -> int:
    return int(
        conn.execute(
            text("SELECT count(*) FROM task_run WHERE status = 'running' AND manager = :manager"),
            {"manager": manager},
        ).scalar_one()
    )


def text_array(values: Iterable[str]) -> str:
    """A PostgreSQL ``text[]`` literal of ``values``, to send as one parameter: a
    Python list is sent as ``ARRAY[...]`` with one constant per value for the
    server to parse and plan, which costs more than the query itself at 500 values."""
    quoted = (v.replace("\\", "\\\\").replace('"', '\\"') for v in values)
    return "{" + ",".join(f'"{v}"' for v in quoted) + "}"


@dataclass(frozen=True)
class LoadedCopies:
    """The DAG copies a scheduler has loaded, as :func:`claim_waiting` matches them;
    built once per reload (:meth:`of`), not once per pass."""

    keys: str
    """A ``text[]`` literal of ``name:fingerprint`` for each loaded DAG."""

    @classmethod
    def of(cls, fingerprints: Mapping[str, str]) -> LoadedCopies:
        return cls(text_array(f"{name}:{fp}" for name, fp in fingerprints.items()))


def claim_waiting(
    conn: Connection,
    manager: str,
    copies: LoadedCopies,
    limit: int,
    now: datetime,
    lease_until: datetime,
    host: str | None = None,
) -> list[Claim]:
    """Claim the oldest startable waiting task runs and record them as running
    (with ``host`` when given; else :func:`set_hosts` records each one's).

    Startable: its retry delay has passed and it waits for no input on another DAG.
    Only task runs of runs of the loaded DAGs (``copies``) that this scheduler's copy
    created or advances (the pass that advances a run records its copy first): a
    task planned by another copy of the DAG is never started by one that may lack it.

    Rows another scheduler holds are skipped, and the status is checked again
    after the lock, so a task run is never claimed twice.
    """
    if limit <= 0 or copies.keys == "{}":
        return []
    set_host = ", host = :host" if host is not None else ""
    rows = conn.execute(
        text(
            "WITH picked AS ("
            "SELECT t.id FROM task_run t JOIN dag_run r ON r.id = t.dag_run_id "
            "WHERE t.status = 'waiting' AND t.not_before <= :now AND t.waiting_for IS NULL "
            "AND r.status = 'running' "
            "AND r.dag_name || ':' || r.fingerprint = ANY(CAST(:copies AS text[])) "
            "ORDER BY t.id LIMIT :limit FOR UPDATE OF t SKIP LOCKED) "
            "UPDATE task_run t SET status = 'running', manager = :manager, started_at = :now, "
            f"lease_expires_at = :lease_until{set_host} "
            "FROM picked, dag_run r WHERE t.id = picked.id AND r.id = t.dag_run_id "
            "AND t.status = 'waiting' AND t.waiting_for IS NULL "
            "RETURNING t.id, t.dag_run_id, r.dag_name, t.task_name, t.attempt, r.parameters"
        ),
        {
            "now": now,
            "copies": copies.keys,
            "limit": limit,
            "manager": manager,
            "lease_until": lease_until,
            "host": host,
        },
    )
    claims = [
        Claim(r.id, r.dag_run_id, r.dag_name, r.task_name, r.attempt, dict(r.parameters or {}))
        for r in rows
    ]
    return sorted(claims, key=lambda c: c.task_run_id)


def set_hosts(conn: Connection, hosts: Mapping[int, str]) -> None:
    if hosts:
        conn.execute(
            text(
                "UPDATE task_run t SET host = v.host FROM unnest(CAST(:ids AS bigint[]), "
                "CAST(:hosts AS text[])) AS v(id, host) WHERE t.id = v.id"
            ),
            {"ids": list(hosts), "hosts": list(hosts.values())},
        )


# --- reports ------------------------------------------------------------------------


def recent_runs(conn: Connection, dag_name: str | None, limit: int) -> list[DagRunRow]:
    where = "WHERE dag_name = :dag " if dag_name is not None else ""
    rows = conn.execute(
        text(f"SELECT {_RUN_COLUMNS} FROM dag_run {where}ORDER BY id DESC LIMIT :limit"),
        {"dag": dag_name, "limit": limit},
    )
    return [_run_row(r) for r in rows]


def task_runs_of(conn: Connection, dag_run_ids: Sequence[int]) -> list[TaskRunRow]:
    if not dag_run_ids:
        return []
    rows = conn.execute(
        text(
            f"SELECT {_TASK_COLUMNS} FROM task_run WHERE dag_run_id = ANY(CAST(:ids AS bigint[])) "
            "ORDER BY dag_run_id, id"
        ),
        {"ids": list(dag_run_ids)},
    )
    return [_task_row(r) for r in rows]


def task_run_output(conn: Connection, task_run_id: int) -> tuple[TaskRunRow, str | None] | None:
    row = conn.execute(
        text(f"SELECT {_TASK_COLUMNS}, output_tail FROM task_run WHERE id = :id"),
        {"id": task_run_id},
    ).one_or_none()
    if row is None:
        return None
    return _task_row(row), row.output_tail


def has_running_runs(conn: Connection, dag_names: Sequence[str]) -> bool:
    return bool(
        conn.execute(
            text(
                "SELECT EXISTS (SELECT 1 FROM dag_run WHERE status = 'running' "
                "AND dag_name = ANY(CAST(:names AS text[])))"
            ),
            {"names": list(dag_names)},
        ).scalar_one()
    )


def next_retry_at(conn: Connection, now: datetime) -> datetime | None:
    """The earliest ``not_before`` still ahead of ``now`` among waiting task runs."""
    value: datetime | None = conn.execute(
        text("SELECT min(not_before) FROM task_run WHERE status = 'waiting' AND not_before > :now"),
        {"now": now},
    ).scalar_one()
    return value


# --- control: cancel ----------------------------------------------------------------


@dataclass(frozen=True)
class Cancelled:
    run: DagRunRow
    waiting: int
    """Waiting task runs cancelled with the run."""
    running: int
    """Running attempts left for their scheduler's next pass to stop."""


def lock_run(conn: Connection, run_id: int) -> DagRunRow | None:
    """The run, locked until the end of the transaction (waits for a pass holding it)."""
    row = conn.execute(
        text(f"SELECT {_RUN_COLUMNS} FROM dag_run WHERE id = :id FOR UPDATE"), {"id": run_id}
    ).one_or_none()
    return None if row is None else _run_row(row)


def cancel_run(conn: Connection, run_id: int, message: str, now: datetime) -> Cancelled | None:
    """End a running run ``cancelled`` with its waiting task runs; None if it is not running.

    Its running attempts stay ``running`` until the pass of the scheduler that runs
    them has stopped them (then they are recorded ``cancelled``).
    """
    row = conn.execute(
        text(
            "UPDATE dag_run SET status = 'cancelled', ended_at = :now, message = :message "
            f"WHERE id = :id AND status = 'running' RETURNING {_RUN_COLUMNS}"
        ),
        {"id": run_id, "now": now, "message": message},
    ).one_or_none()
    if row is None:
        return None
    waiting = conn.execute(
        text(
            "UPDATE task_run SET status = 'cancelled', ended_at = :now, error = :message "
            "WHERE dag_run_id = :id AND status = 'waiting'"
        ),
        {"id": run_id, "now": now, "message": message},
    ).rowcount
    # A separate statement: it must see a claim that committed while the update waited.
    running = conn.execute(
        text("SELECT count(*) FROM task_run WHERE dag_run_id = :id AND status = 'running'"),
        {"id": run_id},
    ).scalar_one()
    return Cancelled(_run_row(row), waiting, int(running))


# --- scheduler heartbeats ----------------------------------------------------------


def record_heartbeat(
    conn: Connection,
    scheduler_id: str,
    host: str,
    pid: int,
    manager: str,
    pass_at: datetime,
    pass_seconds: float,
    dags: Sequence[str] | None,
    fingerprints: Mapping[str, str] | None = None,
) -> None:
    """Upsert this scheduler's row; ``dags`` (the loaded DAG names) and
    ``fingerprints`` (their copies, by name) None keep the stored values (unchanged)."""
    conn.execute(
        text(
            "INSERT INTO scheduler_heartbeat (id, host, pid, manager, started_at, last_pass_at, "
            "last_pass_seconds, dags, fingerprints) VALUES (:id, :host, :pid, :manager, :at, :at, "
            ":seconds, COALESCE(CAST(:dags AS text[]), '{}'), "
            "COALESCE(CAST(:fps AS jsonb), '{}')) ON CONFLICT (id) DO UPDATE SET "
            "last_pass_at = excluded.last_pass_at, last_pass_seconds = excluded.last_pass_seconds, "
            "dags = COALESCE(CAST(:dags AS text[]), scheduler_heartbeat.dags), "
            "fingerprints = COALESCE(CAST(:fps AS jsonb), scheduler_heartbeat.fingerprints), "
            "stopped_at = NULL"
        ),
        {
            "id": scheduler_id,
            "host": host,
            "pid": pid,
            "manager": manager,
            "at": pass_at,
            "seconds": pass_seconds,
            "dags": None if dags is None else list(dags),
            "fps": None if fingerprints is None else json.dumps(dict(fingerprints)),
        },
    )


def live_copies(conn: Connection, scheduler_id: str, since: datetime) -> LiveCopies:
    """The DAG copies of the live schedulers other than ``scheduler_id``: not stopped,
    and a pass at or after ``since``."""
    rows = conn.execute(
        text(
            "SELECT dags, fingerprints FROM scheduler_heartbeat "
            "WHERE id <> :id AND stopped_at IS NULL AND last_pass_at >= :since"
        ),
        {"id": scheduler_id, "since": since},
    )
    copies: dict[str, set[str]] = {}
    for r in rows:
        for name in r.dags:
            copies.setdefault(name, set())
        for name, fingerprint in (r.fingerprints or {}).items():
            copies.setdefault(name, set()).add(fingerprint)
    return LiveCopies({name: frozenset(fps) for name, fps in copies.items()})


def mark_scheduler_stopped(conn: Connection, scheduler_id: str, now: datetime) -> None:
    conn.execute(
        text("UPDATE scheduler_heartbeat SET stopped_at = :now WHERE id = :id"),
        {"id": scheduler_id, "now": now},
    )


# --- control: pause -------------------------------------------------------------------


def set_paused(conn: Connection, dag_name: str, paused: bool, by: str, now: datetime) -> bool:
    """Pause or unpause a DAG; whether it was paused before (the row locked until commit)."""
    before = conn.execute(
        text("SELECT paused FROM dag_state WHERE dag_name = :dag FOR UPDATE"), {"dag": dag_name}
    ).scalar_one_or_none()
    conn.execute(
        text(
            "INSERT INTO dag_state (dag_name, paused, paused_at, paused_by, updated_at) "
            "VALUES (:dag, :paused, CASE WHEN :paused THEN CAST(:now AS timestamptz) END, "
            "CASE WHEN :paused THEN :by END, :now) "
            "ON CONFLICT (dag_name) DO UPDATE SET paused = excluded.paused, "
            "paused_at = CASE WHEN dag_state.paused AND excluded.paused THEN dag_state.paused_at "
            "ELSE excluded.paused_at END, "
            "paused_by = CASE WHEN dag_state.paused AND excluded.paused THEN dag_state.paused_by "
            "ELSE excluded.paused_by END, updated_at = excluded.updated_at"
        ),
        {"dag": dag_name, "paused": paused, "by": by, "now": now},
    )
    return bool(before)


@dataclass(frozen=True)
class PausedDag:
    dag_name: str
    paused_at: datetime | None
    paused_by: str | None


def paused_dags(conn: Connection) -> list[PausedDag]:
    rows = conn.execute(
        text("SELECT dag_name, paused_at, paused_by FROM dag_state WHERE paused ORDER BY dag_name")
    )
    return [PausedDag(r.dag_name, r.paused_at, r.paused_by) for r in rows]


def lock_cursor(conn: Connection, dag_name: str) -> Cursor | None:
    row = conn.execute(
        text(
            "SELECT dag_name, schedule, timezone, next_fire_at, dst_gap, dst_repeat "
            "FROM dag_schedule WHERE dag_name = :dag FOR UPDATE"
        ),
        {"dag": dag_name},
    ).one_or_none()
    if row is None:
        return None
    dst = _dst_policy(row.dst_gap, row.dst_repeat)
    return Cursor(row.dag_name, row.schedule, row.timezone, row.next_fire_at, dst=dst)


# --- control: rerun -------------------------------------------------------------------


def rerun_run(
    conn: Connection,
    run_id: int,
    task_names: Sequence[str],
    message: str,
    now: datetime,
    fingerprint: str | None = None,
) -> int:
    """Supersede the current attempts of ``task_names`` and set the ended run running
    again, created anew by the DAG copy ``fingerprint`` (None: no particular copy),
    so that the next pass gives them new attempts; how many were superseded."""
    superseded = conn.execute(
        text(
            "UPDATE task_run SET superseded = true WHERE dag_run_id = :id "
            "AND task_name = ANY(CAST(:names AS text[])) AND NOT superseded "
            "AND status IN ('succeeded', 'failed', 'cancelled')"
        ),
        {"id": run_id, "names": list(task_names)},
    ).rowcount
    conn.execute(
        text(
            "UPDATE dag_run SET status = 'running', ended_at = NULL, message = :message, "
            "fingerprint = :fingerprint WHERE id = :id AND status <> 'running'"
        ),
        {"id": run_id, "message": message, "fingerprint": fingerprint},
    )
    return superseded


# --- control: backfill ------------------------------------------------------------------


def runs_at(
    conn: Connection, dag_name: str, times: Sequence[datetime]
) -> dict[datetime, DagRunRow]:
    """The runs of ``dag_name`` scheduled for any of ``times``, by scheduled time."""
    if not times:
        return {}
    rows = conn.execute(
        text(
            f"SELECT {_RUN_COLUMNS} FROM dag_run WHERE dag_name = :dag "
            "AND scheduled_for = ANY(CAST(:times AS timestamptz[]))"
        ),
        {"dag": dag_name, "times": list(times)},
    )
    found = [_run_row(r) for r in rows]
    return {r.scheduled_for: r for r in found if r.scheduled_for is not None}


def insert_backfill_runs(
    conn: Connection,
    dag_name: str,
    times: Sequence[datetime],
    creator: str,
    now: datetime,
    fingerprint: str | None = None,
) -> list[DagRunRow]:
    """Create one run per time, in time order; a time that has a run already is skipped."""
    if not times:
        return []
    rows = conn.execute(
        text(
            "INSERT INTO dag_run (dag_name, status, trigger, scheduled_for, creator, parameters, "
            "created_at, fingerprint) SELECT :dag, 'running', 'backfill', v.fire, :creator, '{}', "
            ":now, :fingerprint FROM unnest(CAST(:times AS timestamptz[])) AS v(fire) "
            "ORDER BY v.fire "
            f"ON CONFLICT (dag_name, scheduled_for) DO NOTHING RETURNING {_RUN_COLUMNS}"
        ),
        {
            "dag": dag_name,
            "times": sorted(times),
            "creator": creator,
            "now": now,
            "fingerprint": fingerprint,
        },
    )
    return sorted((_run_row(r) for r in rows), key=lambda r: r.id)


# --- events (the outbox) ----------------------------------------------------------------


@dataclass(frozen=True)
class EventRow:
    id: int
    created_at: datetime
    kind: str
    dag_run_id: int
    task_run_id: int | None
    dag_name: str
    task_name: str | None
    attempt: int | None
    status: str
    attempts: int
    done: tuple[str, ...]


@dataclass(frozen=True)
class EventUpdate:
    """How one delivery attempt of an event ended."""

    id: int
    done: tuple[str, ...]
    delivered: bool
    given_up: bool
    retry_in: float
    error: str | None


@dataclass(frozen=True)
class RunSummary:
    """A run's task runs, for integrations: how many, how many failed, the last failure."""

    count: int
    error_count: int
    failed_task: str | None
    failed_error: str | None


def claim_events(conn: Connection, limit: int) -> list[EventRow]:
    """Lock the oldest events due for delivery; ones another scheduler holds are skipped.

    The locks last until the caller's transaction ends, so while one scheduler
    delivers an event no other one can.
    """
    rows = conn.execute(
        text(
            "SELECT id, created_at, kind, dag_run_id, task_run_id, dag_name, task_name, attempt, "
            "status, attempts, done FROM event "
            "WHERE delivered_at IS NULL AND given_up_at IS NULL AND next_attempt_at <= now() "
            "ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED"
        ),
        {"limit": limit},
    )
    return [
        EventRow(
            id=r.id,
            created_at=r.created_at,
            kind=r.kind,
            dag_run_id=r.dag_run_id,
            task_run_id=r.task_run_id,
            dag_name=r.dag_name,
            task_name=r.task_name,
            attempt=r.attempt,
            status=r.status,
            attempts=r.attempts,
            done=tuple(r.done),
        )
        for r in rows
    ]


def update_events(conn: Connection, updates: Sequence[EventUpdate]) -> None:
    """Record delivery attempts: delivered, given up, or due again after ``retry_in`` s."""
    if not updates:
        return
    conn.execute(
        text(
            "UPDATE event e SET attempts = e.attempts + 1, done = v.done, "
            "delivered_at = CASE WHEN v.delivered THEN now() END, "
            "given_up_at = CASE WHEN v.given_up THEN now() END, "
            "next_attempt_at = now() + make_interval(secs => v.retry_in), last_error = v.error "
            "FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS v(id bigint, done text[], "
            "delivered boolean, given_up boolean, retry_in double precision, error text) "
            "WHERE e.id = v.id"
        ),
        {
            "rows": json.dumps(
                [
                    {
                        "id": u.id,
                        "done": list(u.done),
                        "delivered": u.delivered,
                        "given_up": u.given_up,
                        "retry_in": u.retry_in,
                        "error": _short(u.error),
                    }
                    for u in updates
                ]
            )
        },
    )


def runs_by_id(conn: Connection, ids: Sequence[int]) -> dict[int, DagRunRow]:
    if not ids:
        return {}
    rows = conn.execute(
        text(f"SELECT {_RUN_COLUMNS} FROM dag_run WHERE id = ANY(CAST(:ids AS bigint[]))"),
        {"ids": list(ids)},
    )
    return {r.id: _run_row(r) for r in rows}


def task_runs_by_id(conn: Connection, ids: Sequence[int]) -> dict[int, TaskRunRow]:
    if not ids:
        return {}
    rows = conn.execute(
        text(f"SELECT {_TASK_COLUMNS} FROM task_run WHERE id = ANY(CAST(:ids AS bigint[]))"),
        {"ids": list(ids)},
    )
    return {r.id: _task_row(r) for r in rows}


def run_summaries(conn: Connection, dag_run_ids: Sequence[int]) -> dict[int, RunSummary]:
    if not dag_run_ids:
        return {}
    rows = conn.execute(
        text(
            "SELECT t.dag_run_id, count(*) AS tasks, "
            "count(*) FILTER (WHERE t.status = 'failed') AS error_count, "
            "(array_agg(t.task_name ORDER BY t.ended_at DESC NULLS LAST, t.id DESC) "
            "FILTER (WHERE t.status = 'failed'))[1] AS failed_task, "
            "(array_agg(t.error ORDER BY t.ended_at DESC NULLS LAST, t.id DESC) "
            "FILTER (WHERE t.status = 'failed'))[1] AS failed_error "
            "FROM task_run t WHERE t.dag_run_id = ANY(CAST(:ids AS bigint[])) "
            "GROUP BY t.dag_run_id"
        ),
        {"ids": list(dag_run_ids)},
    )
    summaries = {i: RunSummary(0, 0, None, None) for i in dag_run_ids}
    for r in rows:
        summaries[r.dag_run_id] = RunSummary(
            int(r.tasks), int(r.error_count), r.failed_task, r.failed_error
        )
    return summaries


def prune_events(conn: Connection, before: datetime, limit: int) -> int:
    """Delete up to ``limit`` events delivered or given up before ``before`` (those of
    pruned runs among them); how many."""
    return conn.execute(
        text(
            "DELETE FROM event WHERE id IN (SELECT id FROM event "
            "WHERE COALESCE(delivered_at, given_up_at) < :before LIMIT :limit)"
        ),
        {"before": before, "limit": limit},
    ).rowcount


# --- metrics ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RunGroup:
    """A DAG's runs of one status: how many, and when the latest of them ended."""

    dag_name: str
    status: RunStatus
    runs: int
    last_ended_at: datetime | None


@dataclass(frozen=True)
class LastScheduled:
    dag_name: str
    scheduled_for: datetime
    created_at: datetime


@dataclass(frozen=True)
class SchedulerGauges:
    id: str
    host: str
    manager: str
    last_pass_at: datetime
    last_pass_seconds: float


@dataclass(frozen=True)
class Gauges:
    runs: list[RunGroup]
    last_scheduled: list[LastScheduled]
    paused: list[str]
    schedulers: list[SchedulerGauges]
    next_fire: dict[str, datetime]
    task_runs_waiting: int
    task_runs_waiting_on_other_dags: int
    """Waiting task runs that still wait for inputs on other DAGs (``waiting_for``)."""
    task_runs_running: int
    oldest_startable_since: datetime | None
    """``not_before`` of the oldest waiting task run that may start now (its retry
    delay has passed and it waits for no input on another DAG)."""
    events_undelivered: int
    events_given_up: int
    now: datetime


def metric_gauges(conn: Connection) -> Gauges:
    """Everything the metrics gauges show.

    Counting runs by DAG and status reads the ``(dag_name, status, id)`` index
    once (an index-only scan); everything else is one index probe per DAG (or per
    DAG and status) or a partial index.
    """
    runs = [
        RunGroup(r.dag_name, RunStatus(r.status), int(r.runs), r.ended_at)
        for r in conn.execute(
            text(
                "SELECT g.dag_name, g.status, g.runs, last.ended_at FROM ("
                "SELECT dag_name, status, count(*) AS runs FROM dag_run GROUP BY 1, 2) g "
                "LEFT JOIN LATERAL (SELECT r.ended_at FROM dag_run r WHERE r.dag_name = g.dag_name "
                "AND r.status = g.status ORDER BY r.id DESC LIMIT 1) last "
                "ON g.status <> 'running' ORDER BY g.dag_name, g.status"
            )
        )
    ]
    names = sorted({r.dag_name for r in runs})
    last_scheduled = [
        LastScheduled(r.name, r.scheduled_for, r.created_at)
        for r in conn.execute(
            text(
                "SELECT n.name, s.scheduled_for, s.created_at "
                "FROM unnest(CAST(:names AS text[])) AS n(name) CROSS JOIN LATERAL ("
                "SELECT r.scheduled_for, r.created_at FROM dag_run r WHERE r.dag_name = n.name "
                "AND r.scheduled_for IS NOT NULL AND r.trigger = 'schedule' "
                "ORDER BY r.scheduled_for DESC LIMIT 1) s"
            ),
            {"names": names},
        )
    ]
    row = conn.execute(
        text(
            "SELECT now() AS now, "
            "(SELECT count(*) FROM task_run WHERE status = 'waiting') AS waiting, "
            "(SELECT count(*) FROM task_run WHERE status = 'waiting' "
            "AND waiting_for IS NOT NULL) AS waiting_on_dags, "
            "(SELECT count(*) FROM task_run WHERE status = 'running') AS running, "
            "(SELECT min(not_before) FROM task_run WHERE status = 'waiting' "
            "AND not_before <= now() AND waiting_for IS NULL) AS oldest, "
            "(SELECT count(*) FROM event WHERE delivered_at IS NULL AND given_up_at IS NULL) "
            "AS undelivered, "
            "(SELECT count(*) FROM event WHERE given_up_at IS NOT NULL) AS given_up"
        )
    ).one()
    next_fire = {
        r.dag_name: r.next_fire_at
        for r in conn.execute(text("SELECT dag_name, next_fire_at FROM dag_schedule"))
    }
    paused = list(
        conn.execute(
            text("SELECT dag_name FROM dag_state WHERE paused ORDER BY dag_name")
        ).scalars()
    )
    schedulers = [
        SchedulerGauges(r.id, r.host, r.manager, r.last_pass_at, float(r.last_pass_seconds))
        for r in conn.execute(
            text(
                "SELECT id, host, manager, last_pass_at, last_pass_seconds "
                "FROM scheduler_heartbeat WHERE stopped_at IS NULL ORDER BY id"
            )
        )
    ]
    return Gauges(
        runs=runs,
        last_scheduled=last_scheduled,
        paused=paused,
        schedulers=schedulers,
        next_fire=next_fire,
        task_runs_waiting=int(row.waiting),
        task_runs_waiting_on_other_dags=int(row.waiting_on_dags),
        task_runs_running=int(row.running),
        oldest_startable_since=row.oldest,
        events_undelivered=int(row.undelivered),
        events_given_up=int(row.given_up),
        now=row.now,
    )


def ping(conn: Connection) -> None:
    """A round trip to the database (for health checks)."""
    conn.execute(text("SELECT 1"))


# --- Cronitor sync state ------------------------------------------------------------------


@dataclass(frozen=True)
class SyncedMonitor:
    key: str
    dag_name: str
    spec: dict[str, Any]


def try_lock(conn: Connection, name: str) -> bool:
    """Take a transaction-level advisory lock if free; False if another holds it."""
    return bool(
        conn.execute(
            text("SELECT pg_try_advisory_xact_lock(hashtext(:key))"), {"key": name}
        ).scalar_one()
    )


def synced_monitors(conn: Connection) -> dict[str, SyncedMonitor]:
    rows = conn.execute(text("SELECT key, dag_name, spec FROM cronitor_monitor"))
    return {r.key: SyncedMonitor(r.key, r.dag_name, dict(r.spec)) for r in rows}


def save_synced_monitors(
    conn: Connection, monitors: Sequence[tuple[str, str, Mapping[str, Any]]]
) -> None:
    """Remember monitors as sent: (key, DAG name, spec)."""
    if monitors:
        conn.execute(
            text(
                "INSERT INTO cronitor_monitor (key, dag_name, spec, synced_at) "
                "SELECT v.key, v.dag_name, v.spec, now() "
                "FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS v(key text, dag_name text, spec jsonb) "
                "ON CONFLICT (key) DO UPDATE SET dag_name = excluded.dag_name, "
                "spec = excluded.spec, synced_at = excluded.synced_at"
            ),
            {
                "rows": json.dumps(
                    [{"key": k, "dag_name": d, "spec": dict(s)} for k, d, s in monitors]
                )
            },
        )


def forget_synced_monitors(conn: Connection, keys: Sequence[str]) -> None:
    if keys:
        conn.execute(
            text("DELETE FROM cronitor_monitor WHERE key = ANY(CAST(:keys AS text[]))"),
            {"keys": list(keys)},
        )


# --- web page (read-only) -----------------------------------------------------------
# The reads of ``workflows CONFIG ui``. Each page issues a fixed number of these,
# whatever the number of DAGs, runs or task runs.


@dataclass(frozen=True)
class FailedTaskRun:
    task_run: TaskRunRow
    dag_name: str


@dataclass(frozen=True)
class RecentRuns:
    """The newest runs of one DAG, newest first, as the DAG list shows them: parallel
    lists (the list draws thousands of runs), creation times as ISO 8601 UTC text."""

    dag_name: str
    ids: list[int]
    statuses: list[str]
    triggers: list[str]
    created: list[str]
    last_created_at: datetime | None
    last_ended_at: datetime | None


def latest_runs_per_dag(
    conn: Connection, dag_names: Sequence[str], per_dag: int
) -> dict[str, RecentRuns]:
    """The ``per_dag`` newest runs of each DAG (one index scan per DAG, one row per DAG)."""
    found = {name: RecentRuns(name, [], [], [], [], None, None) for name in dag_names}
    if not dag_names or per_dag <= 0:
        return found
    rows = conn.execute(
        text(
            "SELECT d.name, r.* FROM unnest(CAST(:names AS text[])) AS d(name) "
            "CROSS JOIN LATERAL (SELECT array_agg(id ORDER BY id DESC) AS ids, "
            "array_agg(status ORDER BY id DESC) AS statuses, "
            "array_agg(trigger ORDER BY id DESC) AS triggers, "
            "array_agg(to_char(created_at AT TIME ZONE 'UTC', "
            """'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"') ORDER BY id DESC) AS created, """
            "max(created_at) AS last_created_at, "
            "(array_agg(ended_at ORDER BY id DESC))[1] AS last_ended_at FROM ("
            "SELECT id, status, trigger, created_at, ended_at FROM dag_run "
            "WHERE dag_name = d.name ORDER BY id DESC LIMIT :per_dag) AS newest) AS r "
            "WHERE r.ids IS NOT NULL"
        ),
        {"names": list(dag_names), "per_dag": per_dag},
    )
    for r in rows:
        found[r.name] = RecentRuns(
            r.name, r.ids, r.statuses, r.triggers, r.created, r.last_created_at, r.last_ended_at
        )
    return found


def dag_run_by_id(conn: Connection, run_id: int) -> DagRunRow | None:
    row = conn.execute(
        text(f"SELECT {_RUN_COLUMNS} FROM dag_run WHERE id = :id"), {"id": run_id}
    ).one_or_none()
    return None if row is None else _run_row(row)


def task_run_attempts(conn: Connection, task_run_id: int) -> list[tuple[TaskRunRow, str | None]]:
    """Every attempt of the task of ``task_run_id`` in its run, with its stored output."""
    rows = conn.execute(
        text(
            f"SELECT {_TASK_COLUMNS}, output_tail FROM task_run WHERE (dag_run_id, task_name) = "
            "(SELECT dag_run_id, task_name FROM task_run WHERE id = :id) ORDER BY attempt"
        ),
        {"id": task_run_id},
    )
    return [(_task_row(r), r.output_tail) for r in rows]


def latest_failures(conn: Connection, limit: int) -> list[FailedTaskRun]:
    """The newest failed task runs across DAGs (by end time), newest first."""
    rows = conn.execute(
        text(
            "SELECT t.id, t.dag_run_id, t.task_name, t.attempt, t.status, t.manager, "
            "t.created_at, t.started_at, t.ended_at, t.host, t.exit_code, t.error, t.waiting_for, "
            "r.dag_name "
            "FROM (SELECT * FROM task_run WHERE status = 'failed' "
            "ORDER BY ended_at DESC, id DESC LIMIT :limit) AS t "
            "JOIN dag_run r ON r.id = t.dag_run_id ORDER BY t.ended_at DESC, t.id DESC"
        ),
        {"limit": limit},
    )
    return [FailedTaskRun(_task_row(r), r.dag_name) for r in rows]


# --- control: pruning, status ----------------------------------------------------------


_PRUNABLE = (
    "FROM dag_run r WHERE r.status <> 'running' AND r.ended_at < :cutoff "
    "AND r.id <> (SELECT max(m.id) FROM dag_run m WHERE m.dag_name = r.dag_name) "
    "AND NOT EXISTS (SELECT 1 FROM task_run t WHERE t.dag_run_id = r.id "
    "AND t.status IN ('waiting', 'running'))"
)
"""Finished runs that ended before the cutoff, except each DAG's most recent run and
runs with attempts still being stopped."""


def prunable_runs(conn: Connection, cutoff: datetime) -> dict[str, tuple[int, int]]:
    """What a prune would delete: DAG -> (runs, task runs)."""
    rows = conn.execute(
        text(
            "SELECT r.dag_name, count(*) AS runs, sum((SELECT count(*) FROM task_run t "
            f"WHERE t.dag_run_id = r.id)) AS task_runs {_PRUNABLE} GROUP BY r.dag_name "
            "ORDER BY r.dag_name"
        ),
        {"cutoff": cutoff},
    )
    return {r.dag_name: (int(r.runs), int(r.task_runs or 0)) for r in rows}


def prune_batch(conn: Connection, cutoff: datetime, limit: int) -> dict[str, tuple[int, int]]:
    """Delete up to ``limit`` prunable runs with their task runs (and their output);
    rows locked by someone else are skipped. DAG -> (runs, task runs) deleted."""
    rows = conn.execute(
        text(
            f"WITH doomed AS (SELECT r.id, r.dag_name {_PRUNABLE} ORDER BY r.id LIMIT :limit "
            "FOR UPDATE OF r SKIP LOCKED), "
            "counted AS (SELECT d.id, d.dag_name, (SELECT count(*) FROM task_run t "
            "WHERE t.dag_run_id = d.id) AS task_runs FROM doomed d), "
            "deleted AS (DELETE FROM dag_run r USING counted c WHERE r.id = c.id "
            "RETURNING r.dag_name, c.task_runs) "
            "SELECT dag_name, count(*) AS runs, sum(task_runs) AS task_runs FROM deleted "
            "GROUP BY dag_name"
        ),
        {"cutoff": cutoff, "limit": limit},
    )
    return {r.dag_name: (int(r.runs), int(r.task_runs or 0)) for r in rows}


def prune_heartbeats(conn: Connection, cutoff: datetime) -> int:
    """Delete the heartbeat rows of schedulers not seen since ``cutoff``."""
    return conn.execute(
        text("DELETE FROM scheduler_heartbeat WHERE last_pass_at < :cutoff"), {"cutoff": cutoff}
    ).rowcount


@dataclass(frozen=True)
class SchedulerRow:
    id: str
    host: str
    pid: int
    manager: str
    started_at: datetime
    last_pass_at: datetime
    last_pass_seconds: float
    dags: list[str]
    stopped_at: datetime | None
    fingerprints: dict[str, str] = field(default_factory=dict)
    """The fingerprint of each loaded DAG's copy, by name."""


def schedulers_seen(conn: Connection, since: datetime) -> list[SchedulerRow]:
    """The schedulers whose last pass was at or after ``since``, latest first."""
    rows = conn.execute(
        text(
            "SELECT id, host, pid, manager, started_at, last_pass_at, last_pass_seconds, dags, "
            "stopped_at, fingerprints FROM scheduler_heartbeat WHERE last_pass_at >= :since "
            "ORDER BY last_pass_at DESC, id"
        ),
        {"since": since},
    )
    return [
        SchedulerRow(
            r.id,
            r.host,
            r.pid,
            r.manager,
            r.started_at,
            r.last_pass_at,
            r.last_pass_seconds,
            list(r.dags),
            r.stopped_at,
            dict(r.fingerprints or {}),
        )
        for r in rows
    ]


@dataclass(frozen=True)
class Activity:
    running_runs: int
    running_task_runs: int
    waiting_task_runs: int
    """Waiting task runs whose retry delay (if any) has passed and that wait for no
    input on another DAG: ready to start."""
    oldest_waiting_since: datetime | None
    """When the longest-waiting ready task run became ready."""


def activity(conn: Connection, now: datetime) -> Activity:
    row = conn.execute(
        text(
            "SELECT (SELECT count(*) FROM dag_run WHERE status = 'running') AS runs, "
            "(SELECT count(*) FROM task_run WHERE status = 'running') AS running, "
            "(SELECT count(*) FROM task_run WHERE status = 'waiting' AND not_before <= :now "
            "AND waiting_for IS NULL) AS waiting, (SELECT min(GREATEST(created_at, not_before)) "
            "FROM task_run WHERE status = 'waiting' AND not_before <= :now "
            "AND waiting_for IS NULL) AS oldest"
        ),
        {"now": now},
    ).one()
    return Activity(int(row.runs), int(row.running), int(row.waiting), row.oldest)


def next_fire_times(conn: Connection) -> list[Cursor]:
    rows = conn.execute(
        text(
            "SELECT s.dag_name, s.schedule, s.timezone, s.next_fire_at, EXISTS (SELECT 1 "
            "FROM dag_state p WHERE p.dag_name = s.dag_name AND p.paused) AS paused "
            "FROM dag_schedule s ORDER BY s.next_fire_at, s.dag_name"
        )
    )
    return [Cursor(r.dag_name, r.schedule, r.timezone, r.next_fire_at, r.paused) for r in rows]
