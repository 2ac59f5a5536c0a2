"""kill -9 of a worker scheduler mid-task, KILLS times: every task retried, nothing orphaned.

Each cycle triggers one run (Python and shell tasks alternate) whose first attempt
sleeps SLEEP seconds before it appends (task_run_id, attempt, pid) to a ledger
table; later attempts append at once. While the first attempt sleeps, the
scheduler (``--lease LEASE``) is killed with SIGKILL and a new one is started.
Measured per kill: the seconds from the kill to the attempt's row being failed,
how far past the lease it had at the kill that row ended (``ended_at -
lease_expires_at``), and which processes of the killed scheduler's tree are still
alive one second after the kill. A process left alive is an orphan; if it writes
its ledger row, the attempt ran to completion after being failed and retried.

    python benchmarks/reliability/crashes.py [--kills 20] [--lease 2] [--sleep 4]
        [--kinds python,shell] [--database-url URL]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import common

SHELL_TASK = """\
# parameters: [DATABASE_URL, WORKFLOWS_TASK_RUN_ID, WORKFLOWS_ATTEMPT]
if [ "$WORKFLOWS_ATTEMPT" = 1 ]; then sleep {sleep}; fi
psql -qX "$DATABASE_URL" -c "INSERT INTO ledger VALUES ($WORKFLOWS_TASK_RUN_ID, $WORKFLOWS_ATTEMPT, $$)"
"""


def project(sleep: float) -> dict[str, dict[str, str]]:
    body = f"time.sleep({sleep} if context['WORKFLOWS_ATTEMPT'] == '1' else 0)"
    return {
        "crash_python": {
            "workflow.yaml": "description: killed mid-task\n",
            "work.py": common.LEDGER_TASK.format(body=body, extra=""),
        },
        "crash_shell": {
            "workflow.yaml": "description: killed mid-task\n",
            "work.sh": SHELL_TASK.format(sleep=sleep),
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--lease", type=float, default=2.0)
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("--sleep", type=float, default=4.0, help="first attempt's sleep (s)")
    parser.add_argument("--kinds", default="python,shell", help="task kinds to alternate")
    common.add_database_arguments(parser)
    args = parser.parse_args()
    kinds = args.kinds.split(",")
    extra = ("--lease", str(args.lease), "--interval", str(args.interval))

    with common.database(args, "reliability_crash") as url, tempfile.TemporaryDirectory() as tmp:
        common.migrate(url)
        config = common.write_project(Path(tmp) / "project", project(args.sleep))
        env = common.environment(url)
        log = Path(tmp) / "schedulers.log"
        q, scalar = common.query, common.scalar
        cycles: list[dict[str, object]] = []
        orphans: list[tuple[int, str, str]] = []
        scheduler = common.start_scheduler(config, env, *extra, log=log)
        everything = [scheduler]
        try:
            for i in range(args.kills):
                kind = kinds[i % len(kinds)]
                out = common.workflows(config, "trigger", f"crash_{kind}", env=env)
                run_id = int(out.stdout)

                def first_attempt(run_id: int = run_id) -> list[tuple[object, ...]]:
                    return q(
                        url,
                        "SELECT id, status, lease_expires_at, now() FROM task_run "
                        "WHERE dag_run_id = %s AND attempt = 1",
                        (run_id,),
                    )

                common.wait_for(
                    lambda: any(r[1] == "running" for r in first_attempt()),
                    30,
                    "the first attempt to start",
                )
                time.sleep(0.5 + (i % 4) * 0.25)  # somewhere in the middle of its sleep
                tree = common.descendants(scheduler.pid)
                task_run_id, _, lease_at_kill, _ = first_attempt()[0]
                scheduler.kill()
                killed = time.monotonic()
                scheduler.wait()
                scheduler = common.start_scheduler(config, env, *extra, log=log)
                everything.append(scheduler)
                time.sleep(max(0.0, killed + 1.0 - time.monotonic()))
                left = common.still_alive(tree)
                orphans += [(i, kind, common.command_line(p)) for p in left]
                common.wait_for(
                    lambda t=task_run_id: (
                        scalar(url, "SELECT status FROM task_run WHERE id = %s", (t,)) != "running"
                    ),
                    60,
                    "the killed attempt to be failed",
                    step=0.02,
                )
                to_failed = time.monotonic() - killed
                common.wait_for(
                    lambda r=run_id: (
                        scalar(url, "SELECT status FROM dag_run WHERE id = %s", (r,)) != "running"
                    ),
                    60,
                    "the run to end",
                )
                status, error, past_lease = q(
                    url,
                    "SELECT status, error, extract(epoch FROM ended_at - %s) FROM task_run "
                    "WHERE id = %s",
                    (lease_at_kill, task_run_id),
                )[0]
                cycles.append(
                    {
                        "kind": kind,
                        "run": run_id,
                        "task_run": task_run_id,
                        "status": status,
                        "error": error,
                        "to_failed": to_failed,
                        "past_lease": float(past_lease),
                        "tree": len(tree),
                        "orphans": len(left),
                    }
                )
                print(
                    f"kill {i + 1:2d} ({kind}): tree {len(tree)} processes, "
                    f"{len(left)} alive 1 s after the kill, attempt 1 {status} "
                    f"{to_failed:.2f}s after the kill "
                    f"({float(past_lease):+.2f}s past its lease)",
                    flush=True,
                )
            # Let any orphan finish what it was doing, so its ledger row shows.
            time.sleep(args.sleep + 1)
        finally:
            common.stop(everything)
            leftover = {}
            for cycle_tree_pid in common.processes_matching(str(Path(tmp) / "project")):
                leftover[cycle_tree_pid] = common.command_line(cycle_tree_pid)

        runs = dict(q(url, "SELECT status, count(*) FROM dag_run GROUP BY 1"))
        attempts = q(
            url,
            "SELECT r.dag_name, t.attempt, t.status, count(*) FROM task_run t "
            "JOIN dag_run r ON r.id = t.dag_run_id GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        )
        running = scalar(url, "SELECT count(*) FROM task_run WHERE status = 'running'")
        twice = q(url, "SELECT task_run_id FROM ledger GROUP BY 1 HAVING count(*) > 1")
        failed_attempts_in_ledger = q(
            url,
            "SELECT r.dag_name, count(*) FROM ledger l JOIN task_run t ON t.id = l.task_run_id "
            "JOIN dag_run r ON r.id = t.dag_run_id WHERE t.status <> 'succeeded' GROUP BY 1",
        )
        retried = scalar(
            url,
            "SELECT count(DISTINCT dag_run_id) FROM task_run WHERE attempt = 2 "
            "AND status = 'succeeded'",
        )
        lease_errors = scalar(
            url, "SELECT count(*) FROM task_run WHERE attempt = 1 AND error LIKE 'lease expired%%'"
        )
        pg = common.server_version(url)

    to_failed = [float(c["to_failed"]) for c in cycles]  # type: ignore[arg-type]
    past = [float(c["past_lease"]) for c in cycles]  # type: ignore[arg-type]
    per_kind: dict[str, int] = {}
    for _, kind, _ in orphans:
        per_kind[kind] = per_kind.get(kind, 0) + 1
    ok = (
        len(cycles) == args.kills
        and runs == {"succeeded": args.kills}
        and retried == args.kills
        and lease_errors == args.kills
        and running == 0
        and not twice
        and not failed_attempts_in_ledger
        and not orphans
        and not leftover
        and max(past) <= args.interval + 1.0
    )
    common.report(
        "scheduler killed with SIGKILL mid-task",
        {
            "date": common.now(),
            "machine": common.machine(),
            "postgresql": pg,
            "kills": len(cycles),
            "lease (s), interval (s), first attempt sleeps (s)": (
                f"{args.lease:g}, {args.interval:g}, {args.sleep:g}"
            ),
            "runs by status": runs,
            "runs whose attempt 2 succeeded (retried)": retried,
            "attempts 1 failed with 'lease expired'": lease_errors,
            "task runs by (dag, attempt, status)": [tuple(a) for a in attempts],
            "task runs left running": running,
            "kill -> attempt failed (s): median / max": (
                f"{statistics.median(to_failed):.2f} / {max(to_failed):.2f}"
            ),
            "ended_at - lease_expires_at at kill (s): median / max": (
                f"{statistics.median(past):.2f} / {max(past):.2f}"
            ),
            "processes of the killed tree alive 1 s after the kill": f"{len(orphans)} {per_kind}",
            "orphan command lines (first 3)": [o[2] for o in orphans[:3]],
            "task processes alive at the end": len(leftover),
            "ledger rows written by failed (killed) attempts": dict(failed_attempts_in_ledger),
            "attempts executed twice (ledger rows per task run > 1)": len(twice),
        },
        ok,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
