"""Web page speed: server time of every page with 500 DAGs and 1,000,000 task runs.

Writes 500 scheduled DAGs of 4 no_op tasks, adds 250,000 finished runs x 4 task
runs = 1,000,000 task runs (one run in 50 failed after three attempts of its last
task) with ``INSERT ... SELECT generate_series``, ``VACUUM ANALYZE``, then starts
the real ``workflows CONFIG ui`` and requests each page ``--repeat`` times over HTTP.
The figure is the server's own ``Server-Timing: app;dur=`` (handler, queries and
template, without the network), with the client's wall time and the ``ui``
process's CPU time per request (from /proc: what the page costs in Python, whatever
else the machine is doing) beside it.

    python benchmarks/ui_pages.py [--runs 250000] [--repeat 30]

Target: every page under 150 ms (median and p95).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from _common import (
    add_database_option,
    bench_database,
    engine_for,
    header,
    median,
    percentile,
    scheduled_dags,
    subprocess_env,
    workflows_command,
)
from sqlalchemy import Engine, text

from workflows_tick.testing import write_project

DAGS = 500
TASKS = 4
TARGET_MS = 150.0


def fill(engine: Engine, runs: int) -> float:
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
                "CASE WHEN g % 50 = 0 THEN 'failed: t3.yaml (after 3 attempts)' END "
                "FROM generate_series(0, :runs - 1) AS g"
            ),
            {"runs": runs, "dags": DAGS},
        )
        # Succeeded runs: one attempt per task. Failed ones: t0-t2 succeed, t3 fails 3 times
        # (so a failed run has 6 task runs and the total stays near runs x TASKS).
        conn.execute(
            text(
                "INSERT INTO task_run (dag_run_id, task_name, attempt, status, manager, "
                "created_at, not_before, started_at, ended_at, host, exit_code, error, "
                "output_tail) "
                "SELECT r.id, format('t%s.yaml', k), a, "
                "CASE WHEN r.status = 'failed' AND k = :last THEN 'failed' ELSE 'succeeded' END, "
                "'worker', r.created_at + k * interval '20 seconds', "
                "r.created_at + k * interval '20 seconds', "
                "r.created_at + k * interval '20 seconds' + a * interval '1 second', "
                "r.created_at + k * interval '20 seconds' + a * interval '1 second' "
                "+ interval '15 seconds', 'bench-host:1', "
                "CASE WHEN r.status = 'failed' AND k = :last THEN 1 ELSE 0 END, "
                "CASE WHEN r.status = 'failed' AND k = :last THEN 'exit code 1: it broke' END, "
                "repeat('some output of the task ', 40) "
                "FROM dag_run r CROSS JOIN generate_series(0, :last) AS k "
                "CROSS JOIN generate_series(1, 3) AS a "
                "WHERE a = 1 OR (r.status = 'failed' AND k = :last)"
            ),
            {"last": TASKS - 1},
        )
    with engine.connect() as conn:
        autocommit = conn.execution_options(isolation_level="AUTOCOMMIT")
        autocommit.execute(text("VACUUM ANALYZE"))
        autocommit.execute(text("CHECKPOINT"))
    return time.perf_counter() - started


def fetch(url: str) -> tuple[float, float]:
    """(server ms from Server-Timing, client wall ms) of one GET."""
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as response:
        response.read()
        timing = response.headers["Server-Timing"]
    wall = (time.perf_counter() - started) * 1000
    found = re.search(r"dur=([0-9.]+)", timing or "")
    assert response.status == 200 and found, (url, response.status, timing)
    return float(found.group(1)), wall


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=250_000)
    parser.add_argument("--repeat", type=int, default=30)
    add_database_option(parser)
    args = parser.parse_args()

    with bench_database(args.database_url, "ui") as db, tempfile.TemporaryDirectory() as tmp:
        header("Web page server time", db)
        write_project(Path(tmp), scheduled_dags(DAGS, tasks=TASKS))
        engine = engine_for(db)
        try:
            seconds = fill(engine, args.runs)
            with engine.connect() as conn:
                task_runs = conn.execute(text("SELECT count(*) FROM task_run")).scalar_one()
                run_id = conn.execute(
                    text("SELECT id FROM dag_run WHERE status = 'failed' ORDER BY id LIMIT 1")
                ).scalar_one()
                failed = conn.execute(
                    text(
                        "SELECT max(id) FROM task_run WHERE dag_run_id = :r AND status = 'failed'"
                    ),
                    {"r": run_id},
                ).scalar_one()
        finally:
            engine.dispose()
        print(
            f"history: {DAGS} DAGs, {args.runs:,} runs, {task_runs:,} task runs "
            f"(written in {seconds:.0f} s)"
        )
        proc = subprocess.Popen(
            workflows_command(Path(tmp) / "config.py", "ui", "--port", "0"),
            env=subprocess_env(db),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.startswith("serving "), line
            base = line.split()[1].rstrip("/")
            pages = {
                "DAG list (500 DAGs)": "/",
                "DAG list, JSON": "/api/dags",
                "a DAG: grid + graph": "/dags/dag_0250",
                "a DAG, JSON": "/api/dags/dag_0250",
                "a run (failed, 3 attempts)": f"/runs/{run_id}",
                "a task run's log": f"/task-runs/{failed}",
                "failures": "/failures",
            }
            print(f"\n{args.repeat} requests per page, after 3 warm-up requests\n")
            print(
                "| page | server median | server p95 | server max | client median "
                "| server CPU per request |"
            )
            print("| --- | --- | --- | --- | --- | --- |")
            worst = 0.0
            for name, path in pages.items():
                for _ in range(3):
                    fetch(base + path)
                cpu = cpu_seconds(proc.pid)
                server, client = zip(*(fetch(base + path) for _ in range(args.repeat)), strict=True)
                cpu = (cpu_seconds(proc.pid) - cpu) / args.repeat * 1000
                worst = max(worst, percentile(server, 0.95))
                print(
                    f"| {name} | {median(server):.1f} ms | {percentile(server, 0.95):.1f} ms "
                    f"| {max(server):.1f} ms | {median(client):.1f} ms | {cpu:.0f} ms |"
                )
            verdict = "met" if worst < TARGET_MS else "MISSED"
            print(f"\ntarget: every page under {TARGET_MS:.0f} ms (p95): {verdict}")
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
