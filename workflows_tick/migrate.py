"""Bringing the schema up to date, safely from many processes at once.

Up to date (the common case) costs one query and never imports Alembic. Otherwise
the upgrade runs under a PostgreSQL advisory lock, so ten schedulers starting
together migrate once and the other nine wait, then find nothing to do.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, text

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

HEAD = "0005"
"""The newest revision in migrations/versions (a test keeps them in step)."""

_LOCK_KEY = 0x776F726B666C6F77  # "workflow"


def migrations_dir() -> Path:
    """The Alembic folder, installed as the package ``workflows_tick.migrations``."""
    spec = importlib.util.find_spec("workflows_tick.migrations")
    if spec is None or spec.origin is None:  # pragma: no cover - a broken install
        raise RuntimeError("workflows_tick.migrations is not installed")
    return Path(spec.origin).parent


def current_revision(connection: Connection) -> str | None:
    exists = connection.execute(text("SELECT to_regclass('alembic_version')")).scalar()
    if exists is None:
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database of ``engine`` to ``revision`` (default: the newest)."""
    with engine.connect() as connection:
        if revision == "head" and current_revision(connection) == HEAD:
            connection.rollback()
            return
        connection.rollback()
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _LOCK_KEY})
        connection.commit()
        try:
            if revision == "head" and current_revision(connection) == HEAD:
                connection.rollback()
                return
            connection.rollback()
            _alembic_upgrade(connection, revision)
            connection.commit()
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _LOCK_KEY})
            connection.commit()


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _alembic_upgrade(connection: Connection, revision: str) -> None:
    from alembic import command

    log.info("migrating the database schema to %s", revision)
    command.upgrade(alembic_config(connection), revision)
