"""Memory of an idle looping scheduler: ``workflows <config> schedule worker`` with N DAGs.

Starts the real command (database URL set, so no embedded server) on a project of
scheduled DAGs of no_op tasks (nothing due), samples ``VmRSS`` and ``VmHWM`` of
``/proc/<pid>/status`` every 0.25 s for ``--seconds``, then stops it with SIGINT.
Does so for 5 DAGs and for ``--dags`` DAGs, so the per-DAG cost shows as a difference
measured on the same machine at the same time.

    python benchmarks/memory.py [--dags 500] [--seconds 20] [--interval 1]
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg2
from _common import (
    BenchDatabase,
    add_database_option,
    bench_database,
    header,
    median,
    scheduled_dags,
    subprocess_env,
    workflows_command,
)

from workflows_tick.testing import write_project

TARGET_MB = 150.0


def status_kb(pid: int) -> dict[str, int]:
    fields: dict[str, int] = {}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return fields
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


def stop(process: subprocess.Popen[bytes]) -> None:
    for signum, grace in ((signal.SIGINT, 15.0), (signal.SIGTERM, 15.0)):
        if process.poll() is not None:
            return
        process.send_signal(signum)
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue
    process.kill()
    process.wait()


def sample(
    config: Path, env: dict[str, str], seconds: float, interval: float
) -> list[tuple[float, int, int]]:
    """(seconds since spawn, VmRSS kB, VmHWM kB) samples of one idle scheduler."""
    command = workflows_command(config, "schedule", "worker", "--interval", str(interval))
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    samples: list[tuple[float, int, int]] = []
    started = time.monotonic()
    try:
        while (elapsed := time.monotonic() - started) < seconds:
            if process.poll() is not None:
                stderr = process.stderr.read().decode() if process.stderr else ""
                raise SystemExit(f"the scheduler exited ({process.returncode}):\n{stderr}")
            fields = status_kb(process.pid)
            if "VmRSS" in fields:
                samples.append((elapsed, fields["VmRSS"], fields["VmHWM"]))
            time.sleep(0.25)
    finally:
        stop(process)
    return samples


def describe(dags: int, samples: list[tuple[float, int, int]], seconds: float) -> float:
    steady = [rss for at, rss, _ in samples if at >= seconds / 2]
    peak = max(hwm for _, _, hwm in samples) / 1024
    at_5 = next((rss for at, rss, _ in samples if at >= 5), samples[-1][1]) / 1024
    steady_mb = median(steady) / 1024
    last = samples[-1][1] / 1024
    print(
        f"| {dags} | {peak:.1f} MB | {steady_mb:.1f} MB | {at_5:.1f} MB | {last:.1f} MB | "
        f"{'met' if peak < TARGET_MB else 'MISSED'} |"
    )
    return peak


def cursors(db: BenchDatabase) -> int:
    """Schedule cursors in the database: proof that the scheduler loaded and passed."""
    with psycopg2.connect(db.url) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM dag_schedule")
        row = cur.fetchone()
    conn.close()
    return int(row[0]) if row else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_database_option(parser)
    parser.add_argument("--dags", type=int, default=500)
    parser.add_argument("--tasks-per-dag", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=20.0, help="sampling time per scheduler")
    parser.add_argument("--interval", type=float, default=1.0, help="the scheduler's --interval")
    args = parser.parse_args()

    with bench_database(args.database_url, "memory") as db, tempfile.TemporaryDirectory() as tmp:
        header(f"Memory of an idle `schedule worker` (--interval {args.interval:g})", db)
        env = subprocess_env(db)
        print(
            f"sampled every 0.25 s for {args.seconds:g} s; steady = median of the second half; "
            f"{args.tasks_per_dag} no_op tasks per DAG, schedule '0 3 * * *'"
        )
        print("| DAGs | peak (VmHWM) | steady VmRSS | VmRSS at 5 s | VmRSS at the end | < 150 MB |")
        print("| --- | --- | --- | --- | --- | --- |")
        for count in sorted({5, args.dags}):
            root = Path(tmp) / f"dags_{count}"
            write_project(root, scheduled_dags(count, tasks=args.tasks_per_dag))
            samples = sample(root / "config.py", env, args.seconds, args.interval)
            describe(count, samples, args.seconds)
            if cursors(db) < count:
                raise SystemExit(f"the scheduler did not pass over all {count} DAGs")


if __name__ == "__main__":
    main()
