"""The public Python API: operating runs from outside the scheduler.

>>> from workflows_tick import scheduler
>>> run = scheduler.trigger_dag("daily_load", creator="backfill script", parameters={"DAY": "2024-01-01"})
>>> scheduler.cancel_run(run.id, reason="wrong day")

Each function runs in one transaction: it changes everything it says or nothing.
Without an ``engine``, the database is found as the scheduler finds it (and migrated).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from sqlalchemy import Connection, Engine

from workflows_tick import queries
from workflows_tick.dags import Dag
from workflows_tick.errors import RunStateError, UnknownRunError, UsageError
from workflows_tick.queries import Cancelled, DagRunRow
from workflows_tick.tick import Clock, utc_now

__all__ = ["Cancelled", "DagRunRow", "cancel_run", "trigger_dag"]


@contextmanager
def _transaction(engine: Engine | None, purpose: str) -> Iterator[Connection]:
    """One transaction on ``engine``, or on the configured database (migrated first)."""
    if engine is not None:
        with engine.begin() as conn:
            yield conn
        return
    from workflows_tick.database import connect
    from workflows_tick.migrate import upgrade

    with connect(purpose=purpose) as db:
        upgrade(db.engine)
        with db.engine.begin() as conn:
            yield conn


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
    with _transaction(engine, "trigger") as conn:
        return queries.insert_manual_run(conn, name, creator, params, clock())


def cancel_run(
    run_id: int,
    *,
    reason: str | None = None,
    by: str = "api",
    engine: Engine | None = None,
    clock: Clock = utc_now,
) -> Cancelled:
    """End a running run ``cancelled``; its waiting task runs are cancelled with it.

    Its running attempts are stopped by the next pass of the scheduler that runs
    them (worker: the process group gets SIGTERM, then SIGKILL; Kubernetes: the
    pod is deleted) and recorded ``cancelled``; they are never retried. Raises
    :class:`UnknownRunError` for an unknown id and :class:`RunStateError` when the
    run has already ended (its state is left as it is).
    """
    message = f"cancelled by {by}" + (f": {reason}" if reason else "")
    with _transaction(engine, "cancel") as conn:
        run = queries.lock_run(conn, run_id)
        if run is None:
            raise UnknownRunError(run_id)
        cancelled = queries.cancel_run(conn, run_id, message, clock())
        if cancelled is None:
            raise RunStateError(
                f"run {run_id} has already ended ({run.status.value}); nothing to cancel"
            )
        return cancelled
