"""State-machine throughput: one run of N independent no_op tasks, in-process managers.

Each scheduler is a ``multiprocessing`` process (spawned) with its own engine, its
own ``Ticker`` and an ``InstantManager`` (every attempt it starts finishes at its
next poll), so only the tick's own work is measured: waiting -> running ->
succeeded, with no task processes. Every scheduler loads the DAG and connects, then
waits at a barrier; once all are there the run is triggered, and they run passes
back to back (sleeping 2 ms after a pass with nothing to do) until it has ended.
Throughput = task runs / (dag_run.ended_at - dag_run.created_at).

    python benchmarks/throughput.py [--tasks 2000] [--schedulers 1,2,4] [--capacity 100,1000]
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time
from multiprocessing.synchronize import Barrier, Event
from pathlib import Path
from typing import Any

import psycopg2
from _common import (
    BenchDatabase,
    add_database_option,
    bench_database,
    header,
    median,
)

from workflows_tick.testing import InstantManager, write_project

RUN_TIMEOUT = 60.0
IDLE_SLEEP = 0.002
"""A scheduler with nothing to do sleeps this long before its next pass."""


def independent_dag(tasks: int) -> dict[str, str]:
    files = {"workflow.yaml": "description: independent no_op tasks\nretries: 0\n"}
    files.update({f"t{index:04d}.yaml": "type: no_op\n" for index in range(tasks)})
    return files


def scheduler(
    url: str, root: str, capacity: int, barrier: Barrier, stop: Event, results: Any
) -> None:
    """One scheduler process: warm up, wait at the barrier, pass until told to stop."""
    from workflows_tick.dags import register_directory
    from workflows_tick.database import make_engine
    from workflows_tick.tick import Ticker

    engine = make_engine(url, purpose="benchmark")
    manager = InstantManager(capacity=capacity)
    ticker = Ticker(register_directory(Path(root)), manager, engine, str(Path(root) / "config.py"))
    ticker.run_pass()  # connect, warm the caches; nothing is running yet
    try:
        barrier.wait(timeout=RUN_TIMEOUT)
        passes = idle = 0
        busy = 0.0
        while not stop.is_set():
            started = time.perf_counter()
            result = ticker.run_pass()
            passes += 1
            if result.did_work:
                busy += time.perf_counter() - started
            else:
                idle += 1
                time.sleep(IDLE_SLEEP)
        results.put({"passes": passes, "idle": idle, "started": len(manager.started), "busy": busy})
    finally:
        engine.dispose()


def trigger(db: BenchDatabase) -> int:
    with psycopg2.connect(db.url) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO dag_run (dag_name, status, trigger, creator, parameters, created_at) "
            "VALUES ('wide', 'running', 'manual', 'benchmark', '{}', clock_timestamp()) "
            "RETURNING id"
        )
        row = cur.fetchone()
    conn.close()
    assert row is not None
    return int(row[0])


def run_state(db: BenchDatabase, run_id: int) -> tuple[str, float | None, int]:
    with psycopg2.connect(db.url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT status, extract(epoch FROM ended_at - created_at)::float8, "
            "(SELECT count(*) FROM task_run WHERE dag_run_id = r.id AND status = 'succeeded') "
            "FROM dag_run r WHERE id = %s",
            (run_id,),
        )
        row = cur.fetchone()
    conn.close()
    assert row is not None
    return str(row[0]), row[1], int(row[2])


def measure(
    db: BenchDatabase, root: Path, schedulers: int, capacity: int, tasks: int
) -> tuple[float, list[dict[str, Any]]]:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(schedulers + 1)
    stop = context.Event()
    results = context.Queue()
    processes = [
        context.Process(
            target=scheduler,
            args=(db.engine_url, str(root), capacity, barrier, stop, results),
            daemon=True,
        )
        for _ in range(schedulers)
    ]
    for process in processes:
        process.start()
    try:
        barrier.wait(timeout=RUN_TIMEOUT)  # every scheduler is loaded and connected
        run_id = trigger(db)
        deadline = time.monotonic() + RUN_TIMEOUT
        while True:
            status, seconds, succeeded = run_state(db, run_id)
            if status != "running":
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"the run did not end in {RUN_TIMEOUT:.0f} s")
            time.sleep(0.02)
        stop.set()
        stats = [results.get(timeout=30) for _ in processes]
        for process in processes:
            process.join(timeout=30)
        if status != "succeeded" or succeeded != tasks or seconds is None:
            raise SystemExit(f"run {run_id}: {status}, {succeeded} of {tasks} task runs succeeded")
        return seconds, stats
    finally:
        stop.set()
        for process in processes:
            if process.is_alive():
                process.terminate()
                process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_database_option(parser)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--schedulers", default="1,2,4", help="comma-separated process counts")
    parser.add_argument(
        "--capacity", default="100,1000", help="comma-separated InstantManager capacities"
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--no-event-triggers",
        action="store_true",
        help="disable the event outbox triggers of dag_run and task_run (what they cost)",
    )
    args = parser.parse_args()
    counts = [int(n) for n in args.schedulers.split(",")]
    capacities = [int(n) for n in args.capacity.split(",")]

    with (
        bench_database(args.database_url, "throughput") as db,
        tempfile.TemporaryDirectory() as tmp,
    ):
        if args.no_event_triggers:
            with psycopg2.connect(db.url) as conn, conn.cursor() as cur:
                cur.execute("ALTER TABLE dag_run DISABLE TRIGGER USER")
                cur.execute("ALTER TABLE task_run DISABLE TRIGGER USER")
            conn.close()
        triggers = " (event triggers disabled)" if args.no_event_triggers else ""
        header(f"Throughput: one run of {args.tasks} independent no_op tasks{triggers}", db)
        root = Path(tmp)
        write_project(root, {"wide": independent_dag(args.tasks)})
        print(
            "| capacity per scheduler | schedulers | trigger -> run succeeded (median) "
            "| task runs/s (median) | all repeats (task runs/s) | passes with work per scheduler "
            "| ms per pass with work |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for capacity in capacities:
            for count in counts:
                seconds: list[float] = []
                passes: list[int] = []
                per_pass: list[float] = []
                for _ in range(args.repeats):
                    elapsed, stats = measure(db, root, count, capacity, args.tasks)
                    seconds.append(elapsed)
                    passes.extend(s["passes"] - s["idle"] for s in stats)
                    per_pass.extend(
                        s["busy"] / (s["passes"] - s["idle"])
                        for s in stats
                        if s["passes"] > s["idle"]
                    )
                rates = [args.tasks / s for s in seconds]
                print(
                    f"| {capacity} | {count} | {median(seconds) * 1000:.0f} ms | "
                    f"{args.tasks / median(seconds):,.0f} | "
                    f"{', '.join(f'{r:,.0f}' for r in rates)} | "
                    f"{median(passes):.0f} | {median(per_pass) * 1000:.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
