"""pytest fixtures for testing a project's own DAGs (dag-workflows' ``workflows.testing``).

Registered as a pytest plugin when workflows-tick is installed. A test asks for the
``workflows`` fixture::

    from config import DAGS

    def test_daily_totals(workflows):
        task = DAGS["sales"].get_task("daily_totals.sql")
        workflows.setup_task_inputs(task, {"orders": [{"id": 1, "amount": 5}]})
        result = workflows.execute_task(task)
        assert result["daily_totals"] == [{"total": 5}]

Everything runs on the ``conn`` fixture: one real PostgreSQL connection per test,
inside a transaction that is rolled back afterwards, so tests never see each other's
tables. The database is ``WORKFLOWS_TEST_DATABASE_URL`` when set, else an embedded
PostgreSQL started once per session. Override ``conn`` (or ``workflows_database_url``)
in a ``conftest.py`` to use another connection: it must be a psycopg2 connection
with a transaction that the fixture's owner rolls back.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest

from workflows_tick.errors import TaskFailed, UsageError
from workflows_tick.model import Dag, TableOutput, Task
from workflows_tick.runner import DATABASE_URL, run_tasks
from workflows_tick.scratch_postgres import libpq_url, scratch_server

__all__ = ["TEST_DATABASE_VARIABLE", "WorkflowsFixture", "conn", "workflows"]

TEST_DATABASE_VARIABLE = "WORKFLOWS_TEST_DATABASE_URL"
"""An existing PostgreSQL database for the tests; without it an embedded one is started."""


@pytest.fixture(scope="session")
def workflows_database_url() -> Iterator[str]:
    """A libpq URL of the database the tests run in."""
    external = os.environ.get(TEST_DATABASE_VARIABLE, "")
    if external:
        yield libpq_url(external)
        return
    with scratch_server(prefix="workflows-test-pg-") as url:
        yield url


@pytest.fixture()
def conn(workflows_database_url: str) -> Iterator[Any]:
    """A psycopg2 connection in a transaction that is rolled back after the test."""
    import psycopg2

    connection = psycopg2.connect(workflows_database_url)
    try:
        yield connection
    finally:
        if not connection.closed:
            connection.rollback()
            connection.close()


@pytest.fixture()
def workflows(conn: Any, workflows_database_url: str) -> WorkflowsFixture:
    """Run tasks and DAGs on ``conn``, set up their inputs, query the results."""
    return WorkflowsFixture(conn, workflows_database_url)


class WorkflowsFixture:
    """What the ``workflows`` fixture gives a test (dag-workflows' methods)."""

    TaskFailed = TaskFailed
    """Raised by :meth:`execute_task` and :meth:`execute_dag` when a task fails."""

    def __init__(self, conn: Any, database_url: str) -> None:
        self.conn = conn
        self.database_url = database_url

    def setup_task_inputs(
        self, task: Task, values: Mapping[str, Sequence[Mapping[str, Any]]] | None = None
    ) -> None:
        """Create the output tables of ``task``'s inputs (its own DAG's and other DAGs'),
        filled with ``values[table name]`` (a list of rows as dicts) when given."""
        values = values or {}
        for upstream in _input_tasks(task):
            for output in upstream.outputs:
                self._create_table(output, values.get(output.name) or [])

    def execute_task(
        self, task: Task, parameters: Mapping[str, str] | None = None
    ) -> dict[str, list[dict[str, Any]]]:
        """Run ``task`` on the test's connection; return each output table's rows."""
        dag = _dag_of(task)
        run_tasks(dag, [task], self._environ(parameters), connect=self._connect)
        return {output.name: self._rows(output.name) for output in task.outputs}

    def execute_dag(
        self,
        dag: Dag,
        env_vars: Mapping[str, str] | None = None,
        begin: str | None = None,
        end: str | None = None,
    ) -> None:
        """Run ``dag``'s tasks (from ``begin``, up to ``end``) on the test's connection."""
        run_tasks(
            dag, dag.select(begin=begin, end=end), self._environ(env_vars), connect=self._connect
        )

    def execute_sql(self, sql: str) -> list[tuple[Any, ...]] | None:
        """Run ``sql`` on the test's connection; its rows, or None if it returns none."""
        with self.conn.cursor() as cursor:
            cursor.execute(sql)
            if cursor.description is None:
                return None
            return list(cursor.fetchall())

    # --- helpers ---------------------------------------------------------------------

    def _environ(self, values: Mapping[str, str] | None) -> dict[str, str]:
        return {**os.environ, DATABASE_URL: self.database_url, **(values or {})}

    def _connect(self, dag: Dag, task: Task, params: Mapping[str, str]) -> Any:
        return SavepointConnection(self.conn)

    def _rows(self, table: str) -> list[dict[str, Any]]:
        from psycopg2 import sql

        with self.conn.cursor() as cursor:
            cursor.execute(sql.SQL("SELECT * FROM {}").format(_table_name(table)))
            names = [column[0] for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def _create_table(self, output: TableOutput, rows: Sequence[Mapping[str, Any]]) -> None:
        from psycopg2 import sql

        columns = []
        for column in output.columns:
            if not column.datatype:
                raise UsageError(
                    f"output {output.name!r}: column {column.name!r} has no datatype, "
                    "so the test cannot create it"
                )
            null = {True: " NULL", False: " NOT NULL", None: ""}[column.nullable]
            columns.append(
                sql.SQL("{} {}{}").format(
                    sql.Identifier(column.name), sql.SQL(column.datatype), sql.SQL(null)
                )
            )
        table = _table_name(output.name)
        with self.conn.cursor() as cursor:
            cursor.execute(
                sql.SQL("CREATE TABLE {} ({})").format(table, sql.SQL(", ").join(columns))
            )
            for row in rows:
                cursor.execute(
                    sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                        table,
                        sql.SQL(", ").join(map(sql.Identifier, row)),
                        sql.SQL(", ").join(sql.Placeholder() * len(row)),
                    ),
                    list(row.values()),
                )


class SavepointConnection:
    """The test's connection as a task sees it: the task's commit and rollback act on
    a savepoint, so everything stays inside the test's transaction."""

    _SAVEPOINT = "workflows_task"

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._execute(f"SAVEPOINT {self._SAVEPOINT}")

    def _execute(self, statement: str) -> None:
        with self._conn.cursor() as cursor:
            cursor.execute(statement)

    def commit(self) -> None:
        self._execute(f"RELEASE SAVEPOINT {self._SAVEPOINT}")
        self._execute(f"SAVEPOINT {self._SAVEPOINT}")

    def rollback(self) -> None:
        self._execute(f"ROLLBACK TO SAVEPOINT {self._SAVEPOINT}")

    def close(self) -> None:
        """Keep what the task committed; the test's transaction goes on."""
        self._execute(f"RELEASE SAVEPOINT {self._SAVEPOINT}")

    @property
    def closed(self) -> int:
        return int(self._conn.closed)

    def cursor(self, *args: Any, **kwargs: Any) -> Any:
        return self._conn.cursor(*args, **kwargs)

    def __enter__(self) -> SavepointConnection:
        return self

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        if kind is None:
            self.commit()
        else:
            self.rollback()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def _dag_of(task: Task) -> Dag:
    if task.dag is None:
        raise UsageError(f"task {task.name!r} belongs to no DAG: get it with dag.get_task(name)")
    return task.dag


def _input_tasks(task: Task) -> list[Task]:
    dag = _dag_of(task)
    found = [dag.task(name) for name in task.inputs]
    for ref in task.external_inputs:
        if dag.registry is None:
            raise UsageError(f"task {task.name!r}: its DAG has no registry to find {ref.dag!r}")
        found.append(dag.registry.get(ref.dag).task(ref.task))
    return found


def _table_name(name: str) -> Any:
    from psycopg2 import sql

    return sql.Identifier(*name.split("."))
