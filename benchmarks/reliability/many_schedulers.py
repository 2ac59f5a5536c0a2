"""Many schedulers on one database: no duplicate run, no attempt executed twice, every run ends.

N ``workflows <config> schedule worker`` processes loop for DURATION seconds on one
database. M DAGs are scheduled every minute (``* * * * *``) and T manual runs are
triggered during the first two thirds of the window. Each DAG has two Python tasks
(``second.py`` after ``first.py``) that append (task_run_id, attempt, pid) to a
ledger table. The start is aligned so that the window crosses a minute boundary
early (the DAGs are first seen at start, so their first fire is the next boundary).

After the window every scheduler gets SIGINT (it starts nothing new and lets its
running tasks finish), then ``schedule worker --until-idle`` drains what is left.

    python benchmarks/reliability/many_schedulers.py [--schedulers 8] [--dags 50]
        [--triggers 200] [--duration 60] [--concurrency 2] [--database-url URL]
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import common


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedulers", type=int, default=8)
    parser.add_argument("--dags", type=int, default=50)
    parser.add_argument("--triggers", type=int, default=200)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument(
        "--align",
        type=float,
        default=50.0,
        help="start at this second of the minute (the first fire is then 60-ALIGN s in)",
    )
    parser.add_argument("--drain-timeout", type=float, default=600.0)
    common.add_database_arguments(parser)
    args = parser.parse_args()

    with common.database(args, "reliability_many") as url, tempfile.TemporaryDirectory() as tmp:
        common.migrate(url)
        project = {
            f"dag{i:02d}": {
                "workflow.yaml": "description: x\nschedule: '* * * * *'\n",
                "first.py": common.LEDGER_TASK.format(body="pass", extra=""),
                "second.py": common.LEDGER_TASK.format(body="pass", extra="inputs: [first.py]"),
            }
            for i in range(args.dags)
        }
        config = common.write_project(Path(tmp) / "project", project)
        env = common.environment(url)
        logs = Path(tmp) / "logs"
        logs.mkdir()

        if args.align >= 0:
            wait = (args.align - time.time() % 60) % 60
            print(f"waiting {wait:.0f}s to start at second {args.align:g} of the minute")
            time.sleep(wait)
        started = time.monotonic()
        schedulers = [
            common.start_scheduler(
                config,
                env,
                "--interval",
                str(args.interval),
                "--concurrency",
                str(args.concurrency),
                log=logs / f"scheduler{i}.log",
            )
            for i in range(args.schedulers)
        ]
        try:
            from workflows_tick.database import make_engine, normalize_url
            from workflows_tick.scheduler import trigger_dag

            engine = make_engine(normalize_url(url), purpose="reliability-trigger")
            rng = random.Random(1)
            spread = args.duration * 2 / 3
            for i in range(args.triggers):
                target = started + spread * i / max(1, args.triggers)
                time.sleep(max(0.0, target - time.monotonic()))
                trigger_dag(f"dag{rng.randrange(args.dags):02d}", creator="many", engine=engine)
            engine.dispose()
            time.sleep(max(0.0, started + args.duration - time.monotonic()))
            alive_at_end = sum(p.poll() is None for p in schedulers)
            window = time.monotonic() - started
            boundaries = common.scalar(
                url, "SELECT count(DISTINCT scheduled_for) FROM dag_run WHERE trigger = 'schedule'"
            )
            for proc in schedulers:
                proc.send_signal(signal.SIGINT)
            t0 = time.monotonic()
            for proc in schedulers:
                proc.wait(timeout=120)
            sigint_exit = time.monotonic() - t0
            codes = Counter(p.returncode for p in schedulers)
        finally:
            common.stop(schedulers)

        t0 = time.monotonic()
        drain = common.workflows(
            config,
            "schedule",
            "worker",
            "--until-idle",
            "--interval",
            "0.2",
            "--concurrency",
            "4",
            env=env,
            timeout=args.drain_timeout,
        )
        drain_seconds = time.monotonic() - t0
        q = common.query
        dup_scheduled = q(
            url,
            "SELECT dag_name, scheduled_for FROM dag_run WHERE scheduled_for IS NOT NULL "
            "GROUP BY 1, 2 HAVING count(*) > 1",
        )
        per_fire = q(
            url,
            "SELECT scheduled_for, count(*) FROM dag_run WHERE trigger = 'schedule' "
            "GROUP BY 1 ORDER BY 1",
        )
        twice = q(url, "SELECT task_run_id FROM ledger GROUP BY 1 HAVING count(*) > 1")
        ledger_rows = common.scalar(url, "SELECT count(*) FROM ledger")
        succeeded_task_runs = common.scalar(
            url, "SELECT count(*) FROM task_run WHERE status = 'succeeded'"
        )
        ledger_without_success = common.scalar(
            url,
            "SELECT count(*) FROM ledger l LEFT JOIN task_run t ON t.id = l.task_run_id "
            "WHERE t.status IS DISTINCT FROM 'succeeded' OR t.attempt <> l.attempt",
        )
        runs = dict(q(url, "SELECT status, count(*) FROM dag_run GROUP BY 1"))
        runs_by_trigger = dict(q(url, "SELECT trigger, count(*) FROM dag_run GROUP BY 1"))
        task_runs = dict(q(url, "SELECT status, count(*) FROM task_run GROUP BY 1"))
        attempts = dict(q(url, "SELECT attempt, count(*) FROM task_run GROUP BY 1"))
        hosts = common.scalar(url, "SELECT count(DISTINCT host) FROM task_run")
        pg = common.server_version(url)

    unfinished = runs.get("running", 0)
    ok = (
        not dup_scheduled
        and not twice
        and unfinished == 0
        and task_runs.get("running", 0) == 0
        and task_runs.get("waiting", 0) == 0
        and runs.get("failed", 0) == 0
        and ledger_rows == succeeded_task_runs
        and ledger_without_success == 0
        and drain.returncode == 0
        and alive_at_end == args.schedulers
        and codes == Counter({0: args.schedulers})
        and all(n == args.dags for _, n in per_fire)
    )
    common.report(
        "many schedulers",
        {
            "date": common.now(),
            "machine": common.machine(),
            "postgresql": pg,
            "schedulers": args.schedulers,
            "concurrency each": args.concurrency,
            "window (s)": f"{window:.1f}",
            "schedulers alive at end of window": alive_at_end,
            "scheduler exit codes after SIGINT": dict(codes),
            "SIGINT to all exited (s)": f"{sigint_exit:.1f}",
            "DAGs": args.dags,
            "minute boundaries crossed in window": boundaries,
            "scheduled runs per fire time": [(t.strftime("%H:%M"), n) for t, n in per_fire],
            "runs by trigger": runs_by_trigger,
            "runs by status": runs,
            "task runs by status": task_runs,
            "task runs by attempt": attempts,
            "distinct scheduler hosts that ran tasks": hosts,
            "ledger rows": ledger_rows,
            "duplicate scheduled runs (dag, scheduled_for)": len(dup_scheduled),
            "attempts executed twice (ledger rows per task run > 1)": len(twice),
            "ledger rows without a matching succeeded attempt": ledger_without_success,
            "runs left running after drain": unfinished,
            "drain --until-idle (s), exit code": f"{drain_seconds:.1f}, {drain.returncode}",
        },
        ok,
    )
    if drain.returncode != 0:
        print(drain.stderr[-2000:], file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
