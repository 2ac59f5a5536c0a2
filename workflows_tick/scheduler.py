"""The public Python API: triggering runs outside their schedule.

>>> from workflows_tick import scheduler
>>> run = scheduler.trigger_dag("daily_load", creator="backfill script", parameters={"DAY": "2024-01-01"})
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from sqlalchemy import Engine

from workflows_tick import queries
from workflows_tick.errors import UsageError
from workflows_tick.model import Dag
from workflows_tick.queries import DagRunRow
from workflows_tick.tick import Clock, utc_now

__all__ = ["DagRunRow", "trigger_dag"]

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def check_parameters(parameters: Mapping[str, object]) -> dict[str, str]:
    """Parameters become environment variables: names must be valid, values strings."""
    checked = {}
    for name, value in parameters.items():
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            raise UsageError(f"parameter name {name!r} is not a valid environment variable name")
        if not isinstance(value, str):
            raise UsageError(
                f"parameter {name}: value must be a string, not {type(value).__name__}"
            )
        # The value is never echoed: parameters may be secrets.
        if "\x00" in value:
            raise UsageError(f"parameter {name}: the value contains a NUL character")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise UsageError(f"parameter {name}: the value is not valid UTF-8") from None
        checked[name] = value
    return checked


def trigger_dag(
    dag: Dag | str,
    *,
    creator: str,
    parameters: Mapping[str, str] | None = None,
    engine: Engine | None = None,
    clock: Clock = utc_now,
) -> DagRunRow:
    """Create a running run of ``dag`` now and return it.

    ``parameters`` reach the run's tasks as environment variables. Without an
    ``engine``, the database is found as the scheduler finds it (and migrated).
    Triggers never collide: two in the same second make two runs.
    """
    name = dag.name if isinstance(dag, Dag) else dag
    params = check_parameters(parameters or {})
    if engine is not None:
        with engine.begin() as conn:
            return queries.insert_manual_run(conn, name, creator, params, clock())

    from workflows_tick.database import connect
    from workflows_tick.migrate import upgrade

    with connect(purpose="trigger") as db:
        upgrade(db.engine)
        with db.engine.begin() as conn:
            return queries.insert_manual_run(conn, name, creator, params, clock())
