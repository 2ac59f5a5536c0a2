"""What checking waits on other DAGs costs: ``queries.satisfied_windows`` over a history.

Adds the history of ``idle_pass.py`` (default 50,000 finished scheduled runs over 500
DAGs x 20 task runs = 1,000,000 task runs, ``VACUUM ANALYZE``), then times the one
statement that checks every window of a pass at once: 500 windows (one per DAG;
half at a run's fire time, half between two runs), and 10 windows without
an earliest bound (upstream DAGs without a schedule). Prints the median of
``--repeat`` calls and ``EXPLAIN (ANALYZE, BUFFERS)`` of each.

    python benchmarks/input_waits.py [--repeat 20] [--runs 50000]
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from _common import add_database_option, bench_database, engine_for, header, median, ms
from idle_pass import generate_history
from sqlalchemy import Engine, event

from workflows_tick import queries
from workflows_tick.plan import InputWindow

DAGS = 500
TASK = "t19.yaml"
FIRST = datetime(2020, 1, 1, 3, tzinfo=UTC)
"""The history's first fire time (daily at 03:00, every DAG)."""


def windows() -> dict[str, list[InputWindow]]:
    held = [
        InputWindow(f"dag_{i:04d}", TASK, FIRST + timedelta(days=60), FIRST + timedelta(days=60))
        for i in range(DAGS // 2)
    ]
    between = [  # from one 03:00 to 02:00 the next day: no run of the DAG in it
        InputWindow(
            f"dag_{i:04d}",
            TASK,
            FIRST + timedelta(days=60, minutes=1),
            FIRST + timedelta(days=60, hours=23),
        )
        for i in range(DAGS // 2, DAGS)
    ]
    unbounded = [
        InputWindow(f"dag_{i:04d}", TASK, None, FIRST + timedelta(days=50)) for i in range(10)
    ]
    return {
        f"{DAGS} windows ({DAGS // 2} at a run's fire time; 1 run in 50 failed)": held + between,
        "10 windows without an earliest bound": unbounded,
    }


def measure(engine: Engine, found: list[InputWindow], repeat: int) -> tuple[float, int, Any]:
    captured: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, params: Any, *rest: Any) -> None:
        captured.append((statement, params))

    event.listen(engine, "before_cursor_execute", capture)
    times: list[float] = []
    with engine.connect() as conn:
        for _ in range(repeat):
            started = time.perf_counter()
            satisfied = queries.satisfied_windows(conn, found)
            times.append(time.perf_counter() - started)
    event.remove(engine, "before_cursor_execute", capture)
    return median(times), len(satisfied), captured[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_database_option(parser)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--runs", type=int, default=50_000, help="finished dag runs to add")
    args = parser.parse_args()
    with bench_database(args.database_url, "input_waits") as db:
        header("Checking waits on other DAGs", db)
        engine = engine_for(db)
        try:
            seconds = generate_history(db, engine, args.runs, 20, DAGS)
            print(f"history: {args.runs:,} runs x 20 task runs, generated in {seconds:.1f} s\n")
            for title, found in windows().items():
                took, satisfied, (statement, params) = measure(engine, found, args.repeat)
                print(f"## {title}: {satisfied} satisfied, median {ms(took)}")
                raw = engine.raw_connection()
                try:
                    cursor = raw.cursor()
                    cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, params)
                    for (line,) in cursor.fetchall():
                        print(f"    {line if len(line) <= 160 else line[:157] + '...'}")
                    raw.rollback()
                finally:
                    raw.close()
                print()
        finally:
            engine.dispose()


if __name__ == "__main__":
    main()
