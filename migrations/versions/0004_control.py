"""cancelled task runs, rerun history, backfill runs, paused DAGs, scheduler heartbeats

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 10:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_constraint(op.f("ck_task_run_status"), "task_run", type_="check")
    op.create_check_constraint(
        op.f("ck_task_run_status"),
        "task_run",
        "status IN ('waiting', 'running', 'succeeded', 'failed', 'cancelled')",
    )
    op.add_column(
        "task_run",
        sa.Column("superseded", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.drop_constraint(op.f("ck_dag_run_trigger"), "dag_run", type_="check")
    op.create_check_constraint(
        op.f("ck_dag_run_trigger"), "dag_run", "trigger IN ('schedule', 'manual', 'backfill')"
    )
    op.create_table(
        "dag_state",
        sa.Column("dag_name", sa.Text(), nullable=False),
        sa.Column("paused", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("paused_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("paused_by", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("dag_name", name=op.f("pk_dag_state")),
    )
    op.create_table(
        "scheduler_heartbeat",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("host", sa.Text(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("manager", sa.Text(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_pass_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_pass_seconds", sa.Double(), nullable=False),
        sa.Column(
            "dags",
            postgresql.ARRAY(sa.Text()),
            server_default=sa.text("'{}'::text[]"),
            nullable=False,
        ),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scheduler_heartbeat")),
    )


def downgrade() -> None:
    op.drop_table("scheduler_heartbeat")
    op.drop_table("dag_state")
    op.drop_constraint(op.f("ck_dag_run_trigger"), "dag_run", type_="check")
    op.create_check_constraint(
        op.f("ck_dag_run_trigger"), "dag_run", "trigger IN ('schedule', 'manual')"
    )
    op.drop_column("task_run", "superseded")
    op.drop_constraint(op.f("ck_task_run_status"), "task_run", type_="check")
    op.create_check_constraint(
        op.f("ck_task_run_status"),
        "task_run",
        "status IN ('waiting', 'running', 'succeeded', 'failed')",
    )
