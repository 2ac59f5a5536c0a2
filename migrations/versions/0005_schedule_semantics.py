"""cross-DAG waits, skipped runs, DST policy and DAG fingerprints

- ``task_run.waiting_for``: the ``dag:task`` inputs on other DAGs a waiting task run
  still waits for (NULL: none); a partial index finds those waiting ones cheaply;
- ``dag_run`` status ``skipped`` (a scheduled fire passed by the ``overlap: skip``
  policy) and ``dag_run.fingerprint`` (the DAG copy that created the run);
- ``dag_schedule.dst_gap`` / ``dst_repeat`` (the DST policy the cursor was computed
  with; NULL: the default rule) and ``dag_schedule.fingerprint``;
- ``scheduler_heartbeat.fingerprints``: each loaded DAG's fingerprint, by name.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 13:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# --- overlap: the events of skipped runs ------------------------------------------------
# A run inserted ``skipped`` (a fire passed by ``overlap: skip``) never started: its
# event is ``run_skipped``, not ``run_started``, so hooks and Cronitor are not told
# that a run began. The function of 0003 otherwise unchanged.
DAG_RUN_EVENTS_SKIPPED = """
CREATE OR REPLACE FUNCTION workflows_dag_run_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO event (kind, dag_run_id, dag_name, status)
        SELECT CASE WHEN n.status = 'skipped' THEN 'run_skipped' ELSE 'run_started' END,
               n.id, n.dag_name, n.status FROM new_rows n ORDER BY n.id;
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
DAG_RUN_EVENTS_0003 = """
CREATE OR REPLACE FUNCTION workflows_dag_run_events() RETURNS trigger LANGUAGE plpgsql AS $$
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
# --- end overlap: the events of skipped runs --------------------------------------------


def upgrade() -> None:
    # --- cross-DAG inputs ------------------------------------------------------------
    op.add_column("task_run", sa.Column("waiting_for", postgresql.ARRAY(sa.Text()), nullable=True))
    op.create_index(
        "ix_task_run_waiting_for",
        "task_run",
        ["id"],
        unique=False,
        postgresql_where=sa.text("status = 'waiting' AND waiting_for IS NOT NULL"),
    )
    # --- overlap: skipped runs -------------------------------------------------------
    op.drop_constraint(op.f("ck_dag_run_status"), "dag_run", type_="check")
    op.create_check_constraint(
        op.f("ck_dag_run_status"),
        "dag_run",
        "status IN ('running', 'succeeded', 'failed', 'cancelled', 'skipped')",
    )
    op.execute(DAG_RUN_EVENTS_SKIPPED)  # overlap: the events of skipped runs
    # --- DST policy ------------------------------------------------------------------
    op.add_column("dag_schedule", sa.Column("dst_gap", sa.Text(), nullable=True))
    op.add_column("dag_schedule", sa.Column("dst_repeat", sa.Text(), nullable=True))
    # --- rolling deploys: fingerprints -----------------------------------------------
    op.add_column("dag_run", sa.Column("fingerprint", sa.Text(), nullable=True))
    op.add_column("dag_schedule", sa.Column("fingerprint", sa.Text(), nullable=True))
    op.add_column(
        "scheduler_heartbeat",
        sa.Column(
            "fingerprints",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
    )


def downgrade() -> None:
    op.drop_column("scheduler_heartbeat", "fingerprints")
    op.drop_column("dag_schedule", "fingerprint")
    op.drop_column("dag_run", "fingerprint")
    op.drop_column("dag_schedule", "dst_repeat")
    op.drop_column("dag_schedule", "dst_gap")
    # overlap: the events of skipped runs
    op.execute(DAG_RUN_EVENTS_0003)
    op.execute("DELETE FROM event WHERE kind = 'run_skipped'")
    op.execute("DELETE FROM dag_run WHERE status = 'skipped'")
    op.drop_constraint(op.f("ck_dag_run_status"), "dag_run", type_="check")
    op.create_check_constraint(
        op.f("ck_dag_run_status"),
        "dag_run",
        "status IN ('running', 'succeeded', 'failed', 'cancelled')",
    )
    op.drop_index("ix_task_run_waiting_for", table_name="task_run")
    op.drop_column("task_run", "waiting_for")
