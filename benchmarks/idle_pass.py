"""Idle pass cost: does a pass cost what the work costs, or what the history costs?

Loads 5, 50 and 500 scheduled DAGs (nothing due, nothing running) and times
``Ticker.run_pass()`` in-process, first on an empty history, then after adding
finished dag runs and task runs with ``INSERT ... SELECT generate_series`` (default
50,000 runs x 20 task runs = 1,000,000 task runs) and ``VACUUM ANALYZE``. Counts the
SQL statements of each pass with a ``before_cursor_execute`` listener, times each
statement, and prints ``EXPLAIN (ANALYZE, BUFFERS)`` of every statement of a pass.

    python benchmarks/idle_pass.py [--passes 200] [--runs 50000] [--tasks-per-run 20]

``--cross-dag`` makes the first task of each DAG read a task of the DAG before it, so
every pass also looks for task runs waiting on other DAGs (one probe of a partial
index when none waits).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import (
    BenchDatabase,
    add_database_option,
    bench_database,
    engine_for,
    header,
    median,
    ms,
    percentile,
    scheduled_dags,
)
from sqlalchemy import Engine, event, text

from workflows_tick.testing import FakeClock, InstantManager, write_project
from workflows_tick.tick import Ticker

SIZES = (5, 50, 500)
NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
"""The pass clock: long after the history, long before the next 03:00 fire time."""

_LABELS = (
    ("WHERE t.status = 'running' AND t.manager", "running_task_runs"),
    ("lease expired", "expire_leases"),
    ("DISTINCT ON (dag_name)", "lock_earliest_runs"),
    ("WITH picked AS", "claim_waiting"),
    ("FROM dag_schedule", "schedule_cursors"),
    ("waiting_for IS NOT NULL", "lock_input_waits"),
)


def label(statement: str) -> str:
    for needle, name in _LABELS:
        if needle in statement:
            return name
    return " ".join(statement.split())[:60]


class StatementLog:
    """Counts and times the statements an engine runs, and keeps the last pass's SQL."""

    def __init__(self, engine: Engine) -> None:
        self.count = 0
        self.commits = 0
        self.rollbacks = 0
        self.seconds: dict[str, list[float]] = defaultdict(list)
        self.captured: list[tuple[str, Any]] = []
        self._started = 0.0
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)
        event.listen(engine, "commit", self._commit)
        event.listen(engine, "rollback", self._rollback)

    def reset(self) -> None:
        self.count = self.commits = self.rollbacks = 0
        self.captured = []

    def _before(self, conn: Any, cursor: Any, statement: str, params: Any, *rest: Any) -> None:
        self.count += 1
        self.captured.append((statement, params))
        self._started = time.perf_counter()

    def _after(self, conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        self.seconds[label(statement)].append(time.perf_counter() - self._started)

    def _commit(self, conn: Any) -> None:
        self.commits += 1

    def _rollback(self, conn: Any) -> None:
        self.rollbacks += 1


def measure_size(
    engine: Engine, root: Path, size: int, passes: int, cross_dag: bool = False
) -> dict[str, Any]:
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM dag_schedule"))
    registry = write_project(
        root / f"dags_{size}{'_cross' if cross_dag else ''}",
        scheduled_dags(size, cross_dag=cross_dag),
    )
    ticker = Ticker(
        registry, InstantManager(capacity=1000), engine, "config.py", clock=FakeClock(NOW)
    )
    assert len(ticker.dags) == size, ticker.dags
    ticker.run_pass()  # creates the schedule cursors
    for _ in range(5):  # warm the connection pool, the caches and the plans
        assert not ticker.run_pass().did_work
    log = StatementLog(engine)
    times: list[float] = []
    counts: set[int] = set()
    for _ in range(passes):
        log.reset()
        started = time.perf_counter()
        result = ticker.run_pass()
        times.append(time.perf_counter() - started)
        assert not result.did_work and result.running_runs == 0
        counts.add(log.count)
    per_statement = {name: median(values) for name, values in log.seconds.items()}
    event.remove(engine, "before_cursor_execute", log._before)
    event.remove(engine, "after_cursor_execute", log._after)
    event.remove(engine, "commit", log._commit)
    event.remove(engine, "rollback", log._rollback)
    return {
        "size": size,
        "median": median(times),
        "p95": percentile(times, 0.95),
        "statements": sorted(counts),
        "commits": log.commits,
        "rollbacks": log.rollbacks,
        "per_statement": per_statement,
        "sql": sum(per_statement.values()),
        "captured": log.captured,
    }


def report(title: str, results: list[dict[str, Any]]) -> None:
    print(f"\n## {title}")
    print(
        "| DAGs | median | p95 | of which in statements (sum of medians) "
        "| SQL statements per pass | commit + rollback per pass |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(
            f"| {r['size']} | {ms(r['median'])} | {ms(r['p95'])} | {ms(r['sql'])} | "
            f"{', '.join(map(str, r['statements']))} | {r['commits']}+{r['rollbacks']} "
            f"(last pass) |"
        )
    last = results[-1]
    print(f"\nper statement at {last['size']} DAGs (median):")
    total = 0.0
    for name, seconds in last["per_statement"].items():
        total += seconds
        print(f"  {name:<22} {seconds * 1000:7.2f} ms")
    print(f"  {'(outside statements)':<22} {(last['median'] - total) * 1000:7.2f} ms")


def generate_history(db: BenchDatabase, engine: Engine, runs: int, tasks: int, dags: int) -> float:
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO dag_run (dag_name, status, trigger, scheduled_for, creator, "
                "parameters, created_at, ended_at, message) "
                "SELECT format('dag_%s', lpad((g % :dags)::text, 4, '0')), "
                "CASE WHEN g % 50 = 0 THEN 'failed' ELSE 'succeeded' END, 'schedule', "
                "timestamptz '2020-01-01 03:00+00' + (g / :dags) * interval '1 day', "
                "'scheduler', '{}', "
                "timestamptz '2020-01-01 03:00+00' + (g / :dags) * interval '1 day', "
                "timestamptz '2020-01-01 03:10+00' + (g / :dags) * interval '1 day', "
                "CASE WHEN g % 50 = 0 THEN 'failed: t19.yaml (after 1 attempt)' END "
                "FROM generate_series(0, :runs - 1) AS g"
            ),
            {"runs": runs, "dags": dags},
        )
        conn.execute(
            text(
                "INSERT INTO task_run (dag_run_id, task_name, attempt, status, manager, "
                "created_at, not_before, started_at, ended_at, host, exit_code, error, "
                "output_tail) "
                "SELECT r.id, format('t%s.yaml', k), 1, "
                "CASE WHEN r.status = 'failed' AND k = :last THEN 'failed' ELSE 'succeeded' END, "
                "'worker', r.created_at + k * interval '20 seconds', "
                "r.created_at + k * interval '20 seconds', r.created_at + k * interval '20 seconds', "
                "r.created_at + k * interval '20 seconds' + interval '15 seconds', 'bench-host:1', "
                "CASE WHEN r.status = 'failed' AND k = :last THEN 1 ELSE 0 END, "
                "CASE WHEN r.status = 'failed' AND k = :last THEN 'exit code 1' END, "
                "'some output of the task' "
                "FROM dag_run r CROSS JOIN generate_series(0, :last) AS k"
            ),
            {"last": tasks - 1},
        )
    with engine.connect() as conn:
        autocommit = conn.execution_options(isolation_level="AUTOCOMMIT")
        autocommit.execute(text("VACUUM ANALYZE"))
        # Write the new pages out now, so that the checkpointer does not do it while we time.
        autocommit.execute(text("CHECKPOINT"))
    return time.perf_counter() - started


def explain(db: BenchDatabase, engine: Engine, captured: list[tuple[str, Any]]) -> None:
    print("\n## EXPLAIN (ANALYZE, BUFFERS) of each statement of one idle pass (rolled back)")
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        for statement, params in captured:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, params)
            lines = [row[0] for row in cursor.fetchall()]
            raw.rollback()
            print(f"\n### {label(statement)}")
            for line in lines:
                print(f"    {line if len(line) <= 160 else line[:157] + '...'}")
    finally:
        raw.close()


def profile(engine: Engine, root: Path, passes: int) -> None:
    import cProfile
    import pstats

    size = SIZES[-1]
    registry = write_project(root / f"dags_{size}", scheduled_dags(size))
    ticker = Ticker(
        registry, InstantManager(capacity=1000), engine, "config.py", clock=FakeClock(NOW)
    )
    ticker.run_pass()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(passes):
        ticker.run_pass()
    profiler.disable()
    print(f"\n## cProfile of {passes} idle passes at {size} DAGs (top 25 by cumulative time)")
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_database_option(parser)
    parser.add_argument("--passes", type=int, default=200, help="timed passes per size")
    parser.add_argument("--runs", type=int, default=50_000, help="finished dag runs to add")
    parser.add_argument("--tasks-per-run", type=int, default=20)
    parser.add_argument(
        "--profile", action="store_true", help="also print a cProfile of the largest size's passes"
    )
    parser.add_argument(
        "--cross-dag", action="store_true", help="each DAG reads a task of the one before it"
    )
    args = parser.parse_args()

    with bench_database(args.database_url, "idle_pass") as db, tempfile.TemporaryDirectory() as tmp:
        header(
            "Idle pass" + (" (every DAG with an input on another DAG)" if args.cross_dag else ""),
            db,
        )
        engine = engine_for(db)
        try:
            empty = [
                measure_size(engine, Path(tmp), size, args.passes, args.cross_dag) for size in SIZES
            ]
            report("empty history", empty)
            seconds = generate_history(db, engine, args.runs, args.tasks_per_run, max(SIZES))
            with engine.connect() as conn:
                counts = conn.execute(
                    text("SELECT (SELECT count(*) FROM dag_run), (SELECT count(*) FROM task_run)")
                ).one()
            print(
                f"\nhistory: {counts[0]:,} finished dag runs, {counts[1]:,} finished task runs "
                f"(generated and VACUUM ANALYZEd in {seconds:.1f} s)"
            )
            full = [
                measure_size(engine, Path(tmp), size, args.passes, args.cross_dag) for size in SIZES
            ]
            report("with the history", full)
            ratio = full[-1]["median"] / empty[-1]["median"]
            print(
                f"\nmedian idle pass at {SIZES[-1]} DAGs, history / empty: {ratio:.2f}x; "
                f"target: median <= 25 ms with the history -> "
                f"{'met' if full[-1]['median'] <= 0.025 else 'MISSED'}; statements per pass "
                f"{'constant' if len({tuple(r['statements']) for r in full}) == 1 else 'GROW'}"
            )
            explain(db, engine, full[-1]["captured"])
            if args.profile:
                profile(engine, Path(tmp), args.passes)
        finally:
            engine.dispose()


if __name__ == "__main__":
    main()
