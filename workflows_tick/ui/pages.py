"""The data of each page, read with a fixed number of queries.

Every function returns a plain dict: the HTML templates render it and ``/api/...``
serves it as JSON, so both always agree. Datetimes stay ``datetime`` objects here
(aware, UTC); the JSON encoder writes them in ISO 8601.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from workflows_tick import queries
from workflows_tick.cron import DstPolicy, next_fire
from workflows_tick.dags import DagRegistry
from workflows_tick.errors import DagLoadError
from workflows_tick.logs import redact
from workflows_tick.model import DEFAULT_TIMEZONE, Dag
from workflows_tick.plan import Cursor
from workflows_tick.queries import DagRunRow, TaskRunRow
from workflows_tick.ui.words import describe_schedule

RECENT_RUNS = 10
"""Runs shown as squares on the DAG list."""
GRID_RUNS = 25
"""Runs (columns) of a DAG's grid."""
FAILURES = 50
"""Task runs on the failures page."""
RELOAD_SECONDS = 10.0
"""How often the DAG folder is checked for edits."""
SCHEDULERS_WINDOW = timedelta(days=1)
"""The schedulers page lists those whose last pass is this recent."""
STALE_AFTER = timedelta(minutes=3)
"""A scheduler not stopped whose last pass is older than this is flagged stale (a
CronJob passes once a minute; a loop every few seconds)."""

_SECRET_NAME = re.compile(r"pass|secret|token|key|credential|auth|private|cookie", re.I)
MASK = "***"


class RegistryCache:
    """The loaded DAGs, reloaded when the folder changes (checked at most every
    ``RELOAD_SECONDS``). Safe to share between the server's threads."""

    def __init__(self, registry: DagRegistry, reload_seconds: float = RELOAD_SECONDS) -> None:
        self._registry = registry
        self._reload_seconds = reload_seconds
        self._lock = threading.Lock()
        self._checked = time.monotonic()
        self._fingerprint = registry.fingerprint()
        self._dags: dict[str, Dag | DagLoadError] = registry.load_all()

    def dags(self) -> dict[str, Dag | DagLoadError]:
        """Every DAG by name (or its load error), in name order. Do not modify."""
        with self._lock:
            if time.monotonic() - self._checked >= self._reload_seconds:
                self._checked = time.monotonic()
                fingerprint = self._registry.fingerprint()
                if fingerprint != self._fingerprint:
                    self._registry.reload()
                    self._fingerprint = fingerprint
                    self._dags = self._registry.load_all()
            return self._dags


@dataclass(frozen=True)
class DagInfo:
    """What the pages show of a DAG whatever its state: loaded, broken or deleted."""

    name: str
    timezone: str
    dag: Dag | None
    error: str | None


def dag_info(dags: Mapping[str, Dag | DagLoadError], name: str) -> DagInfo:
    found = dags.get(name)
    if isinstance(found, Dag):
        return DagInfo(name, found.timezone, found, None)
    if isinstance(found, DagLoadError):
        return DagInfo(name, DEFAULT_TIMEZONE, None, redact(str(found)))
    return DagInfo(name, DEFAULT_TIMEZONE, None, "not in the DAG folder (deleted or renamed)")


def masked_parameters(parameters: Mapping[str, str]) -> dict[str, str]:
    """Parameter values with secrets hidden: by name, and passwords inside URLs."""
    return {
        name: MASK if _SECRET_NAME.search(name) else redact(value)
        for name, value in sorted(parameters.items())
    }


def run_dict(run: DagRunRow, timezone: str) -> dict[str, Any]:
    return {
        "id": run.id,
        "dag": run.dag_name,
        "status": run.status.value,
        "trigger": run.trigger.value,
        "creator": run.creator,
        "scheduled_for": run.scheduled_for,
        "created_at": run.created_at,
        "ended_at": run.ended_at,
        "message": redact(run.message) if run.message else None,
        "timezone": timezone,
    }


def task_run_dict(task: TaskRunRow) -> dict[str, Any]:
    took = (
        (task.ended_at - task.started_at).total_seconds()
        if task.started_at and task.ended_at
        else None
    )
    return {
        "id": task.id,
        "run_id": task.dag_run_id,
        "task": task.task_name,
        "attempt": task.attempt,
        "status": task.status.value,
        "manager": task.manager,
        "created_at": task.created_at,
        "started_at": task.started_at,
        "ended_at": task.ended_at,
        "seconds": took,
        "host": task.host,
        "exit_code": task.exit_code,
        "error": redact(task.error) if task.error else None,
        "waiting_for": _waiting_for(task),
    }


def _waiting_for(task: TaskRunRow) -> list[str] | None:
    """The inputs on other DAGs a waiting task run still waits for (None: none)."""
    if task.status.value == "waiting" and task.waiting_for:
        return list(task.waiting_for)
    return None


def _is_live_run(run: DagRunRow) -> bool:
    return run.status.value == "running"


# --- the DAG list ---------------------------------------------------------------------


def dags_page(
    conn: Connection,
    dags: Mapping[str, Dag | DagLoadError],
    now: datetime,
    failing_only: bool = False,
    search: str = "",
) -> dict[str, Any]:
    """Every DAG (failing ones first), its schedule, next fire and recent runs.

    Three queries, however many DAGs.
    """
    names = list(dags)
    recent = queries.latest_runs_per_dag(conn, names, RECENT_RUNS)
    cursors = queries.schedule_cursors(conn)
    paused = {p.dag_name: p for p in queries.paused_dags(conn)}
    # DAGs that are gone from the folder but still have runs are not listed: the
    # list is the project's DAGs; their history stays reachable by URL.
    rows = []
    for name in names:
        info = dag_info(dags, name)
        if search and search.lower() not in name.lower():
            continue
        runs = recent[name]
        # A skipped fire is not a run that finished: it must not hide a failure.
        last_finished = next((s for s in runs.statuses if s not in ("running", "skipped")), None)
        failing = info.error is not None or last_finished == "failed"
        if failing_only and not failing:
            continue
        schedule = info.dag.schedule if info.dag else None
        rows.append(
            {
                "name": name,
                "description": info.dag.description if info.dag else "",
                "error": info.error,
                "schedule": schedule,
                "schedule_words": describe_schedule(schedule) if info.dag else None,
                "timezone": info.timezone,
                "next_fire_at": _next_fire(info, cursors.get(name), now),
                **_paused(paused.get(name)),
                "failing": failing,
                "running": "running" in runs.statuses,
                "last_run": {
                    "id": runs.ids[0],
                    "status": runs.statuses[0],
                    "trigger": runs.triggers[0],
                    "created_at": runs.last_created_at,
                    "ended_at": runs.last_ended_at,
                }
                if runs.ids
                else None,
                "recent_runs": [
                    {"id": i, "status": s, "trigger": t, "created_at": c}
                    for i, s, t, c in zip(
                        runs.ids, runs.statuses, runs.triggers, runs.created, strict=True
                    )
                ],
            }
        )
    rows.sort(key=lambda row: (not row["failing"], row["name"]))
    return {
        "now": now,
        "dags": rows,
        "failing_only": failing_only,
        "search": search,
        "live": any(row["running"] for row in rows),
    }


_next_fires: dict[tuple[str, str, DstPolicy], tuple[datetime, datetime]] = {}
"""(schedule, zone, DST policy) -> (computed at, next fire): the next fire after any time in
[computed at, next fire) is the same, so it is computed once per fire, not per page."""


def _paused(found: queries.PausedDag | None) -> dict[str, Any]:
    return {
        "paused": found is not None,
        "paused_at": found.paused_at if found else None,
        "paused_by": found.paused_by if found else None,
    }


def _next_fire(info: DagInfo, cursor: Cursor | None, now: datetime) -> datetime | None:
    dag = info.dag
    if dag is None or dag.schedule is None:
        return None
    dst = DstPolicy.of(dag)
    key = (dag.schedule, dag.timezone, dst)
    if cursor is not None and (cursor.schedule, cursor.timezone, cursor.dst) == key:
        return cursor.next_fire_at
    cached = _next_fires.get(key)
    if cached is not None and cached[0] <= now < cached[1]:
        return cached[1]
    try:
        fire = next_fire(dag.schedule, dag.timezone, now, dst)
    except Exception:  # a schedule the loader accepted but cron cannot step: show nothing
        return None
    _next_fires[key] = (now, fire)
    return fire


# --- one DAG: grid and graph ------------------------------------------------------------


def _latest_attempts(tasks: Sequence[TaskRunRow]) -> dict[tuple[int, str], tuple[TaskRunRow, int]]:
    """(run, task) -> (its newest attempt, how many attempts)."""
    cells: dict[tuple[int, str], tuple[TaskRunRow, int]] = {}
    for task in tasks:
        key = (task.dag_run_id, task.task_name)
        previous = cells.get(key)
        if previous is None or task.attempt > previous[0].attempt:
            cells[key] = (task, (previous[1] if previous else 0) + 1)
        else:
            cells[key] = (previous[0], previous[1] + 1)
    return cells


def graph_inputs(dag: Dag | None, task_names: Sequence[str]) -> dict[str, list[str]]:
    """Node -> its inputs, for the graph: the DAG's tasks (and the tasks of other DAGs
    they read, as ``dag:task``), or the bare task names of a DAG no longer loadable."""
    if dag is None:
        return {name: [] for name in task_names}
    inputs: dict[str, list[str]] = {}
    for task in dag.tasks.values():
        for ext in task.external_inputs:
            inputs.setdefault(f"{ext.dag}:{ext.task}", [])
    for task in dag.tasks.values():
        inputs[task.name] = [*task.inputs, *(f"{e.dag}:{e.task}" for e in task.external_inputs)]
    return inputs


def dag_page(
    conn: Connection,
    dags: Mapping[str, Dag | DagLoadError],
    name: str,
    now: datetime,
    selected: int | None = None,
) -> dict[str, Any] | None:
    """The grid of the last ``GRID_RUNS`` runs and the graph of one of them.

    Three queries (four when the selected run is older than the grid). None for a
    DAG neither in the folder nor in the database.
    """
    info = dag_info(dags, name)
    runs = queries.recent_runs(conn, name, GRID_RUNS)
    paused = next((p for p in queries.paused_dags(conn) if p.dag_name == name), None)
    if info.dag is None and name not in dags and not runs:
        return None
    if selected is not None and all(r.id != selected for r in runs):
        extra = queries.dag_run_by_id(conn, selected)
        if extra is None or extra.dag_name != name:
            selected = None
        else:
            runs = [*runs, extra]
    tasks = queries.task_runs_of(conn, [r.id for r in runs])
    cells = _latest_attempts(tasks)
    task_names = list(info.dag.tasks) if info.dag else []
    for task in tasks:
        if task.task_name not in task_names:
            task_names.append(task.task_name)
    grid_runs = runs[:GRID_RUNS]
    grid = [
        {
            "task": task_name,
            "cells": [_cell(cells.get((run.id, task_name))) for run in grid_runs],
        }
        for task_name in task_names
    ]
    chosen = next((r for r in runs if r.id == selected), runs[0] if runs else None)
    states = (
        {
            task: cell["status"]
            for task in task_names
            if (cell := _cell(cells.get((chosen.id, task)))) is not None
        }
        if chosen
        else {}
    )
    dag = info.dag
    return {
        "now": now,
        "dag": {
            "name": name,
            "description": dag.description if dag else "",
            "error": info.error,
            "schedule": dag.schedule if dag else None,
            "schedule_words": describe_schedule(dag.schedule) if dag else None,
            "timezone": info.timezone,
            **_paused(paused),
            "tasks": [
                {
                    "name": t.name,
                    "type": t.type.value,
                    "description": t.description,
                    "inputs": list(t.inputs),
                    "external_inputs": [f"{e.dag}:{e.task}" for e in t.external_inputs],
                }
                for t in (dag.tasks.values() if dag else [])
            ],
        },
        "runs": [run_dict(r, info.timezone) for r in grid_runs],
        "grid": grid,
        "selected_run": run_dict(chosen, info.timezone) if chosen else None,
        "graph": {
            "inputs": graph_inputs(dag, task_names),
            "states": states,
            "task_runs": {
                task: cell["task_run_id"]
                for task in task_names
                if chosen and (cell := _cell(cells.get((chosen.id, task)))) is not None
            },
        },
        "live": any(_is_live_run(r) for r in grid_runs),
    }


def _cell(found: tuple[TaskRunRow, int] | None) -> dict[str, Any] | None:
    if found is None:
        return None
    task, attempts = found
    took = (
        (task.ended_at - task.started_at).total_seconds()
        if task.started_at and task.ended_at
        else None
    )
    return {
        "task_run_id": task.id,
        "status": task.status.value,
        "attempts": attempts,
        "seconds": took,
        "waiting_for": _waiting_for(task),
    }


# --- one run --------------------------------------------------------------------------


def run_page(
    conn: Connection, dags: Mapping[str, Dag | DagLoadError], run_id: int, now: datetime
) -> dict[str, Any] | None:
    """A run's header, graph and every attempt of its task runs. Two queries."""
    run = queries.dag_run_by_id(conn, run_id)
    if run is None:
        return None
    info = dag_info(dags, run.dag_name)
    tasks = queries.task_runs_of(conn, [run.id])
    started = min((t.started_at for t in tasks if t.started_at), default=None)
    end = run.ended_at or (now if _is_live_run(run) else None)
    cells = _latest_attempts(tasks)
    names = list(info.dag.tasks) if info.dag else []
    names += [t.task_name for t in tasks if t.task_name not in names]
    latest = {name: cell for name in names if (cell := _cell(cells.get((run.id, name))))}
    header = run_dict(run, info.timezone)
    header.update(
        {
            "started_at": started,
            "seconds": (end - started).total_seconds() if started and end else None,
            "parameters": masked_parameters(run.parameters),
        }
    )
    return {
        "now": now,
        "run": header,
        "dag": {"name": run.dag_name, "timezone": info.timezone, "error": info.error},
        "task_runs": [task_run_dict(t) for t in tasks],
        "graph": {
            "inputs": graph_inputs(info.dag, names),
            "states": {name: cell["status"] for name, cell in latest.items()},
            "task_runs": {name: cell["task_run_id"] for name, cell in latest.items()},
        },
        "live": _is_live_run(run),
    }


# --- one task run's log ---------------------------------------------------------------


def task_run_page(
    conn: Connection, dags: Mapping[str, Dag | DagLoadError], task_run_id: int, now: datetime
) -> dict[str, Any] | None:
    """The stored output of every attempt of a task run's task in its run. Two queries."""
    attempts = queries.task_run_attempts(conn, task_run_id)
    if not attempts:
        return None
    run = queries.dag_run_by_id(conn, attempts[0][0].dag_run_id)
    assert run is not None  # task_run.dag_run_id is a foreign key
    info = dag_info(dags, run.dag_name)
    chosen = next(t for t, _ in attempts if t.id == task_run_id)
    return {
        "now": now,
        "task_run": task_run_dict(chosen),
        "run": run_dict(run, info.timezone),
        "attempts": [
            {**task_run_dict(t), "output": redact(output) if output is not None else None}
            for t, output in attempts
        ],
        "live": any(t.status.value in ("waiting", "running") for t, _ in attempts),
    }


def log_text(page: Mapping[str, Any], attempt: Mapping[str, Any]) -> str:
    """One attempt's log as a plain-text download, with a header saying what it is."""
    run = page["run"]
    header = (
        f"# {run['dag']} run {run['id']}: task {attempt['task']} attempt {attempt['attempt']} "
        f"(task run {attempt['id']}), {attempt['status']}"
        f"{'' if attempt['exit_code'] is None else ', exit code ' + str(attempt['exit_code'])}\n"
    )
    return header + (attempt["output"] or "(no output recorded)\n")


# --- failures ---------------------------------------------------------------------------


def failures_page(
    conn: Connection, dags: Mapping[str, Dag | DagLoadError], now: datetime
) -> dict[str, Any]:
    """The newest failed task runs across DAGs, with their errors. One query."""
    rows = queries.latest_failures(conn, FAILURES)
    return {
        "now": now,
        "failures": [
            {
                **task_run_dict(f.task_run),
                "dag": f.dag_name,
                "timezone": dag_info(dags, f.dag_name).timezone,
            }
            for f in rows
        ],
        "live": False,
    }


# --- schedulers ---------------------------------------------------------------------------


def schedulers_page(conn: Connection, now: datetime) -> dict[str, Any]:
    """The schedulers seen in the last ``SCHEDULERS_WINDOW`` (a stale one, still
    running but without a pass for ``STALE_AFTER``, is flagged) and the work waiting
    for them. Two queries."""
    rows = queries.schedulers_seen(conn, now - SCHEDULERS_WINDOW)
    work = queries.activity(conn, now)
    return {
        "now": now,
        "schedulers": [
            {
                "id": r.id,
                "host": r.host,
                "pid": r.pid,
                "manager": r.manager,
                "started_at": r.started_at,
                "last_pass_at": r.last_pass_at,
                "last_pass_seconds": r.last_pass_seconds,
                "dags": len(r.dags),
                "stopped_at": r.stopped_at,
                "stale": r.stopped_at is None and now - r.last_pass_at > STALE_AFTER,
            }
            for r in rows
        ],
        "activity": {
            "running_runs": work.running_runs,
            "running_task_runs": work.running_task_runs,
            "waiting_task_runs": work.waiting_task_runs,
            "oldest_waiting_since": work.oldest_waiting_since,
        },
        "live": False,
    }


def utc_now() -> datetime:
    return datetime.now(UTC)
