"""event outbox, Cronitor sync state, an index for metrics

Every state change of a run or task run gets one ``event`` row, written by
statement-level triggers in the transaction that makes the change: whoever makes
it (a scheduler's pass, ``trigger``, any future command), the row exists if and
only if the change committed.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 10:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Kinds: run_started, run_<status>; task_run_created, task_run_retried (attempt > 1),
# task_run_started, task_run_<status>.
DAG_RUN_EVENTS = """
CREATE FUNCTION workflows_dag_run_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO event (kind, dag_run_id, dag_name, status)
        SELECT 'run_started', n.id, n.dag_name, n.status FROM new_rows n ORDER BY n.id;
    ELSE
        INSERT INTO event (kind, dag_run_id, dag_name, status)
        SELECT 'run_' || n.status, n.id, n.dag_name, n.status
        FROM new_rows n JOIN old_rows o ON o.id = n.id
        WHERE n.status IS DISTINCT FROM o.status ORDER BY n.id;
    END IF;
    RETURN NULL;
END
$$
"""

TASK_RUN_EVENTS = """
CREATE FUNCTION workflows_task_run_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO event (kind, dag_run_id, task_run_id, dag_name, task_name, attempt, status)
        SELECT CASE WHEN n.attempt > 1 THEN 'task_run_retried' ELSE 'task_run_created' END,
               n.dag_run_id, n.id, r.dag_name, n.task_name, n.attempt, n.status
        FROM new_rows n JOIN dag_run r ON r.id = n.dag_run_id ORDER BY n.id;
    ELSE
        INSERT INTO event (kind, dag_run_id, task_run_id, dag_name, task_name, attempt, status)
        SELECT CASE WHEN n.status = 'running' THEN 'task_run_started'
                    ELSE 'task_run_' || n.status END,
               n.dag_run_id, n.id, r.dag_name, n.task_name, n.attempt, n.status
        FROM new_rows n JOIN old_rows o ON o.id = n.id JOIN dag_run r ON r.id = n.dag_run_id
        WHERE n.status IS DISTINCT FROM o.status ORDER BY n.id;
    END IF;
    RETURN NULL;
END
$$
"""

TRIGGERS = [
    (table, op_name, f"{table}_{op_name.lower()}_events")
    for table in ("dag_run", "task_run")
    for op_name in ("INSERT", "UPDATE")
]


def upgrade() -> None:
    op.create_table(
        "event",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("dag_run_id", sa.BigInteger(), nullable=False),
        sa.Column("task_run_id", sa.BigInteger(), nullable=True),
        sa.Column("dag_name", sa.Text(), nullable=False),
        sa.Column("task_name", sa.Text(), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "done",
            postgresql.ARRAY(sa.Text()),
            server_default=sa.text("'{}'::text[]"),
            nullable=False,
        ),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("given_up_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event")),
    )
    op.create_index("ix_event_dag_run_id", "event", ["dag_run_id"], unique=False)
    op.create_index(
        "ix_event_pending",
        "event",
        ["next_attempt_at", "id"],
        unique=False,
        postgresql_where=sa.text("delivered_at IS NULL AND given_up_at IS NULL"),
    )
    op.create_index(
        "ix_event_given_up",
        "event",
        ["id"],
        unique=False,
        postgresql_where=sa.text("given_up_at IS NOT NULL"),
    )
    # Metrics: runs by DAG and status from an index-only scan, the latest run of a
    # DAG in a status from one probe.
    op.create_index(
        "ix_dag_run_dag_name_status_id", "dag_run", ["dag_name", "status", "id"], unique=False
    )
    op.create_table(
        "cronitor_monitor",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("dag_name", sa.Text(), nullable=False),
        sa.Column("spec", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_cronitor_monitor")),
    )
    op.execute(DAG_RUN_EVENTS)
    op.execute(TASK_RUN_EVENTS)
    for table, op_name, name in TRIGGERS:
        tables = "NEW TABLE AS new_rows"
        if op_name == "UPDATE":
            tables = "OLD TABLE AS old_rows " + tables
        op.execute(
            f"CREATE TRIGGER {name} AFTER {op_name} ON {table} REFERENCING {tables} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION workflows_{table}_events()"
        )


def downgrade() -> None:
    for table, _, name in TRIGGERS:
        op.execute(f"DROP TRIGGER {name} ON {table}")
    op.execute("DROP FUNCTION workflows_task_run_events()")
    op.execute("DROP FUNCTION workflows_dag_run_events()")
    op.drop_table("cronitor_monitor")
    op.drop_index("ix_dag_run_dag_name_status_id", table_name="dag_run")
    op.drop_index(
        "ix_event_given_up",
        table_name="event",
        postgresql_where=sa.text("given_up_at IS NOT NULL"),
    )
    op.drop_index(
        "ix_event_pending",
        table_name="event",
        postgresql_where=sa.text("delivered_at IS NULL AND given_up_at IS NULL"),
    )
    op.drop_index("ix_event_dag_run_id", table_name="event")
    op.drop_table("event")
