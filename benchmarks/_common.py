"""Shared helpers of the benchmark scripts: a throw-away database, DAG projects, statistics.

Not a benchmark itself. Each script puts the repository root on ``sys.path``, so that a
checkout runs them without installing; the fakes and the DAG project writer come from
:mod:`workflows_tick.testing`, never from ``tests``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg2
from sqlalchemy import Engine, make_url, text

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from workflows_tick.database import make_engine, normalize_url  # noqa: E402
from workflows_tick.migrate import upgrade  # noqa: E402

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/test"
"""Where a fresh database is created when no URL is given."""
URL_VARIABLE = "BENCH_DATABASE_URL"
OUR_TABLES = (
    "event",
    "cronitor_monitor",
    "task_run",
    "dag_run",
    "dag_schedule",
    "alembic_version",
)
OUR_FUNCTIONS = ("workflows_dag_run_events", "workflows_task_run_events")


def add_database_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url",
        default=os.environ.get(URL_VARIABLE) or None,
        help=(
            f"an EMPTY database to use (default: ${URL_VARIABLE}; else a fresh database "
            f"created on {DEFAULT_SERVER} and dropped at the end). The tables the "
            "benchmark creates in a given database are dropped at the end."
        ),
    )


@dataclass(frozen=True)
class BenchDatabase:
    url: str
    """A libpq URL (``postgresql://...``), for subprocesses and psycopg2."""
    engine_url: str
    """The same, in the SQLAlchemy psycopg2 form."""
    described: str
    """Which server, for the printed header."""


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def bench_database(given: str | None, name: str) -> Iterator[BenchDatabase]:
    """A migrated empty database; dropped (or emptied of our tables) on the way out."""
    if given:
        url = _libpq(normalize_url(given))
        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            cur.execute("SELECT to_regclass('dag_run') IS NOT NULL")
            row = cur.fetchone()
            if row is not None and row[0]:
                cur.execute("SELECT EXISTS (SELECT 1 FROM dag_run)")
                row = cur.fetchone()
                if row is not None and row[0]:
                    raise SystemExit(f"{name}: the database at --database-url is not empty")
        conn.close()
        try:
            yield _prepared(url)
        finally:
            _drop_tables(url)
        return

    admin_url = _libpq(DEFAULT_SERVER)
    database = f"bench_{name}_{os.getpid()}"
    admin = psycopg2.connect(admin_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{database}"')
    url = make_url(admin_url).set(database=database).render_as_string(hide_password=False)
    try:
        yield _prepared(url)
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin.close()


def _prepared(url: str) -> BenchDatabase:
    engine = make_engine(normalize_url(url), purpose="benchmark")
    try:
        upgrade(engine)
        with engine.connect() as conn:
            version = conn.execute(text("SHOW server_version")).scalar_one()
    finally:
        engine.dispose()
    parsed = make_url(url)
    where = f"{parsed.host or 'local socket'}:{parsed.port or 5432}"
    return BenchDatabase(
        url=url,
        engine_url=normalize_url(url),
        described=f"PostgreSQL {version} at {where}, database {parsed.database}",
    )


def _drop_tables(url: str) -> None:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {', '.join(OUR_TABLES)} CASCADE")
        cur.execute(f"DROP FUNCTION IF EXISTS {', '.join(OUR_FUNCTIONS)} CASCADE")
    conn.close()


def engine_for(db: BenchDatabase) -> Engine:
    return make_engine(db.engine_url, purpose="benchmark")


def subprocess_env(db: BenchDatabase) -> dict[str, str]:
    """``os.environ`` in which the ``workflows`` command uses ``db``."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", URL_VARIABLE)}
    env["WORKFLOWS_DATABASE_URL"] = db.url
    # An installed package has its .pyc files; let the first run write them.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def workflows_command(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "workflows_tick", str(config), *args]


def run_quietly(command: Sequence[str], env: dict[str, str], timeout: float = 60) -> str:
    done = subprocess.run(
        list(command), env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


# --- DAG projects -----------------------------------------------------------------------


def scheduled_dags(
    count: int, tasks: int = 3, schedule: str = "0 3 * * *", cross_dag: bool = False
) -> dict[str, dict[str, str]]:
    """``count`` DAGs named ``dag_0000``..., each a chain of ``tasks`` no_op tasks; with
    ``cross_dag``, the first task of each DAG but the first also reads the last task
    of the DAG before it (an input on another DAG)."""
    dags: dict[str, dict[str, str]] = {}
    for index in range(count):
        files = {"workflow.yaml": f"description: benchmark DAG {index}\nschedule: '{schedule}'\n"}
        for task in range(tasks):
            inputs = f"inputs: [t{task - 1}.yaml]\n" if task else ""
            if cross_dag and index and not task:
                inputs = f"inputs: ['dag_{index - 1:04d}:t{tasks - 1}.yaml']\n"
            files[f"t{task}.yaml"] = f"type: no_op\n{inputs}"
        dags[f"dag_{index:04d}"] = files
    return dags


# --- figures ------------------------------------------------------------------------------


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def header(title: str, db: BenchDatabase) -> None:
    load = os.getloadavg()[0]
    print(f"# {title}")
    print(
        f"date {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; python {platform.python_version()}; "
        f"{os.cpu_count()} cores; load average {load:.1f}; {db.described}"
    )


class Stopwatch:
    def __init__(self) -> None:
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.started
