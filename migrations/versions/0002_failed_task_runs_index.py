"""an index on failed task runs, newest first, for the failures page

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 10:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_task_run_failed",
        "task_run",
        ["ended_at", "id"],
        unique=False,
        postgresql_where=sa.text("status = 'failed'"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_task_run_failed", table_name="task_run", postgresql_where=sa.text("status = 'failed'")
    )
