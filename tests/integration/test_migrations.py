"""The migrations create exactly the models' schema, safely from many processes."""

from __future__ import annotations

import subprocess
import sys
import threading

import sqlalchemy
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, text

from tests.conftest import sqlalchemy_url
from workflows_tick import migrate
from workflows_tick.models import Base


def test_models_and_migrations_agree(engine: sqlalchemy.Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
        )
    assert diff == []


def test_head_constant_is_the_newest_revision() -> None:
    script = ScriptDirectory.from_config(migrate.alembic_config())
    assert script.get_current_head() == migrate.HEAD


def test_ten_concurrent_upgrades_migrate_once(empty_database_url: str) -> None:
    engine = sqlalchemy.create_engine(sqlalchemy_url(empty_database_url), pool_size=12)
    errors: list[BaseException] = []
    barrier = threading.Barrier(10)

    def go() -> None:
        try:
            barrier.wait()
            migrate.upgrade(engine)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        with engine.connect() as conn:
            assert (
                conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
                == migrate.HEAD
            )
    finally:
        engine.dispose()


def test_an_up_to_date_database_costs_a_couple_of_queries(engine: sqlalchemy.Engine) -> None:
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    migrate.upgrade(engine)
    assert len(statements) <= 3  # to_regclass, version, (rollback is not a statement)


def test_a_non_editable_install_ships_the_migrations() -> None:
    # The migrations are a package of the wheel: found by import, not by a source path.
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from workflows_tick.migrate import migrations_dir; d = migrations_dir(); "
            "print((d / 'env.py').is_file(), any((d / 'versions').glob('0001_*.py')))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == ["True", "True"]
