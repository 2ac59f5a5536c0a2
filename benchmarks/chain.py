"""Scheduling overhead: a chain of no_op tasks under the real ``schedule worker`` command.

Measures, in one run of this script:

* the cost of one task process, ``workflows <config> run chain -o <task>`` (median
  of ``--samples`` runs, after a warm-up);
* ``workflows <config> trigger chain`` then ``workflows <config> schedule worker
  --until-idle --interval 1``, wall time from spawning the scheduler to its exit,
  ``--repeats`` times;
* from the task_run rows: the gap between one task's ``ended_at`` and the next one's
  ``started_at``, and the interval between successive starts.

Target: the scheduler finishes within 1.2 x (tasks x one task process) + 1 s.

    python benchmarks/chain.py [--tasks 50] [--samples 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import tempfile
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

import psycopg2
from _common import (
    BenchDatabase,
    add_database_option,
    bench_database,
    header,
    median,
    ms,
    percentile,
    run_quietly,
    subprocess_env,
    workflows_command,
)

from workflows_tick.testing import write_project

SCHEDULER_TIMEOUT = 120.0


def chain_dag(tasks: int) -> dict[str, str]:
    files = {"workflow.yaml": "description: a chain of no_op tasks\nretries: 0\n"}
    for index in range(tasks):
        inputs = f"inputs: [t{index - 1:02d}.yaml]\n" if index else ""
        files[f"t{index:02d}.yaml"] = f"type: no_op\n{inputs}"
    return files


def task_process_cost(
    config: Path, env: dict[str, str], task: str, samples: int, warm: bool = False
) -> list[float]:
    command = workflows_command(config, "run", "chain", "-o", task)
    for _ in range(2 if warm else 0):  # untimed: write .pyc files, warm the page cache
        run_quietly(command, env)
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        run_quietly(command, env)
        times.append(time.perf_counter() - started)
    return times


def run_scheduler(config: Path, env: dict[str, str]) -> tuple[float, float, float]:
    """Wall seconds from spawn to exit, and the spawn and exit times (epoch seconds)."""
    command = workflows_command(config, "schedule", "worker", "--until-idle", "--interval", "1")
    spawned_at = time.time()
    started = time.perf_counter()
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        _, stderr = process.communicate(timeout=SCHEDULER_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
        raise SystemExit(f"the scheduler did not finish in {SCHEDULER_TIMEOUT:.0f} s") from None
    elapsed = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"the scheduler failed ({process.returncode}):\n{stderr}")
    return elapsed, spawned_at, spawned_at + elapsed


def task_rows(db: BenchDatabase, run_id: int) -> list[tuple[str, str, float, float]]:
    with psycopg2.connect(db.url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT task_name, status, extract(epoch FROM started_at)::float8, "
            "extract(epoch FROM ended_at)::float8 FROM task_run WHERE dag_run_id = %s "
            "ORDER BY started_at, id",
            (run_id,),
        )
        rows = cur.fetchall()
        cur.execute("SELECT status FROM dag_run WHERE id = %s", (run_id,))
        status = cur.fetchone()
    conn.close()
    if status is None or status[0] != "succeeded":
        raise SystemExit(f"run {run_id} did not succeed: {status}")
    return [(str(r[0]), str(r[1]), float(r[2]), float(r[3])) for r in rows]


def breakdown(db: BenchDatabase, config: Path, env: dict[str, str], cost: float) -> None:
    """The same chain driven in this process, as the loop drives it, timed step by step."""
    from workflows_tick.config import load_registry
    from workflows_tick.database import make_engine
    from workflows_tick.managers.worker import WorkerTaskManager
    from workflows_tick.scheduler import trigger_dag
    from workflows_tick.tick import Ticker

    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)  # the children inherit the scheduler's environment
    engine = make_engine(db.engine_url, purpose="benchmark")
    try:
        manager = WorkerTaskManager(concurrency=1)
        launches: list[float] = []
        real_start = manager.start

        def timed_start(launch: Any) -> None:
            started = time.perf_counter()
            real_start(launch)
            launches.append(time.perf_counter() - started)

        manager.start = timed_start  # type: ignore[method-assign]
        registry = load_registry(str(config))
        ticker = Ticker(registry, manager, engine, str(config))
        trigger_dag("chain", creator="benchmark", engine=engine)
        passes: list[float] = []
        waits: list[float] = []
        while True:
            started = time.perf_counter()
            result = ticker.run_pass()
            if result.started:
                passes.append(time.perf_counter() - started)
            if not result.running_runs and not manager.in_flight():
                break
            if result.did_work:
                continue
            started = time.perf_counter()
            manager.wait(1.0)
            waits.append(time.perf_counter() - started)
    finally:
        engine.dispose()
        os.environ.clear()
        os.environ.update(saved)
    print("\nin-process breakdown of one task's cycle (medians over the chain):")
    print(f"  pass that records, advances, claims and launches: {ms(median(passes))}")
    print(f"    of which manager.start (spawn):                 {ms(median(launches))}")
    print(f"  manager.wait until the child's exit is seen:      {ms(median(waits))}")
    print(f"  one task process run alone (above):               {ms(cost)}")
    print(
        f"  overhead per task = pass + wait - task process:    "
        f"{ms(median(passes) + median(waits) - cost)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_database_option(parser)
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--samples", type=int, default=20, help="timed task processes")
    parser.add_argument("--repeats", type=int, default=5, help="scheduler runs of the chain")
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="also run the chain in this process and time the pass, the launch and the wait",
    )
    args = parser.parse_args()

    with bench_database(args.database_url, "chain") as db, tempfile.TemporaryDirectory() as tmp:
        header(f"Chain of {args.tasks} no_op tasks under `schedule worker`", db)
        root = Path(tmp)
        write_project(root, {"chain": chain_dag(args.tasks)})
        config = root / "config.py"
        env = subprocess_env(db)
        middle = f"t{args.tasks // 2:02d}.yaml"
        task_process_cost(config, env, middle, 0, warm=True)
        costs: list[float] = []
        walls: list[float] = []
        ratios: list[float] = []
        gaps: list[float] = []
        intervals: list[float] = []
        durations: list[float] = []
        startups: list[float] = []
        exits: list[float] = []
        for repeat in range(args.repeats):
            # Measured right before each scheduler run, so both see the same machine load.
            samples = task_process_cost(config, env, middle, args.samples)
            cost = median(samples)
            costs.extend(samples)
            budget = 1.2 * args.tasks * cost + 1.0
            run_id = int(run_quietly(workflows_command(config, "trigger", "chain"), env).strip())
            wall, spawned_at, exited_at = run_scheduler(config, env)
            rows = task_rows(db, run_id)
            assert len(rows) == args.tasks and all(r[1] == "succeeded" for r in rows), rows
            walls.append(wall)
            ratios.append(wall / budget)
            gaps.extend(nxt[2] - prev[3] for prev, nxt in pairwise(rows))
            intervals.extend(nxt[2] - prev[2] for prev, nxt in pairwise(rows))
            durations.extend(r[3] - r[2] for r in rows)
            startups.append(rows[0][2] - spawned_at)
            exits.append(exited_at - rows[-1][3])
            print(
                f"run {repeat + 1}: one task process {ms(cost)} (median of {args.samples}); "
                f"scheduler wall {wall:.2f} s, budget {budget:.2f} s -> "
                f"{'met' if wall <= budget else 'MISSED'}; first task started "
                f"{ms(startups[-1])} after spawn; exit {ms(exits[-1])} after the last task ended"
            )
        cost = median(costs)
        wall = median(walls)
        budget = 1.2 * args.tasks * cost + 1.0
        print(
            f"\none task process (`workflows config.py run chain -o {middle}`): median "
            f"{ms(cost)}, p95 {ms(percentile(costs, 0.95))}, min {ms(min(costs))} "
            f"({len(costs)} runs)"
        )
        print(
            f"scheduler wall time, median of {args.repeats}: {wall:.2f} s = "
            f"{wall / (args.tasks * cost):.2f} x ({args.tasks} x one task process); "
            f"target <= 1.2 x + 1 s = {budget:.2f} s -> {'met' if wall <= budget else 'MISSED'} "
            f"(wall / budget per run: {', '.join(f'{r:.2f}' for r in ratios)})"
        )
        steady = (wall - median(startups) - median(exits)) / args.tasks
        print(
            f"per task inside the run ((wall - start-up - exit) / tasks): {ms(steady)} = "
            f"{steady / cost:.2f} x one task process"
        )
        print(
            f"task_run ended_at -> next started_at: median {ms(median(gaps))}, "
            f"p95 {ms(percentile(gaps, 0.95))} (target median < 50 ms)"
        )
        print(
            f"started_at -> next started_at: median {ms(median(intervals))}, "
            f"p95 {ms(percentile(intervals, 0.95))}; minus one task process: "
            f"{ms(median(intervals) - cost)}"
        )
        print(
            f"task_run started_at -> ended_at: median {ms(median(durations))}, "
            f"p95 {ms(percentile(durations, 0.95))}"
        )
        print(
            f"scheduler start-up (spawn -> first started_at): median {ms(median(startups))}; "
            f"exit (last ended_at -> process exit): median {ms(median(exits))}"
        )
        if args.breakdown:
            breakdown(db, config, env, cost)
        print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
