"""Cancelling runs with running attempts under several schedulers: nothing left behind.

N ``workflows <config> schedule worker`` processes loop on one database. R DAGs
(one run each, so every run has an attempt running at once) run a shell task that
starts a background ``sleep`` and waits; half of the tasks ignore SIGTERM, so only
the SIGKILL that follows the grace ends them. Once every attempt runs, each run is
cancelled (every fifth with the real ``workflows cancel`` command, the others with
``scheduler.cancel_run``), and the script waits for every attempt to be recorded.

It reports: processes left behind (processes of the attempts seen before the
cancel that are still alive; the schedulers' fork servers and their idle spare
processes are not attempts), attempts recorded failed instead of cancelled,
attempts retried, runs left running. All must be 0.

    python benchmarks/reliability/cancel.py [--schedulers 3] [--runs 50] [--database-url URL]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import common


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def attempt_processes(schedulers: list[int], pids: Path) -> dict[int, int]:
    """The processes of the running attempts under ``schedulers`` (pid -> start time):
    every descendant of a scheduler that is a task's shell or its ``sleep`` (their
    pids are in ``pids``), below one of them, or between one of them and its
    scheduler's fork server. The fork server and its idle spare process are the
    scheduler's own and live as long as it does: they are not attempts."""
    tree: dict[int, int] = {}
    for pid in schedulers:
        tree.update(common.descendants(pid))
    tasks = {int(word) for f in pids.iterdir() for word in f.read_text().split()}
    chosen: set[int] = set()
    for task in tasks & set(tree):
        chosen.update(common.descendants(task))
        pid: int | None = task
        while pid is not None and pid in tree and _parent(pid) not in schedulers:
            chosen.add(pid)  # the task and its ancestors up to the fork server
            pid = _parent(pid)
    return {pid: start for pid, start in tree.items() if pid in chosen}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedulers", type=int, default=3)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--start-timeout", type=float, default=300.0)
    parser.add_argument("--stop-timeout", type=float, default=120.0)
    common.add_database_arguments(parser)
    args = parser.parse_args()

    from workflows_tick.database import make_engine, normalize_url
    from workflows_tick.scheduler import cancel_run, trigger_dag

    with common.database(args, "reliability_cancel") as url, tempfile.TemporaryDirectory() as tmp:
        common.migrate(url)
        pids = Path(tmp) / "pids"
        pids.mkdir()
        project = {
            f"dag{i:02d}": {
                "workflow.yaml": "description: x\nretries: 2\n",
                "wait.sh": ("trap '' TERM\n" if i % 2 else "")
                + f'sleep 600 &\necho "$$ $!" > {pids}/dag{i:02d}\nwait\nwait\n',
            }
            for i in range(args.runs)
        }
        config = common.write_project(Path(tmp) / "project", project)
        env = common.environment(url)
        concurrency = -(-args.runs // args.schedulers) + 1
        schedulers = [
            common.start_scheduler(
                config,
                env,
                "--interval",
                str(args.interval),
                "--concurrency",
                str(concurrency),
                log=Path(tmp) / f"scheduler{i}.log",
            )
            for i in range(args.schedulers)
        ]
        engine = make_engine(normalize_url(url), purpose="reliability")
        try:
            runs = [trigger_dag(name, creator="reliability", engine=engine).id for name in project]
            common.wait_for(
                lambda: (
                    len(list(pids.iterdir())) == args.runs
                    and common.scalar(url, "SELECT count(*) FROM task_run WHERE status = 'running'")
                    == args.runs
                ),
                timeout=args.start_timeout,
                what="every attempt to run",
                step=0.5,
            )
            hosts = common.scalar(url, "SELECT count(DISTINCT host) FROM task_run")
            before = attempt_processes([proc.pid for proc in schedulers], pids)
            started = time.monotonic()
            for n, run_id in enumerate(runs):
                if n % 5 == 0:
                    done = common.workflows(config, "cancel", str(run_id), env=env)
                    assert done.returncode == 0, done.stderr
                else:
                    cancel_run(run_id, by="reliability", engine=engine)
            cancelled_in = time.monotonic() - started
            common.wait_for(
                lambda: (
                    common.scalar(
                        url, "SELECT count(*) FROM task_run WHERE status IN ('running', 'waiting')"
                    )
                    == 0
                ),
                timeout=args.stop_timeout,
                what="every attempt to be recorded",
                step=0.2,
            )
            stopped_in = time.monotonic() - started
            left = common.still_alive(before)
            statuses = dict(common.query(url, "SELECT status, count(*) FROM task_run GROUP BY 1"))
            run_statuses = dict(
                common.query(url, "SELECT status, count(*) FROM dag_run GROUP BY 1")
            )
            retried = common.scalar(url, "SELECT count(*) FROM task_run WHERE attempt > 1")
            alive = sum(proc.poll() is None for proc in schedulers)
        finally:
            engine.dispose()
            common.stop(schedulers)
        counts = {
            "date": common.now(),
            "machine": common.machine(),
            "postgresql": common.server_version(url),
            "schedulers (alive at the end)": f"{args.schedulers} ({alive})",
            "runs cancelled (with a running attempt each)": len(runs),
            "schedulers that ran attempts": hosts,
            "attempt processes seen before the cancel": len(before),
            "cancel commands took (s)": f"{cancelled_in:.1f}",
            "all attempts recorded after (s)": f"{stopped_in:.1f}",
            "task runs by status": statuses,
            "runs by status": run_statuses,
            "processes left behind": len(left),
            "attempts recorded failed instead of cancelled": statuses.get("failed", 0),
            "attempts retried": retried,
            "runs left running": run_statuses.get("running", 0),
        }
        ok = (
            not left
            and statuses.get("failed", 0) == 0
            and retried == 0
            and run_statuses.get("running", 0) == 0
            and statuses.get("cancelled", 0) == args.runs
            and alive == args.schedulers
        )
        common.report("cancel under many schedulers", counts, ok)
        return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
