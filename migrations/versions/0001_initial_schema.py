"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-25 12:52:27.114829
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dag_run",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("dag_name", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("trigger", sa.Text(), nullable=False),
        sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=True),
        sa.Column("creator", sa.Text(), nullable=True),
        sa.Column(
            "parameters",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('running', 'succeeded', 'failed', 'cancelled')",
            name=op.f("ck_dag_run_status"),
        ),
        sa.CheckConstraint("trigger IN ('schedule', 'manual')", name=op.f("ck_dag_run_trigger")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dag_run")),
        sa.UniqueConstraint(
            "dag_name", "scheduled_for", name=op.f("uq_dag_run_dag_name_scheduled_for")
        ),
    )
    op.create_index("ix_dag_run_dag_name_id", "dag_run", ["dag_name", "id"], unique=False)
    op.create_index(
        "ix_dag_run_running",
        "dag_run",
        ["dag_name", "id"],
        unique=False,
        postgresql_where=sa.text("status = 'running'"),
    )
    op.create_table(
        "dag_schedule",
        sa.Column("dag_name", sa.Text(), nullable=False),
        sa.Column("schedule", sa.Text(), nullable=False),
        sa.Column("timezone", sa.Text(), nullable=False),
        sa.Column("next_fire_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("dag_name", name=op.f("pk_dag_schedule")),
    )
    op.create_table(
        "task_run",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("dag_run_id", sa.BigInteger(), nullable=False),
        sa.Column("task_name", sa.Text(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("manager", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("host", sa.Text(), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("output_tail", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('waiting', 'running', 'succeeded', 'failed')",
            name=op.f("ck_task_run_status"),
        ),
        sa.CheckConstraint("attempt >= 1", name=op.f("ck_task_run_attempt")),
        sa.ForeignKeyConstraint(
            ["dag_run_id"],
            ["dag_run.id"],
            name=op.f("fk_task_run_dag_run_id_dag_run"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_run")),
        sa.UniqueConstraint(
            "dag_run_id",
            "task_name",
            "attempt",
            name=op.f("uq_task_run_dag_run_id_task_name_attempt"),
        ),
    )
    op.create_index(
        "ix_task_run_running",
        "task_run",
        ["manager"],
        unique=False,
        postgresql_where=sa.text("status = 'running'"),
    )
    op.create_index(
        "ix_task_run_waiting",
        "task_run",
        ["not_before", "id"],
        unique=False,
        postgresql_where=sa.text("status = 'waiting'"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_task_run_waiting", table_name="task_run", postgresql_where=sa.text("status = 'waiting'")
    )
    op.drop_index(
        "ix_task_run_running", table_name="task_run", postgresql_where=sa.text("status = 'running'")
    )
    op.drop_table("task_run")
    op.drop_table("dag_schedule")
    op.drop_index(
        "ix_dag_run_running", table_name="dag_run", postgresql_where=sa.text("status = 'running'")
    )
    op.drop_index("ix_dag_run_dag_name_id", table_name="dag_run")
    op.drop_table("dag_run")
