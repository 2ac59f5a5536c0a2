"""Side by side with dag-workflows 1.0.5: the same DAG folders, the same PostgreSQL server.

dag-workflows runs from its own virtualenv (outside the repository):

    python3 -m venv /tmp/dw-venv && /tmp/dw-venv/bin/pip install dag-workflows==1.0.5

Each scheduler is started and left running (ours: ``schedule worker --interval 5
--concurrency N``, listening for notifications; theirs: ``schedule worker``, one
task at a time, a loop every second), each on its own database of the same server.
Per repeat and DAG, a run is triggered (ours with ``trigger_dag``; theirs with its
``trigger`` command, whose start-up is not counted) and the wall time is measured
the same way for both: from the run's creation time stored in the database to the
moment the harness sees the run succeeded (it looks every 20 ms). DAGs: a chain of
10 no_op tasks and a fan-out of 20 independent no_op tasks.

    python benchmarks/side_by_side.py --dw-python /tmp/dw-venv/bin/python [--repeats 3]
        [--concurrency 1,20] [--admin-url postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import psycopg2

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DAGS = ("chain10", "fanout20")
POLL_SECONDS = 0.02
RUN_TIMEOUT = 600.0


def project(root: Path) -> None:
    """The DAG folders (dag-workflows' format, which both read: every task names its
    ``description`` and ``inputs``) and one config module for each scheduler."""
    chain = {"workflow.yaml": "description: a chain of no_op tasks\n"}
    for index in range(10):
        inputs = f"[t{index - 1:02d}.yaml]" if index else "[]"
        chain[f"t{index:02d}.yaml"] = f"type: no_op\ndescription: x\ninputs: {inputs}\n"
    fan = {"workflow.yaml": "description: independent no_op tasks\n"}
    for index in range(20):
        fan[f"t{index:02d}.yaml"] = "type: no_op\ndescription: x\ninputs: []\n"
    for name, files in (("chain10", chain), ("fanout20", fan)):
        (root / "dags" / name).mkdir(parents=True)
        for file, text in files.items():
            (root / "dags" / name / file).write_text(text)
    folder = "os.path.join(os.path.dirname(os.path.abspath(__file__)), 'dags')"
    (root / "ours.py").write_text(
        f"import os\nfrom workflows_tick import dags\nDAGS = dags.register_directory({folder})\n"
    )
    (root / "theirs.py").write_text(
        f"import os\nfrom workflows import dags\nDAGS = dags.register_directory({folder})\n"
    )


@contextmanager
def database(admin_url: str, label: str) -> Iterator[str]:
    name = f"bench_{label}_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(admin_url)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name}")
        base = admin_url.rsplit("/", 1)[0]
        yield f"{base}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def value(url: str, sql: str, params: tuple[object, ...] | None = None) -> object:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            row = cur.fetchone()
        conn.commit()
    finally:
        conn.close()
    return None if row is None else row[0]


def wait_until(check: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.1)


def watch(url: str, status_sql: str, created_sql: str, run: object) -> float:
    """Seconds from the run's stored creation time to seeing it succeeded."""
    deadline = time.monotonic() + RUN_TIMEOUT
    while True:
        status = value(url, status_sql, (run,))
        seen = time.time()
        if status == "succeeded":
            break
        if status not in ("running", None) or time.monotonic() > deadline:
            raise SystemExit(f"run {run}: {status}")
        time.sleep(POLL_SECONDS)
    created = value(url, created_sql, (run,))
    return seen - float(created)  # type: ignore[arg-type]


@contextmanager
def running(
    command: list[str], env: dict[str, str], cwd: Path
) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def ours(root: Path, url: str, concurrency: int, repeats: int) -> dict[str, list[float]]:
    from sqlalchemy import create_engine

    from workflows_tick.scheduler import trigger_dag

    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["WORKFLOWS_DATABASE_URL"] = url
    command = [sys.executable, "-m", "workflows_tick", str(root / "ours.py"), "schedule", "worker"]
    command += ["--interval", "5", "--concurrency", str(concurrency)]
    times: dict[str, list[float]] = {dag: [] for dag in DAGS}
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg2://", 1))
    listening = (
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND query LIKE 'LISTEN %%'"
    )
    try:
        with running(command, env, root) as process:
            wait_until(lambda: value(url, listening, ()) == 1, "our scheduler to listen")
            time.sleep(1.0)
            for _ in range(repeats):
                for dag in DAGS:
                    run = trigger_dag(dag, creator="benchmark", engine=engine).id
                    times[dag].append(
                        watch(
                            url,
                            "SELECT status FROM dag_run WHERE id = %s",
                            "SELECT extract(epoch FROM created_at) FROM dag_run WHERE id = %s",
                            run,
                        )
                    )
            if process.poll() is not None:
                raise SystemExit("our scheduler exited")
    finally:
        engine.dispose()
    return times


def theirs(root: Path, url: str, python: Path, repeats: int) -> dict[str, list[float]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKFLOWS_")}
    env["DATABASE_URL"] = url
    env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"  # it runs `workflows`
    env.pop("PYTHONPATH", None)
    cli = [str(python.parent / "workflows"), "theirs"]
    times: dict[str, list[float]] = {dag: [] for dag in DAGS}
    exists = "SELECT to_regclass('workflows_taskrun') IS NOT NULL"
    with running([*cli, "schedule", "worker"], env, root) as process:
        wait_until(lambda: value(url, exists) is True, "dag-workflows to migrate", timeout=300)
        time.sleep(3.0)  # past its first loops
        for _ in range(repeats):
            for dag in DAGS:
                before = value(url, "SELECT coalesce(max(id), 0) FROM workflows_dagrun")
                subprocess.run(
                    [*cli, "trigger", dag],
                    env=env,
                    cwd=root,
                    check=True,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                run = value(
                    url,
                    "SELECT id FROM workflows_dagrun WHERE id > %s AND dag = %s",
                    (before, dag),
                )
                times[dag].append(
                    watch(
                        url,
                        "SELECT status FROM workflows_dagrun WHERE id = %s",
                        "SELECT extract(epoch FROM created) FROM workflows_dagrun WHERE id = %s",
                        run,
                    )
                )
        if process.poll() is not None:
            raise SystemExit("the dag-workflows scheduler exited")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dw-python", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", default="1,20")
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    print("# side by side with dag-workflows 1.0.5")
    print(
        f"date {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; python {platform.python_version()}; "
        f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f} at the start"
    )
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        project(root)
        with database(args.admin_url, "theirs") as url:
            their = theirs(root, url, args.dw_python, args.repeats)
        mine = {}
        for concurrency in concurrencies:
            with database(args.admin_url, "ours") as url:
                mine[concurrency] = ours(root, url, concurrency, args.repeats)
    print(f"load average {os.getloadavg()[0]:.1f} at the end; {args.repeats} runs per DAG")
    print(
        "| DAG | dag-workflows 1.0.5 | "
        + " | ".join(f"workflows-tick --concurrency {c} | ratio" for c in concurrencies)
        + " |"
    )
    print("| --- | --- |" + " --- | --- |" * len(concurrencies))
    for dag in DAGS:
        theirs_median = statistics.median(their[dag])
        cells = [f"{theirs_median:.2f} s ({min(their[dag]):.2f}-{max(their[dag]):.2f})"]
        for concurrency in concurrencies:
            values = mine[concurrency][dag]
            m = statistics.median(values)
            cells.append(f"{m:.3f} s ({min(values):.3f}-{max(values):.3f})")
            cells.append(f"{m / theirs_median:.3f}x")
        print(f"| {dag} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
