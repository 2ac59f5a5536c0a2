"""PostgreSQL restarted under running schedulers: they survive, resume, lose and repeat nothing.

Starts a throw-away PostgreSQL cluster (Debian's binaries, ``--pg-bin``) on a free
port in a temporary folder, and SCHEDULERS ``schedule worker`` processes against
it. A thread triggers a steady stream of runs (round-robin over DAGS DAGs of one
short Python task that appends (task_run_id, attempt, pid) to a ledger table;
a trigger that fails because the database is down is retried). The cluster is
restarted with ``pg_ctl restart -m MODE`` for each mode in ``--restarts`` (``MODE+N``:
stopped with ``-m MODE``, left down N seconds, started), PAUSE seconds apart. Measured per restart: how long the database was unreachable, whether
every scheduler is still running, and the seconds from the database accepting
connections again to the next task run started. At the end the schedulers get
SIGINT, ``schedule worker --until-idle`` drains, and the ledger is checked: every
triggered run ended, no task's work was done twice in one run, and every
succeeded attempt wrote exactly one ledger row. The cluster is stopped and deleted.

Runs as root (initdb is run as the ``postgres`` user through runuser).

    python benchmarks/reliability/db_outage.py [--schedulers 3] [--restarts fast,immediate]
        [--pause 12] [--rate 3]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import common
import psycopg2

PG_BIN = "/usr/lib/postgresql/15/bin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def as_postgres(*argv: str, timeout: float = 60) -> None:
    """Run a PostgreSQL program as the ``postgres`` user; output goes to the server log
    (a pipe would be inherited by the server that pg_ctl starts, and never close)."""
    command = list(argv)
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    subprocess.run(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=timeout,
        check=True,
    )


@contextlib.contextmanager
def cluster(pg_bin: str) -> Iterator[tuple[str, str, int]]:
    """A fresh cluster: (admin libpq URI, data dir, port); stopped and deleted after."""
    folder = tempfile.mkdtemp(prefix="workflows-outage-")
    data = str(Path(folder) / "data")
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    port = free_port()
    try:
        as_postgres(f"{pg_bin}/initdb", "-D", data, "-A", "trust", "-U", "postgres", "-N")
        with (Path(data) / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n"
                "fsync = off\nmax_connections = 200\n"
            )
        as_postgres(f"{pg_bin}/pg_ctl", "-D", data, "-l", f"{folder}/server.log", "-w", "start")
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres", data, port
    finally:
        with contextlib.suppress(Exception):
            as_postgres(f"{pg_bin}/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


def restart(pg_bin: str, data: str, mode: str) -> None:
    """``pg_ctl restart -m MODE``; ``MODE+N`` stops with -m MODE, stays down N s, starts."""
    ctl = [f"{pg_bin}/pg_ctl", "-D", data, "-l", str(Path(data).parent / "server.log"), "-w"]
    mode, _, down = mode.partition("+")
    if not down:
        as_postgres(*ctl, "-m", mode, "restart")
        return
    as_postgres(*ctl, "-m", mode, "stop")
    time.sleep(float(down))
    as_postgres(*ctl, "start")


class Triggers(threading.Thread):
    """Triggers one run every 1/rate s, round-robin over the DAGs; retries while the DB is down."""

    def __init__(self, url: str, dags: int, rate: float) -> None:
        super().__init__(daemon=True)
        from workflows_tick.database import make_engine, normalize_url

        self.engine = make_engine(normalize_url(url), purpose="reliability-trigger")
        self.dags, self.rate = dags, rate
        self.stopping = threading.Event()
        self.ids: list[int] = []
        self.failures = 0

    def run(self) -> None:
        from workflows_tick.scheduler import trigger_dag

        i = 0
        while not self.stopping.is_set():
            try:
                run = trigger_dag(f"dag{i % self.dags}", creator="outage", engine=self.engine)
            except Exception:
                self.failures += 1
                self.stopping.wait(0.2)
                continue
            self.ids.append(run.id)
            i += 1
            self.stopping.wait(1 / self.rate)
        self.engine.dispose()


def epoch(value: datetime | None) -> float:
    return value.timestamp() if value is not None else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedulers", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--dags", type=int, default=10)
    parser.add_argument("--rate", type=float, default=3.0, help="triggers per second")
    parser.add_argument(
        "--restarts",
        default="fast,immediate,fast+5,immediate+5",
        help="pg_ctl -m modes, in order; MODE+N: stop, stay down N s, start",
    )
    parser.add_argument("--pause", type=float, default=12.0, help="seconds around each restart")
    parser.add_argument("--pg-bin", default=PG_BIN)
    args = parser.parse_args()
    modes = [m for m in args.restarts.split(",") if m]

    with cluster(args.pg_bin) as (admin, data, _), tempfile.TemporaryDirectory() as tmp:
        common.query(admin, "SELECT 1")
        conn = psycopg2.connect(admin)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE outage")
        conn.close()
        url = common.with_database(admin, "outage")
        common.migrate(url)
        project = {
            f"dag{i}": {
                "workflow.yaml": "description: x\nretry_delay: 1\n",
                "work.py": common.LEDGER_TASK.format(body="pass", extra=""),
            }
            for i in range(args.dags)
        }
        config = common.write_project(Path(tmp) / "project", project)
        env = common.environment(url)
        log = Path(tmp) / "schedulers.log"
        schedulers = [
            common.start_scheduler(
                config,
                env,
                "--interval",
                "0.5",
                "--concurrency",
                str(args.concurrency),
                log=log,
            )
            for _ in range(args.schedulers)
        ]
        triggers = Triggers(url, args.dags, args.rate)
        restarts: list[dict[str, object]] = []
        try:
            triggers.start()
            time.sleep(args.pause)
            for mode in modes:
                before = common.scalar(url, "SELECT count(*) FROM task_run")
                down = time.monotonic()
                restart(args.pg_bin, data, mode)
                common.wait_for(lambda: _answers(url), 30, "the database to answer")
                ready_wall = time.time()
                unreachable = time.monotonic() - down

                def started_since(ready: float = ready_wall) -> bool:
                    latest = common.scalar(url, "SELECT max(started_at) FROM task_run")
                    return epoch(latest) > ready

                try:
                    common.wait_for(started_since, 30, "a task run to start", step=0.02)
                    first = common.scalar(
                        url,
                        "SELECT min(started_at) FROM task_run WHERE started_at > to_timestamp(%s)",
                        (ready_wall,),
                    )
                    resume = epoch(first) - ready_wall
                except TimeoutError:
                    resume = float("inf")
                time.sleep(args.pause)
                restarts.append(
                    {
                        "mode": mode,
                        "unreachable_s": unreachable,
                        "resume_s": resume,
                        "alive": sum(p.poll() is None for p in schedulers),
                        "task_runs_before": before,
                    }
                )
                print(
                    f"restart -m {mode}: unreachable {unreachable:.2f}s, next task run started "
                    f"{resume:.2f}s after the database answered, "
                    f"{restarts[-1]['alive']}/{args.schedulers} schedulers alive",
                    flush=True,
                )
        finally:
            triggers.stopping.set()
            triggers.join(timeout=30)
            alive_at_end = sum(p.poll() is None for p in schedulers)
            common.stop(schedulers, sig=2)  # SIGINT: let running tasks finish
            codes = Counter(p.returncode for p in schedulers)

        drain = common.workflows(
            config, "schedule", "worker", "--until-idle", "--interval", "0.2", env=env, timeout=300
        )
        q, scalar = common.query, common.scalar
        triggered = set(triggers.ids)
        in_db = {r[0] for r in q(url, "SELECT id FROM dag_run")}
        runs = dict(q(url, "SELECT status, count(*) FROM dag_run GROUP BY 1"))
        task_runs = dict(q(url, "SELECT status, count(*) FROM task_run GROUP BY 1"))
        errors = Counter(
            (e or "")[:60] for (e,) in q(url, "SELECT error FROM task_run WHERE status = 'failed'")
        )
        twice_attempt = q(url, "SELECT task_run_id FROM ledger GROUP BY 1 HAVING count(*) > 1")
        twice_run = q(
            url,
            "SELECT t.dag_run_id, t.task_name, count(*) FROM ledger l "
            "JOIN task_run t ON t.id = l.task_run_id GROUP BY 1, 2 HAVING count(*) > 1",
        )
        failed_with_ledger = scalar(
            url,
            "SELECT count(*) FROM ledger l JOIN task_run t ON t.id = l.task_run_id "
            "WHERE t.status <> 'succeeded'",
        )
        succeeded_without_ledger = scalar(
            url,
            "SELECT count(*) FROM task_run t WHERE t.status = 'succeeded' "
            "AND NOT EXISTS (SELECT 1 FROM ledger l WHERE l.task_run_id = t.id)",
        )
        pg = common.server_version(url)
        tail = log.read_text()[-3000:] if log.exists() else ""

    lost = triggered - in_db
    ok = (
        all(r["alive"] == args.schedulers for r in restarts)
        and alive_at_end == args.schedulers
        and all(float(r["resume_s"]) <= 5 for r in restarts)  # type: ignore[arg-type]
        and not lost
        and runs.get("running", 0) == 0
        and runs.get("failed", 0) == 0
        and not twice_attempt
        and not twice_run
        and failed_with_ledger == 0
        and succeeded_without_ledger == 0
        and drain.returncode == 0
    )
    common.report(
        "database restarted under running schedulers",
        {
            "date": common.now(),
            "machine": common.machine(),
            "postgresql": pg,
            "schedulers, concurrency each": f"{args.schedulers}, {args.concurrency}",
            "restarts": [
                f"-m {r['mode']}: down {float(r['unreachable_s']):.2f}s, "  # type: ignore[arg-type]
                f"resumed {float(r['resume_s']):.2f}s after ready, "  # type: ignore[arg-type]
                f"{r['alive']} alive"
                for r in restarts
            ],
            "schedulers alive before SIGINT": alive_at_end,
            "scheduler exit codes after SIGINT": dict(codes),
            "runs triggered (ids returned)": len(triggered),
            "trigger calls that failed (DB down) and were retried": triggers.failures,
            "runs in database": len(in_db),
            "triggered runs missing from database": len(lost),
            "runs created without an id returned (ambiguous commit)": len(in_db - triggered),
            "runs by status": runs,
            "task runs by status": task_runs,
            "failed attempts by error": dict(errors),
            "attempts executed twice (ledger rows per task run > 1)": len(twice_attempt),
            "tasks whose work was done twice in one run": len(twice_run),
            "ledger rows of attempts recorded failed": failed_with_ledger,
            "succeeded attempts without a ledger row": succeeded_without_ledger,
            "drain --until-idle exit code": drain.returncode,
        },
        ok,
    )
    if not ok:
        print("--- schedulers' log (tail)\n" + tail, file=sys.stderr)
    return 0 if ok else 1


def _answers(url: str) -> bool:
    try:
        common.query(url, "SELECT 1")
    except Exception:
        return False
    return True


if __name__ == "__main__":
    print(f"started {datetime.now(UTC):%H:%M:%S}", flush=True)
    sys.exit(main())
