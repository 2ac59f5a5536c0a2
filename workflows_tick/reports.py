"""What ``workflows <config> runs`` and ``logs`` print. Parameter values are never shown."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from workflows_tick import queries
from workflows_tick.errors import UsageError
from workflows_tick.logs import redact

if TYPE_CHECKING:
    from workflows_tick.scheduler import Status


def _time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _duration(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "-"
    return f"{(end - start).total_seconds():.1f}s"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return lines


def task_status(task: queries.TaskRunRow) -> str:
    """``waiting for other_dag:task`` for a task run waiting on other DAGs, else its status."""
    if task.status.value == "waiting" and task.waiting_for:
        return f"waiting for {', '.join(task.waiting_for)}"
    return task.status.value


def format_runs(
    runs: Sequence[queries.DagRunRow], tasks: Sequence[queries.TaskRunRow]
) -> list[str]:
    if not runs:
        return ["no runs"]
    by_run: dict[int, list[queries.TaskRunRow]] = {}
    for task in tasks:
        by_run.setdefault(task.dag_run_id, []).append(task)
    lines: list[str] = []
    for run in runs:
        when = (
            f"scheduled for {_time(run.scheduled_for)}"
            if run.scheduled_for
            else f"by {run.creator}"
        )
        params = f"  parameters: {', '.join(sorted(run.parameters))}" if run.parameters else ""
        lines.append(
            f"run {run.id}  {run.dag_name}  {run.status.value}  {run.trigger.value} {when}  "
            f"created {_time(run.created_at)}  ended {_time(run.ended_at)}{params}"
        )
        if run.message:
            lines.append(f"  {redact(run.message)}")
        rows = [
            [
                str(t.id),
                t.task_name,
                str(t.attempt),
                task_status(t),
                _time(t.started_at),
                _duration(t.started_at, t.ended_at),
                t.host or "-",
                "-" if t.exit_code is None else str(t.exit_code),
                redact(t.error or "")[:120],
            ]
            for t in by_run.get(run.id, [])
        ]
        if rows:
            headers = [
                "TASK RUN",
                "TASK",
                "TRY",
                "STATUS",
                "STARTED",
                "TOOK",
                "HOST",
                "EXIT",
                "ERROR",
            ]
            lines += ["  " + line for line in table(headers, rows)]
        lines.append("")
    return lines


def runs_table(dag_name: str | None, limit: int) -> list[str]:
    from workflows_tick.database import connect
    from workflows_tick.migrate import upgrade

    with connect(purpose="runs") as db:
        upgrade(db.engine)
        with db.engine.connect() as conn:
            runs = queries.recent_runs(conn, dag_name, limit)
            tasks = queries.task_runs_of(conn, [r.id for r in runs])
            paused = queries.paused_dags(conn)
    shown = [p for p in paused if dag_name is None or p.dag_name == dag_name]
    head = [f"paused: {', '.join(p.dag_name for p in shown)}", ""] if shown else []
    return head + format_runs(runs, tasks)


def task_run_log(task_run_id: int) -> str:
    from workflows_tick.database import connect
    from workflows_tick.migrate import upgrade

    with connect(purpose="logs") as db:
        upgrade(db.engine)
        with db.engine.connect() as conn:
            found = queries.task_run_output(conn, task_run_id)
    if found is None:
        raise UsageError(f"no task run {task_run_id}")
    row, output = found
    header = (
        f"# task run {row.id}: {row.task_name} attempt {row.attempt}, {row.status.value}"
        f"{'' if row.exit_code is None else f', exit code {row.exit_code}'}"
        f"{'' if not row.error else f': {row.error}'}\n"
    )
    return redact(header + (output or "(no output recorded)\n"))


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def differing_copies(schedulers: Sequence[queries.SchedulerRow]) -> list[str]:
    """The DAGs that the schedulers still running have loaded with different
    fingerprints (a rolling deploy, or an edit not yet read everywhere), by name."""
    copies: dict[str, set[str]] = {}
    for s in schedulers:
        if s.stopped_at is None:
            for name, fingerprint in s.fingerprints.items():
                copies.setdefault(name, set()).add(fingerprint)
    return sorted(name for name, fps in copies.items() if len(fps) > 1)


def status_lines(status: Status) -> list[str]:
    """What ``workflows CONFIG status`` prints."""
    now = status.now
    lines = ["schedulers seen in the last 5 minutes:"]
    rows = [
        [
            s.host,
            str(s.pid),
            s.manager,
            f"{_age((now - s.last_pass_at).total_seconds())} ago",
            f"{s.last_pass_seconds * 1000:.0f}ms",
            f"up {_age((now - s.started_at).total_seconds())}"
            + (" (stopped)" if s.stopped_at else ""),
            f"{len(s.dags)}: {', '.join(s.dags)}" if len(s.dags) <= 5 else f"{len(s.dags)}",
        ]
        for s in status.schedulers
    ]
    if rows:
        headers = ["HOST", "PID", "MANAGER", "LAST PASS", "TOOK", "STATE", "DAGS"]
        lines += ["  " + line for line in table(headers, rows)]
    else:
        lines.append("  none")
    differ = differing_copies(status.schedulers)
    if differ:
        lines.append(
            "DAGs loaded in different versions by running schedulers (each run goes on "
            f"under the version that created it): {', '.join(differ)}"
        )
    paused = ", ".join(p.dag_name for p in status.paused) or "none"
    lines.append(f"paused DAGs: {paused}")
    act = status.activity
    oldest = (
        f" (oldest waiting {_age((now - act.oldest_waiting_since).total_seconds())})"
        if act.oldest_waiting_since
        else ""
    )
    lines.append(
        f"runs running: {act.running_runs}; task runs running: {act.running_task_runs}, "
        f"waiting: {act.waiting_task_runs}{oldest}"
    )
    lines.append("next fire times (UTC):")
    if status.schedules:
        lines += [
            "  " + line
            for line in table(
                ["DAG", "NEXT", "SCHEDULE"],
                [
                    [
                        c.dag_name,
                        _time(c.next_fire_at.astimezone(UTC)) + (" (paused)" if c.paused else ""),
                        f"{c.schedule} ({c.timezone})",
                    ]
                    for c in status.schedules
                ],
            )
        ]
    else:
        lines.append("  none")
    return lines
