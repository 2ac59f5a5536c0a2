"""What the rolling-deploy checks cost an idle pass: passes with and without them, interleaved.

One process, one database, one ``Ticker`` per size (5 and 500 scheduled DAGs, nothing
due, nothing running). Even passes run the code as shipped; odd passes have the three
pieces of the idle pass that the fingerprints changed put back as they were before:
reading the cursors without their fingerprint, ``plan_schedules`` without the copy
checks, and claiming by DAG name only, the names sent as a list (the SQL below is
that earlier code, kept here for the comparison). Interleaving makes the ratio robust to a machine whose load
changes during the run (see ``heartbeat_cost.py``).

    python benchmarks/fingerprint_cost.py [--passes 1200]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import add_database_option, bench_database, engine_for, header, scheduled_dags
from sqlalchemy import Connection, text

from workflows_tick import cron, queries, tick
from workflows_tick.model import Dag
from workflows_tick.plan import Cursor, SchedulePlan
from workflows_tick.testing import FakeClock, InstantManager, write_project
from workflows_tick.tick import Ticker

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
NAMES: list[str] = []
"""The loaded DAG names, for :func:`claim_before`."""


def cursors_before(conn: Connection) -> dict[str, Cursor]:
    rows = conn.execute(text("SELECT dag_name, schedule, timezone, next_fire_at FROM dag_schedule"))
    return {r.dag_name: Cursor(r.dag_name, r.schedule, r.timezone, r.next_fire_at) for r in rows}


def plan_before(
    dags: Mapping[str, Dag],
    cursors: Mapping[str, Cursor],
    now: datetime,
    broken: Collection[str] = (),
    live: Any = None,
) -> SchedulePlan:
    plan = SchedulePlan()
    for name, dag in dags.items():
        if dag.schedule is None:
            continue
        cursor = cursors.get(name)
        if cursor is None or (cursor.schedule, cursor.timezone) != (dag.schedule, dag.timezone):
            fire = cron.next_fire(dag.schedule, dag.timezone, now)
            cursor = Cursor(name, dag.schedule, dag.timezone, fire)
            plan.reset.append(cursor)
        elif cursor.next_fire_at <= now:
            plan.due.append(name)
        plan.cursors[name] = cursor
    plan.drop.extend(
        name
        for name in cursors
        if name not in broken and (name not in dags or dags[name].schedule is None)
    )
    return plan


def claim_before(
    conn: Connection,
    manager: str,
    copies: queries.LoadedCopies,
    limit: int,
    now: datetime,
    lease_until: datetime,
) -> list[queries.Claim]:
    """The claim by DAG name: the names sent as a list, as the earlier code did."""
    rows = conn.execute(
        text(
            "WITH picked AS ("
            "SELECT t.id FROM task_run t JOIN dag_run r ON r.id = t.dag_run_id "
            "WHERE t.status = 'waiting' AND t.not_before <= :now AND r.status = 'running' "
            "AND r.dag_name = ANY(CAST(:dags AS text[])) "
            "ORDER BY t.id LIMIT :limit FOR UPDATE OF t SKIP LOCKED) "
            "UPDATE task_run t SET status = 'running', manager = :manager, started_at = :now, "
            "lease_expires_at = :lease_until "
            "FROM picked, dag_run r WHERE t.id = picked.id AND r.id = t.dag_run_id "
            "AND t.status = 'waiting' "
            "RETURNING t.id, t.dag_run_id, r.dag_name, t.task_name, t.attempt, r.parameters"
        ),
        {
            "now": now,
            "dags": NAMES,
            "limit": limit,
            "manager": manager,
            "lease_until": lease_until,
        },
    )
    return [queries.Claim(r.id, r.dag_run_id, r.dag_name, r.task_name, r.attempt, {}) for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_database_option(parser)
    parser.add_argument("--passes", type=int, default=1200, help="timed passes per size")
    args = parser.parse_args()
    shipped = (queries.schedule_cursors, tick.plan_schedules, queries.claim_waiting)
    before = (cursors_before, plan_before, claim_before)

    def use(functions: tuple[Any, Any, Any]) -> None:
        queries.schedule_cursors, tick.plan_schedules, queries.claim_waiting = functions  # type: ignore[assignment]

    with (
        bench_database(args.database_url, "fingerprint") as db,
        tempfile.TemporaryDirectory() as tmp,
    ):
        header("Rolling-deploy checks: cost", db)
        engine = engine_for(db)
        try:
            for size in (5, 500):
                registry = write_project(Path(tmp) / f"dags_{size}", scheduled_dags(size))
                ticker = Ticker(
                    registry, InstantManager(), engine, "config.py", clock=FakeClock(NOW)
                )
                NAMES[:] = list(ticker.dags)
                for _ in range(20):  # cursors (with fingerprints), pool, caches, plans
                    ticker.run_pass()
                timed: dict[bool, list[float]] = {True: [], False: []}
                for i in range(args.passes):
                    now = i % 2 == 0
                    use(shipped if now else before)
                    started = time.perf_counter()
                    result = ticker.run_pass()
                    timed[now].append(time.perf_counter() - started)
                    assert not result.did_work
                use(shipped)
                with_checks, without = (statistics.median(timed[b]) for b in (True, False))
                print(
                    f"{size} DAGs: median idle pass {with_checks * 1000:.2f} ms as shipped, "
                    f"{without * 1000:.2f} ms as before: ratio {with_checks / without:.3f}"
                )
        finally:
            engine.dispose()


if __name__ == "__main__":
    main()
