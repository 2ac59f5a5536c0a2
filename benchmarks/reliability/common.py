"""Shared by the reliability scripts: a database, a ledger project, schedulers as subprocesses.

Every script takes ``--database-url`` (a libpq URI to a migrated or empty database it
may write to); without it, it creates a fresh database on the local server
(``--admin-url``, default ``postgresql://postgres@127.0.0.1:5432/postgres``) and drops
it at the end. Every process a script starts is stopped before it exits.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg2

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"

LEDGER_TASK = '''"""
parameters: [DATABASE_URL, WORKFLOWS_TASK_RUN_ID, WORKFLOWS_ATTEMPT]
{extra}
"""
import os
import time


def run(context):
    {body}
    with context["conn"].cursor() as cur:
        cur.execute(
            "INSERT INTO ledger (task_run_id, attempt, pid) VALUES (%s, %s, %s)",
            (context["WORKFLOWS_TASK_RUN_ID"], context["WORKFLOWS_ATTEMPT"], os.getpid()),
        )
'''

LEDGER_TABLE = "CREATE TABLE IF NOT EXISTS ledger (task_run_id bigint, attempt int, pid int)"


def add_database_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database-url", help="libpq URI of a database to use (kept)")
    parser.add_argument(
        "--admin-url",
        default=DEFAULT_ADMIN_URL,
        help="server on which to create (and drop) a fresh database when --database-url is not given",
    )


def with_database(admin_url: str, name: str) -> str:
    from sqlalchemy.engine import make_url

    url = make_url(admin_url).set(database=name)
    return url.render_as_string(hide_password=False)


@contextlib.contextmanager
def database(args: argparse.Namespace, prefix: str) -> Iterator[str]:
    """The URL given, or a fresh database created on the admin server and dropped after."""
    if args.database_url:
        yield args.database_url
        return
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(args.admin_url)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        try:
            yield with_database(args.admin_url, name)
        finally:
            with admin.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()


def migrate(url: str) -> None:
    """Bring the schema up to date and create the ledger table."""
    from workflows_tick.database import make_engine, normalize_url
    from workflows_tick.migrate import upgrade

    engine = make_engine(normalize_url(url), purpose="reliability")
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    query(url, LEDGER_TABLE)


def query(url: str, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
    conn = psycopg2.connect(url, connect_timeout=5)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def scalar(url: str, sql: str, params: Sequence[Any] | None = None) -> Any:
    return query(url, sql, params)[0][0]


def write_project(root: Path, dags: dict[str, dict[str, str]]) -> str:
    """Write ``{dag: {file: text}}`` under ``root`` with a config.py; return the config path."""
    for dag, files in dags.items():
        folder = root / dag
        folder.mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            (folder / name).write_text(textwrap.dedent(content))
    config = root / "config.py"
    config.write_text(
        "import os\nfrom workflows_tick import dags\n"
        "DAGS = dags.register_directory(os.path.dirname(__file__))\n"
    )
    return str(config)


def environment(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WORKFLOWS_DATABASE_URL",)}
    env["DATABASE_URL"] = url
    return env


def workflows(
    config: str, *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workflows_tick", config, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_scheduler(
    config: str, env: dict[str, str], *extra: str, log: Path | None = None
) -> subprocess.Popen[bytes]:
    out = log.open("ab") if log is not None else subprocess.DEVNULL
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "workflows_tick", "-v", config, "schedule", "worker", *extra],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=out,
        )
    finally:
        if log is not None and not isinstance(out, int):
            out.close()


def stop(processes: Sequence[subprocess.Popen[bytes]], sig: int = signal.SIGTERM) -> None:
    """Signal every process still alive, wait up to 30 s, then SIGKILL what is left."""
    for proc in processes:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
    deadline = time.monotonic() + 30
    for proc in processes:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for(check: Callable[[], bool], timeout: float, what: str, step: float = 0.05) -> float:
    """Seconds until ``check()`` held; raise TimeoutError after ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(step)
    raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")


def processes_matching(text: str) -> list[int]:
    """Pids whose command line contains ``text``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z" and text in cmdline:
            found.append(int(proc.name))
    return found


def machine() -> str:
    mem = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = round(int(line.split()[1]) / (1024 * 1024))
    return f"{os.cpu_count()} cores, {mem} GiB, Python {platform.python_version()}"


def revision() -> str:
    """The repository's commit, with ``+changes`` when workflows_tick/ differs from it."""
    repo = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--", "workflows_tick"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+changes" if dirty else "")


def server_version(url: str) -> str:
    return str(scalar(url, "SHOW server_version"))


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def report(title: str, counts: dict[str, Any], ok: bool) -> None:
    print(f"== {title}")
    counts = {"commit": revision(), **counts}
    width = max(len(k) for k in counts)
    for key, value in counts.items():
        print(f"{key.ljust(width)}  {value}")
    print(f"RESULT: {'PASS' if ok else 'FAIL'}")


def _stat(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, state, start time in clock ticks) of ``pid``, or None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), fields[0], int(fields[19])


def descendants(root: int) -> dict[int, int]:
    """Every live descendant of ``root``: pid -> start time (to tell a reused pid apart)."""
    parents: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        info = _stat(int(entry.name))
        if info is None or info[1] == "Z":
            continue
        parents.setdefault(info[0], []).append(int(entry.name))
        starts[int(entry.name)] = info[2]
    found: dict[int, int] = {}
    todo = [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in found:
                found[child] = starts[child]
                todo.append(child)
    return found


def still_alive(processes: dict[int, int]) -> list[int]:
    """The pids of ``processes`` (pid -> start time) that still run (zombies count as gone)."""
    alive = []
    for pid, start in processes.items():
        info = _stat(pid)
        if info is not None and info[1] != "Z" and info[2] == start:
            alive.append(pid)
    return alive


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return "?"
