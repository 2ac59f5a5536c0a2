"""Scrape cost of ``/metrics``: gauges read from the database on every scrape.

Times ``metrics.render(engine)`` in-process (the whole body: queries, the
collector, the text format) with 500 scheduled DAGs, first on an empty history,
then with the history of ``idle_pass.py`` (default 50,000 finished runs x 20 task
runs = 1,000,000 task runs over the 500 DAG names) plus the events such a history
leaves behind (one per run start and end, three per task run, all delivered),
after ``VACUUM ANALYZE``. Target: under 50 ms.

    python benchmarks/metrics_scrape.py [--scrapes 100] [--runs 50000] [--tasks-per-run 20]
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta

from _common import (
    add_database_option,
    bench_database,
    engine_for,
    header,
    median,
    ms,
    percentile,
)
from idle_pass import generate_history
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, text

from workflows_tick import metrics, queries

DAGS = 500


def add_cursors(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO dag_schedule (dag_name, schedule, timezone, next_fire_at, updated_at) "
                "SELECT format('dag_%s', lpad(g::text, 4, '0')), '0 3 * * *', 'UTC', "
                ":fire, now() FROM generate_series(0, :n - 1) AS g"
            ),
            {"n": DAGS, "fire": datetime.now(UTC) + timedelta(hours=1)},
        )


def complete_events(engine: Engine) -> float:
    """Give the generated history the events a real one has, all delivered."""
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(text("UPDATE event SET delivered_at = created_at, attempts = 1"))
        conn.execute(
            text(
                "INSERT INTO event (created_at, kind, dag_run_id, task_run_id, dag_name, "
                "task_name, attempt, status, attempts, delivered_at) "
                "SELECT t.ended_at, k.kind, t.dag_run_id, t.id, r.dag_name, t.task_name, "
                "t.attempt, k.status, 1, t.ended_at FROM task_run t JOIN dag_run r "
                "ON r.id = t.dag_run_id CROSS JOIN (VALUES ('task_run_started', 'running'), "
                "('task_run_' || 'succeeded', 'succeeded')) AS k(kind, status)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO event (created_at, kind, dag_run_id, dag_name, status, attempts, "
                "delivered_at) SELECT ended_at, 'run_' || status, id, dag_name, status, 1, "
                "ended_at FROM dag_run"
            )
        )
    with engine.connect() as conn:
        autocommit = conn.execution_options(isolation_level="AUTOCOMMIT")
        autocommit.execute(text("VACUUM ANALYZE"))
        autocommit.execute(text("CHECKPOINT"))
    return time.perf_counter() - started


def measure(engine: Engine, scrapes: int) -> dict[str, float]:
    for _ in range(5):  # warm the pool, the caches, the plans and the import
        body = metrics.render(engine)
    families = list(text_string_to_metric_families(body.decode()))
    renders, gauges = [], []
    for _ in range(scrapes):
        started = time.perf_counter()
        metrics.render(engine)
        renders.append(time.perf_counter() - started)
        with engine.connect() as conn:
            started = time.perf_counter()
            queries.metric_gauges(conn)
            gauges.append(time.perf_counter() - started)
            conn.rollback()
    return {
        "median": median(renders),
        "p95": percentile(renders, 0.95),
        "queries": median(gauges),
        "samples": sum(len(f.samples) for f in families),
        "bytes": len(body),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scrapes", type=int, default=100)
    parser.add_argument("--runs", type=int, default=50_000)
    parser.add_argument("--tasks-per-run", type=int, default=20)
    add_database_option(parser)
    args = parser.parse_args()
    with bench_database(args.database_url, "metrics") as db:
        header("Scrape cost of /metrics", db)
        engine = engine_for(db)
        try:
            add_cursors(engine)
            empty = measure(engine, args.scrapes)
            seconds = generate_history(db, engine, args.runs, args.tasks_per_run, DAGS)
            seconds += complete_events(engine)
            with engine.connect() as conn:
                counts = conn.execute(
                    text(
                        "SELECT (SELECT count(*) FROM dag_run), (SELECT count(*) FROM task_run), "
                        "(SELECT count(*) FROM event)"
                    )
                ).one()
            print(
                f"history: {counts[0]:,} runs, {counts[1]:,} task runs, {counts[2]:,} events "
                f"(generated in {seconds:.0f} s)"
            )
            full = measure(engine, args.scrapes)
        finally:
            engine.dispose()
    print("\n| history | render median | render p95 | of which queries (median) | samples | body |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, r in (("empty", empty), ("1M task runs", full)):
        print(
            f"| {name} | {ms(r['median'])} | {ms(r['p95'])} | {ms(r['queries'])} | "
            f"{r['samples']:.0f} | {r['bytes'] / 1024:.0f} KiB |"
        )
    print(f"\nhistory / empty: {full['median'] / empty['median']:.2f}x")


if __name__ == "__main__":
    main()
