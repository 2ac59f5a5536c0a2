"""Task start from the fork server against a new interpreter per task.

1. ``start`` → the task's code running, in process: a ``WorkerTaskManager`` with
   the fork server and one without it start the same Python task alternately; the
   task prints ``time.time()`` as its first statement.
2. Under an already-running ``workflows CONFIG schedule worker`` (looping,
   ``--interval 5``, listening for notifications), once with ``--fork-server`` and
   once with ``--no-fork-server`` per repeat: trigger a DAG with
   ``workflows_tick.scheduler.trigger_dag`` and read from the database how long the
   run took (``dag_run.ended_at - created_at``) and when its first task was claimed
   (first ``task_run.started_at - created_at``). DAGs: a chain of 50 no_op tasks, a
   chain of 10 and a fan-out of 20 (``--concurrency 20``).

With ``--baseline-python PY`` (a Python whose ``import workflows_tick`` is another
revision, e.g. a virtualenv with that checkout installed), its fork server and its
scheduler join each alternation, and the ratios this / baseline are printed: both
are measured in the same minutes, so the ratio holds on a busy machine. Everything
runs from a temporary folder, so that neither interpreter imports the
``workflows_tick`` of the current directory.

    python benchmarks/forkserver.py [--starts 30] [--repeats 5] [--baseline-python PY]
        [--database-url URL]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg2
from _common import (
    BenchDatabase,
    add_database_option,
    bench_database,
    engine_for,
    header,
    median,
    ms,
    percentile,
    subprocess_env,
    workflows_command,
)

CONFIG = (
    "import os\nfrom workflows_tick import dags\n"
    "DAGS = dags.register_directory(os.path.dirname(__file__))\n"
)
STAMP_TASK = "import time\n\n\ndef run(context):\n    print('CODE', repr(time.time()))\n"


def write_dags(root: Path, dags: dict[str, dict[str, str]]) -> Path:
    for name, files in dags.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for file, text in files.items():
            (root / name / file).write_text(text)
    (root / "config.py").write_text(CONFIG)
    return root / "config.py"


def chain(tasks: int) -> dict[str, str]:
    files = {"workflow.yaml": "description: a chain of no_op tasks\nretries: 0\n"}
    for index in range(tasks):
        inputs = f"inputs: [t{index - 1:02d}.yaml]\n" if index else ""
        files[f"t{index:02d}.yaml"] = f"type: no_op\n{inputs}"
    return files


def fan_out(tasks: int) -> dict[str, str]:
    files = {"workflow.yaml": "description: independent no_op tasks\nretries: 0\n"}
    for index in range(tasks):
        files[f"t{index:02d}.yaml"] = "type: no_op\n"
    return files


# --- 1. start -> code running ----------------------------------------------------------


def start_latency(config: Path, starts: int, baseline: str | None) -> None:
    from workflows_tick.config import load_registry
    from workflows_tick.managers.base import Launch
    from workflows_tick.managers.worker import WorkerTaskManager

    dag = load_registry(str(config)).get("stamp")
    managers = {
        "fork server": WorkerTaskManager(fork_server=True),
        "new interpreter": WorkerTaskManager(fork_server=False),
    }
    if baseline:
        managers["fork server, baseline"] = WorkerTaskManager(python=baseline, fork_server=True)
    for manager in managers.values():
        manager.start_fork_server()
    latencies: dict[str, list[float]] = {name: [] for name in managers}
    next_id = 0
    try:
        for round_ in range(starts + 2):  # the first two rounds are untimed (.pyc, caches)
            for name, manager in managers.items():
                next_id += 1
                launch = Launch(next_id, 1, 1, dag, dag.task("stamp.py"), str(config))
                before = time.time()
                manager.start(launch)
                manager.wait_all(60)
                [outcome] = manager.poll([]).finished
                line = next(
                    x for x in (outcome.output_tail or "").splitlines() if x.startswith("CODE ")
                )
                if round_ >= 2:
                    latencies[name].append(float(line.split()[1]) - before)
    finally:
        for manager in managers.values():
            manager.shutdown(kill=True)
    print(f"\n## start -> the task's code running ({starts} starts each, alternating)")
    print("| manager | median | p95 |")
    print("| --- | --- | --- |")
    for name, values in latencies.items():
        print(f"| {name} | {ms(median(values))} | {ms(percentile(values, 0.95))} |")
    ratio = median(latencies["new interpreter"]) / median(latencies["fork server"])
    print(f"new interpreter / fork server: {ratio:.1f}x")
    if baseline:
        ratio = median(latencies["fork server"]) / median(latencies["fork server, baseline"])
        print(f"fork server, this / baseline: {ratio:.2f}")


# --- 2. under a running scheduler ---------------------------------------------------------

LISTENING = (
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE datname = current_database() AND query LIKE 'LISTEN %'"
)


def one_value(db: BenchDatabase, sql: str, params: tuple[object, ...] | None = None) -> object:
    with psycopg2.connect(db.url) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        row = cur.fetchone()
    conn.close()
    return None if row is None else row[0]


def timed_run(db: BenchDatabase, dag: str) -> tuple[float, float]:
    """Trigger ``dag``; (run seconds, seconds to the first claim), from the database."""
    from workflows_tick.scheduler import trigger_dag

    engine = engine_for(db)
    try:
        run = trigger_dag(dag, creator="benchmark", engine=engine)
    finally:
        engine.dispose()
    deadline = time.monotonic() + 300
    while one_value(db, "SELECT status FROM dag_run WHERE id = %s", (run.id,)) == "running":
        if time.monotonic() > deadline:
            raise SystemExit(f"run {run.id} of {dag} did not end in 300 s")
        time.sleep(0.02)
    status = one_value(db, "SELECT status FROM dag_run WHERE id = %s", (run.id,))
    if status != "succeeded":
        raise SystemExit(f"run {run.id} of {dag}: {status}")
    total = one_value(
        db,
        "SELECT extract(epoch FROM ended_at - created_at)::float8 FROM dag_run WHERE id = %s",
        (run.id,),
    )
    first = one_value(
        db,
        "SELECT extract(epoch FROM min(t.started_at) - min(r.created_at))::float8 "
        "FROM task_run t JOIN dag_run r ON r.id = t.dag_run_id WHERE r.id = %s",
        (run.id,),
    )
    return float(total), float(first)  # type: ignore[arg-type]


def under_scheduler(
    db: BenchDatabase, config: Path, fork: bool, dags: list[str], python: str | None = None
) -> dict[str, tuple[float, float]]:
    flag = "--fork-server" if fork else "--no-fork-server"
    command = workflows_command(
        config, "schedule", "worker", "--interval", "5", "--concurrency", "20", flag
    )
    if python is not None:
        command[0] = python
    process = subprocess.Popen(
        command, env=subprocess_env(db), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 120
        while one_value(db, LISTENING) != 1:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the scheduler did not start listening")
            time.sleep(0.05)
        time.sleep(1.0)  # past its first passes: asleep, as a scheduler usually is
        return {dag: timed_run(db, dag) for dag in dags}
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def scheduler_runs(db: BenchDatabase, config: Path, repeats: int, baseline: str | None) -> None:
    dags = ["chain10", "fanout20", "chain50"]
    results: dict[tuple[bool, str], list[tuple[float, float]]] = {}
    baselines: dict[str, list[float]] = {dag: [] for dag in dags}
    for _ in range(repeats):
        for fork in (True, False):
            for dag, figures in under_scheduler(db, config, fork, dags).items():
                results.setdefault((fork, dag), []).append(figures)
        if baseline:
            for dag, (total, _) in under_scheduler(db, config, True, dags, baseline).items():
                baselines[dag].append(total)
    print(f"\n## trigger -> run succeeded under a running `schedule worker` ({repeats} repeats)")
    print("| DAG | fork server | new interpreter | ratio | trigger -> first claim (fork server) |")
    print("| --- | --- | --- | --- | --- |")
    for dag in dags:
        forked = [t for t, _ in results[(True, dag)]]
        execed = [t for t, _ in results[(False, dag)]]
        first = [f for _, f in results[(True, dag)]]
        print(
            f"| {dag} | {median(forked):.3f} s ({min(forked):.3f}-{max(forked):.3f}) "
            f"| {median(execed):.3f} s ({min(execed):.3f}-{max(execed):.3f}) "
            f"| {median(forked) / median(execed):.2f} | {ms(median(first))} "
            f"({ms(min(first))}-{ms(max(first))}) |"
        )
    if baseline:
        print("\n| DAG | fork server, this | fork server, baseline | this / baseline |")
        print("| --- | --- | --- | --- |")
        for dag in dags:
            forked = [t for t, _ in results[(True, dag)]]
            print(
                f"| {dag} | {median(forked):.3f} s | {median(baselines[dag]):.3f} s "
                f"| {median(forked) / median(baselines[dag]):.2f} |"
            )
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--baseline-python", default=None)
    add_database_option(parser)
    args = parser.parse_args()
    with bench_database(args.database_url, "forkserver") as db, tempfile.TemporaryDirectory() as d:
        os.chdir(d)  # `python -m` puts the current folder first on sys.path
        header("fork server", db)
        config = write_dags(
            Path(d),
            {
                "stamp": {"workflow.yaml": "description: x\n", "stamp.py": STAMP_TASK},
                "chain10": chain(10),
                "chain50": chain(50),
                "fanout20": fan_out(20),
            },
        )
        start_latency(config, args.starts, args.baseline_python)
        scheduler_runs(db, config, args.repeats, args.baseline_python)


if __name__ == "__main__":
    sys.exit(main())
