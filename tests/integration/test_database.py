"""Finding and connecting to the database (workflows_tick.database) and the test harness."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg2
import pytest
import sqlalchemy
from sqlalchemy.engine import make_url

from tests.support import workflows
from workflows_tick import database
from workflows_tick.errors import DatabaseConfigError
from workflows_tick.logs import redact

SECRET = "s3cr3t-Pa55word"


# --- URL resolution ---------------------------------------------------------------------


def test_no_url_is_none() -> None:
    assert database.resolve_url({}) is None
    assert database.resolve_url({"DATABASE_URL": "", "WORKFLOWS_DATABASE_URL": ""}) is None


@pytest.mark.parametrize(
    "given",
    [
        "postgres://app:pw1234@db.example:5433/sched",
        "postgresql://app:pw1234@db.example:5433/sched",
        "postgresql+psycopg2://app:pw1234@db.example:5433/sched",
    ],
)
def test_url_is_normalised_to_psycopg2(given: str) -> None:
    assert (
        database.resolve_url({"DATABASE_URL": given})
        == "postgresql+psycopg2://app:pw1234@db.example:5433/sched"
    )


def test_workflows_database_url_wins() -> None:
    environ = {
        "DATABASE_URL": "postgres://a@first/one",
        "WORKFLOWS_DATABASE_URL": "postgres://b@second/two",
    }
    assert database.resolve_url(environ) == "postgresql+psycopg2://b@second/two"
    environ["WORKFLOWS_DATABASE_URL"] = ""
    assert database.resolve_url(environ) == "postgresql+psycopg2://a@first/one"


def test_query_parameters_are_kept() -> None:
    url = database.resolve_url(
        {"DATABASE_URL": "postgres://app@/sched?host=/run/pg&sslmode=require"}
    )
    assert url is not None
    parsed = make_url(url)
    assert parsed.drivername == "postgresql+psycopg2"
    assert dict(parsed.query) == {"host": "/run/pg", "sslmode": "require"}


def test_percent_encoded_password_survives() -> None:
    url = database.resolve_url({"DATABASE_URL": "postgres://app:p%40ss%2Fw0rd@h/db"})
    assert url is not None
    assert make_url(url).password == "p@ss/w0rd"


def test_display_url_hides_the_password() -> None:
    shown = database.display_url(f"postgresql+psycopg2://app:{SECRET}@h:5432/db?host=/run/pg")
    assert shown == "postgresql+psycopg2://app:***@h:5432/db?host=/run/pg"
    assert database.display_url("postgresql://app@h/db?password=x1y2z3w4") == (
        "postgresql://app@h/db?password=***"
    )


@pytest.mark.parametrize(
    "given",
    [
        f"postgres://app:{SECRET}@h:notaport/db",
        f"postgres://app:{SECRET}@with@at@h/db",
        f"mysql://app:{SECRET}@h/db",
        f"postgres://app@h:x/db?password={SECRET}&sslmode=require",
        f"postgres//app:{SECRET}@h/db",
        f"postgresql:/app:{SECRET}@h/db",
        f"postgresql:app:{SECRET}@h/db",
    ],
)
def test_bad_url_error_hides_the_password(given: str) -> None:
    with pytest.raises(DatabaseConfigError) as raised:
        database.resolve_url({"DATABASE_URL": given})
    message = str(raised.value)
    assert "Pa55" not in message
    assert "***" in message
    assert "\n" not in message


def test_password_is_registered_as_a_secret() -> None:
    database.resolve_url({"DATABASE_URL": "postgres://app:Zq9-secret-x@h/db"})
    assert redact("the password is Zq9-secret-x") == "the password is ***"


def test_require_url_without_url() -> None:
    with (
        pytest.raises(DatabaseConfigError, match="set DATABASE_URL"),
        database.connect("kubernetes", require_url=True, environ={}),
    ):
        pytest.fail("connected without a URL")


# --- data folder ---------------------------------------------------------------------------


def test_data_dir_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    assert database.data_dir({"WORKFLOWS_DATA_DIR": "/srv/wt"}) == Path("/srv/wt")
    monkeypatch.setattr(database, "_is_root", lambda: False)
    assert database.data_dir({"XDG_DATA_HOME": "/x/share", "HOME": "/home/u"}) == Path(
        "/x/share/workflows-tick"
    )
    assert database.data_dir({"HOME": "/home/u"}) == Path("/home/u/.local/share/workflows-tick")
    monkeypatch.setattr(database, "_is_root", lambda: True)
    assert database.data_dir({"XDG_DATA_HOME": "/root/.local/share", "HOME": "/root"}) == Path(
        "/var/lib/workflows-tick"
    )


def test_root_refuses_a_data_dir_in_its_home(monkeypatch: pytest.MonkeyPatch) -> None:
    import pwd

    home = Path(pwd.getpwuid(0).pw_dir)
    monkeypatch.setattr(database, "_is_root", lambda: True)
    with (
        pytest.raises(DatabaseConfigError, match="readable by every user"),
        database.connect("test", environ={"WORKFLOWS_DATA_DIR": str(home / "wt")}),
    ):
        pytest.fail("started a server in root's home")
    assert not (home / "wt").exists()


# --- connecting to a server -------------------------------------------------------------------


def test_connect_to_a_url(database_url: str) -> None:
    with database.connect("tests", environ={"DATABASE_URL": database_url}) as db:
        assert not db.embedded
        assert db.url == database.display_url(database.normalize_url(database_url))
        with db.engine.connect() as connection:
            name = connection.execute(sqlalchemy.text("SHOW application_name")).scalar()
        assert name == "workflows-tick/tests"
        assert db.engine.pool.size() == database.POOL_SIZE  # type: ignore[attr-defined]


def test_unreachable_server_is_one_line_without_password(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"postgres://app:{SECRET}@127.0.0.1:1/db?connect_timeout=2"
    with (
        pytest.raises(DatabaseConfigError) as raised,
        database.connect("tests", environ={"DATABASE_URL": url}),
    ):
        pytest.fail("connected to port 1")
    message = str(raised.value)
    assert message.startswith("cannot connect to the database at postgresql+psycopg2://app:***@")
    assert "\n" not in message
    assert raised.value.__cause__ is None
    captured = capsys.readouterr()
    for text in (message, caplog.text, captured.out, captured.err):
        assert SECRET not in text


def test_unknown_role_is_one_line_without_password(pg_admin_url: str) -> None:
    url = make_url(pg_admin_url).set(username="no_such_role", password=SECRET)
    with (
        pytest.raises(DatabaseConfigError, match="no_such_role") as raised,
        database.connect(
            "tests", environ={"DATABASE_URL": url.render_as_string(hide_password=False)}
        ),
    ):
        pytest.fail("connected as a role that does not exist")
    assert SECRET not in str(raised.value)
    assert "\n" not in str(raised.value)


def test_cli_connection_failure_is_one_line_without_password() -> None:
    env = dict(os.environ, DATABASE_URL=f"postgres://app:{SECRET}@127.0.0.1:1/db")
    result = workflows("-v", "no_config.py", "migrate", env=env)
    assert result.returncode == DatabaseConfigError.exit_code
    assert SECRET not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("workflows: cannot connect to the database at ")
    assert result.stderr.count("\n") == 1


def test_cli_migrates_an_empty_database(empty_database_url: str) -> None:
    env = dict(os.environ, DATABASE_URL=empty_database_url)
    result = workflows("no_config.py", "migrate", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "database is up to date\n"
    with psycopg2.connect(empty_database_url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT version_num FROM alembic_version")
        assert cursor.fetchone() is not None
    connection.close()


# --- the embedded server ---------------------------------------------------------------------------

EMBEDDED_CLIENT = textwrap.dedent(
    """
    import sys, time
    from sqlalchemy import text
    from workflows_tick.database import connect

    with connect("tests") as db:
        assert db.embedded
        with db.engine.begin() as connection:
            connection.execute(text("CREATE TABLE IF NOT EXISTS visits (n int)"))
            connection.execute(text("INSERT INTO visits VALUES (1)"))
            count = connection.execute(text("SELECT count(*) FROM visits")).scalar()
        print(count, flush=True)  # after the commit
        if sys.argv[1:] == ["wait"]:
            time.sleep(60)
    """
)


def _postgres_processes(pgdata: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = process.info["cmdline"] or []
        if process.info["name"] == "postgres" and str(pgdata) in cmdline:
            found.append(process)
    return found


def _stop_leftover_server(pgdata: Path) -> None:
    for process in _postgres_processes(pgdata):
        with contextlib.suppress(psutil.Error):
            process.send_signal(signal.SIGINT)
            process.wait(10)


@pytest.fixture
def embedded_env() -> Iterator[dict[str, str]]:
    """An environment without a database URL, with a fresh data folder under /tmp."""
    folder = Path(tempfile.mkdtemp(prefix="workflows-tick-test-embedded-"))
    env = {k: v for k, v in os.environ.items() if k not in database.URL_VARIABLES}
    env[database.DATA_DIR_VARIABLE] = str(folder)
    try:
        yield env
    finally:
        _stop_leftover_server(folder / database.PGDATA_NAME)
        shutil.rmtree(folder, ignore_errors=True)


def _assert_stopped(env: dict[str, str]) -> None:
    pgdata = Path(env[database.DATA_DIR_VARIABLE]) / database.PGDATA_NAME
    assert (pgdata / "PG_VERSION").exists(), "the data folder was not kept"
    assert not (pgdata / "postmaster.pid").exists()
    assert _postgres_processes(pgdata) == []


def _embedded_client(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", EMBEDDED_CLIENT, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_embedded_data_persists_and_server_stops(embedded_env: dict[str, str]) -> None:
    for expected in ("1", "2"):
        client = _embedded_client(embedded_env)
        out, err = client.communicate(timeout=60)
        assert client.returncode == 0, err
        assert out.strip() == expected
        _assert_stopped(embedded_env)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "returncodes"),
    [(signal.SIGTERM, {128 + signal.SIGTERM}), (signal.SIGINT, {-signal.SIGINT, 1})],
)
def test_embedded_server_stops_on_signal(
    embedded_env: dict[str, str], signum: int, returncodes: set[int]
) -> None:
    client = _embedded_client(embedded_env, "wait")
    try:
        assert client.stdout is not None
        assert client.stdout.readline().strip() == "1"
        client.send_signal(signum)
        client.communicate(timeout=60)
    finally:
        if client.poll() is None:
            client.kill()
            client.communicate()
    assert client.returncode in returncodes
    _assert_stopped(embedded_env)


@pytest.mark.slow
def test_embedded_server_stops_after_a_killed_user(embedded_env: dict[str, str]) -> None:
    killed = _embedded_client(embedded_env, "wait")
    try:
        assert killed.stdout is not None
        assert killed.stdout.readline().strip() == "1"
        killed.kill()
        killed.communicate(timeout=60)
    finally:
        if killed.poll() is None:
            killed.kill()
            killed.communicate()
    client = _embedded_client(embedded_env)
    out, err = client.communicate(timeout=60)
    assert client.returncode == 0, err
    assert out.strip() == "2"
    _assert_stopped(embedded_env)


@pytest.mark.slow
def test_embedded_server_shared_with_another_process(embedded_env: dict[str, str]) -> None:
    pgdata = Path(embedded_env[database.DATA_DIR_VARIABLE]) / database.PGDATA_NAME
    other = _embedded_client(embedded_env, "wait")
    try:
        assert other.stdout is not None
        assert other.stdout.readline().strip() == "1"
        for _ in range(2):
            with database.connect("tests", environ=embedded_env) as db:
                users = json.loads((pgdata / ".handle_pids.json").read_text())
                assert sorted(users) == sorted([other.pid, os.getpid()])
                with db.engine.connect() as connection:
                    count = connection.execute(sqlalchemy.text("SELECT count(*) FROM visits"))
                    assert count.scalar() == 1
            assert (pgdata / "postmaster.pid").exists(), "stopped while another process used it"
        other.send_signal(signal.SIGTERM)
        other.communicate(timeout=60)
    finally:
        if other.poll() is None:
            other.kill()
            other.communicate()
    assert other.returncode == 128 + signal.SIGTERM
    _assert_stopped(embedded_env)


@pytest.mark.slow
def test_embedded_server_in_process(
    embedded_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    handler_before = signal.getsignal(signal.SIGTERM)
    with database.connect("tests", environ=embedded_env) as db:
        assert db.embedded
        assert "host=/" in db.url
        if handler_before is signal.SIG_DFL:
            assert signal.getsignal(signal.SIGTERM) is database.exit_on_signal
        with db.engine.connect() as connection:
            assert connection.execute(sqlalchemy.text("SELECT 1")).scalar() == 1
    assert signal.getsignal(signal.SIGTERM) is handler_before
    pgdata = Path(embedded_env[database.DATA_DIR_VARIABLE]) / database.PGDATA_NAME
    ours = [r for r in caplog.records if r.name.startswith("workflows_tick")]
    assert len([r for r in ours if r.levelno == logging.INFO]) == 1
    assert str(pgdata) in ours[0].getMessage()
    assert not [r for r in caplog.records if r.name.startswith("pixeltable")]
    _assert_stopped(embedded_env)


# --- the harness itself ----------------------------------------------------------------------------


def test_database_url_is_a_fresh_migrated_database(database_url: str) -> None:
    from workflows_tick.migrate import HEAD

    name = make_url(database_url).database
    assert name is not None
    assert name.startswith("test_")
    connection = psycopg2.connect(database_url)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT version_num FROM alembic_version")
            assert cursor.fetchone() == (HEAD,)
            cursor.execute("CREATE TABLE only_here (n int)")
        connection.commit()
    finally:
        connection.close()


def test_clones_do_not_share_data(
    database_url: str, pg_admin_url: str, template_database: str
) -> None:
    connection = psycopg2.connect(database_url)
    try:
        with connection.cursor() as cursor:
            cursor.execute("CREATE TABLE only_here (n int)")
        connection.commit()
    finally:
        connection.close()
    template = psycopg2.connect(
        make_url(pg_admin_url).set(database=template_database).render_as_string(hide_password=False)
    )
    try:
        with template.cursor() as cursor:
            cursor.execute("SELECT to_regclass('only_here')")
            assert cursor.fetchone() == (None,)
    finally:
        template.close()


def test_empty_database_has_no_tables(empty_database_url: str) -> None:
    connection = psycopg2.connect(empty_database_url)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
            assert cursor.fetchone() == (0,)
    finally:
        connection.close()


def test_the_engine_fixture_connects_as_the_test_application(engine: sqlalchemy.Engine) -> None:
    with engine.connect() as connection:
        assert connection.execute(sqlalchemy.text("SELECT 1")).scalar() == 1
        name = connection.execute(sqlalchemy.text("SHOW application_name")).scalar()
    assert name == "workflows-tick/test"


def test_subprocesses_get_this_tests_database_url(
    subprocess_env: dict[str, str], database_url: str
) -> None:
    assert subprocess_env["DATABASE_URL"] == database_url
    assert "WORKFLOWS_DATABASE_URL" not in subprocess_env
    assert database.resolve_url(subprocess_env) == database.normalize_url(database_url)


def test_no_real_database_during_tests() -> None:
    assert "DATABASE_URL" not in os.environ
    assert "WORKFLOWS_DATABASE_URL" not in os.environ
    assert os.environ[database.DATA_DIR_VARIABLE].startswith(tempfile.gettempdir())
