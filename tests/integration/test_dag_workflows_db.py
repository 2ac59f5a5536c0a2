"""dag-workflows' database-facing API: ``workflows.scheduler.trigger_dag``, and the SQL
of docs/migrating-from-dag-workflows.md that moves its run history (Django's
workflows_dagrun / workflows_taskrun) into our tables."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg2
import pytest

from tests.support import query, write_project

GUIDE = Path(__file__).parent.parent.parent / "docs" / "migrating-from-dag-workflows.md"

DJANGO_TABLES = """
CREATE TABLE workflows_dagrun (
    id bigserial PRIMARY KEY, dag text NOT NULL, created timestamptz NOT NULL,
    creator text NOT NULL, status text NOT NULL, parameters jsonb NOT NULL,
    UNIQUE (dag, created));
CREATE TABLE workflows_taskrun (
    id bigserial PRIMARY KEY, task text NOT NULL, attempt integer NOT NULL,
    status text NOT NULL, created timestamptz NOT NULL, started timestamptz,
    ended timestamptz, host text,
    dag_run_id bigint NOT NULL REFERENCES workflows_dagrun (id),
    UNIQUE (task, dag_run_id, attempt));
INSERT INTO workflows_dagrun VALUES
    (7, 'sales', '2024-01-01 03:00Z', 'scheduler', 'succeeded', '{}'),
    (9, 'sales', '2024-01-02 10:00Z', 'alice', 'running', '{"DAY": "2024-01-02"}');
INSERT INTO workflows_taskrun VALUES
    (20, 'load.sql', 1, 'failed', '2024-01-01 03:00Z', '2024-01-01 03:00Z',
     '2024-01-01 03:01Z', 'worker-1', 7),
    (21, 'load.sql', 2, 'succeeded', '2024-01-01 03:01Z', '2024-01-01 03:01Z',
     '2024-01-01 03:02Z', 'worker-1', 7),
    (22, 'load.sql', 1, 'running', '2024-01-02 10:00Z', '2024-01-02 10:00Z', NULL,
     'worker-2', 9);
"""


def guide_sql() -> str:
    text = GUIDE.read_text()
    block = re.search(r"<!-- history-sql-start -->\n```sql\n(.*?)```", text, re.S)
    assert block is not None
    return block.group(1)


def test_the_guides_sql_imports_the_run_history(database_url: str) -> None:
    conn = psycopg2.connect(database_url)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(DJANGO_TABLES)
            cur.execute(guide_sql())
    finally:
        conn.close()
    runs = query(
        database_url,
        "SELECT id, dag_name, status, trigger, scheduled_for IS NOT NULL, creator, "
        "parameters, ended_at IS NOT NULL FROM dag_run ORDER BY id",
    )
    assert runs == [
        (7, "sales", "succeeded", "schedule", True, "scheduler", {}, True),
        (9, "sales", "cancelled", "manual", False, "alice", {"DAY": "2024-01-02"}, False),
    ]
    task_runs = query(
        database_url, "SELECT id, dag_run_id, attempt, status, error FROM task_run ORDER BY id"
    )
    assert task_runs == [
        (20, 7, 1, "failed", None),
        (21, 7, 2, "succeeded", None),
        (22, 9, 1, "failed", "unfinished when imported"),
    ]
    # New rows continue after the imported ids.
    new = query(
        database_url,
        "INSERT INTO dag_run (dag_name, status, trigger, created_at) "
        "VALUES ('sales', 'succeeded', 'manual', now()) RETURNING id",
    )
    assert new == [(10,)]


def test_trigger_dag_of_the_workflows_package_creates_a_run(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workflows import scheduler

    registry = write_project(tmp_path, {"sales": {"workflow.yaml": "description: sales\n"}})
    monkeypatch.setenv("DATABASE_URL", database_url)
    run = scheduler.trigger_dag(registry["sales"], parameters={"DAY": "2024-01-02"})
    rows = query(database_url, "SELECT dag_name, creator, parameters FROM dag_run")
    assert rows == [("sales", "python", {"DAY": "2024-01-02"})]
    assert run.id > 0
