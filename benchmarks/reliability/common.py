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
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg2

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # a checkout runs `python benchmarks/reliability/<script>.py`
    sys.path.insert(0, str(REPO))

from workflows_tick.testing import (  # noqa: E402
    LEDGER_TABLE,
    LEDGER_TASK,
    descendants,
    processes_matching,
    query,
    still_alive,
    wait_for,
    workflows,
)
from workflows_tick.testing import write_project as _write_project  # noqa: E402

__all__ = [
    "LEDGER_TABLE",
    "LEDGER_TASK",
    "descendants",
    "processes_matching",
    "query",
    "still_alive",
    "wait_for",
    "workflows",
]

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


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


def scalar(url: str, sql: str, params: Sequence[Any] | None = None) -> Any:
    return query(url, sql, params)[0][0]


def write_project(root: Path, dags: dict[str, dict[str, str]]) -> str:
    """Write ``{dag: {file: text}}`` under ``root`` with a config.py; return the config path."""
    _write_project(root, dags)
    return str(root / "config.py")


def environment(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WORKFLOWS_DATABASE_URL",)}
    env["DATABASE_URL"] = url
    return env


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


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return "?"
