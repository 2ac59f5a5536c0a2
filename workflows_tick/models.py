"""The database schema, as SQLAlchemy 2 typed models.

Alembic revisions in ``migrations/`` create it; a test checks both agree. Code
outside :mod:`workflows_tick.queries` never touches these classes directly.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from workflows_tick.states import RunStatus, TaskStatus, Trigger

__all__ = ["Base", "DagRun", "DagSchedule", "RunStatus", "TaskRun", "TaskStatus", "Trigger"]


NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _one_of(column: str, values: type[enum.StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


TZ = DateTime(timezone=True)


class DagSchedule(Base):
    """The schedule cursor of one DAG: when it fires next, for the expression it had."""

    __tablename__ = "dag_schedule"

    dag_name: Mapped[str] = mapped_column(Text, primary_key=True)
    schedule: Mapped[str] = mapped_column(Text)
    timezone: Mapped[str] = mapped_column(Text)
    next_fire_at: Mapped[datetime] = mapped_column(TZ)
    updated_at: Mapped[datetime] = mapped_column(TZ)


class DagRun(Base):
    __tablename__ = "dag_run"
    __table_args__ = (
        UniqueConstraint("dag_name", "scheduled_for"),
        CheckConstraint(_one_of("status", RunStatus), name="status"),
        CheckConstraint(_one_of("trigger", Trigger), name="trigger"),
        Index("ix_dag_run_running", "dag_name", "id", postgresql_where=text("status = 'running'")),
        Index("ix_dag_run_dag_name_id", "dag_name", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    dag_name: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)
    trigger: Mapped[str] = mapped_column(Text)
    scheduled_for: Mapped[datetime | None] = mapped_column(TZ)
    creator: Mapped[str | None] = mapped_column(Text)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = mapped_column(TZ)
    ended_at: Mapped[datetime | None] = mapped_column(TZ)
    message: Mapped[str | None] = mapped_column(Text)


class TaskRun(Base):
    __tablename__ = "task_run"
    __table_args__ = (
        UniqueConstraint("dag_run_id", "task_name", "attempt"),
        CheckConstraint(_one_of("status", TaskStatus), name="status"),
        CheckConstraint("attempt >= 1", name="attempt"),
        Index(
            "ix_task_run_waiting", "not_before", "id", postgresql_where=text("status = 'waiting'")
        ),
        Index("ix_task_run_running", "manager", postgresql_where=text("status = 'running'")),
        Index("ix_task_run_failed", "ended_at", "id", postgresql_where=text("status = 'failed'")),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    dag_run_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("dag_run.id", ondelete="CASCADE")
    )
    task_name: Mapped[str] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(Text)
    manager: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(TZ)
    not_before: Mapped[datetime] = mapped_column(TZ)
    started_at: Mapped[datetime | None] = mapped_column(TZ)
    ended_at: Mapped[datetime | None] = mapped_column(TZ)
    lease_expires_at: Mapped[datetime | None] = mapped_column(TZ)
    host: Mapped[str | None] = mapped_column(Text)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    output_tail: Mapped[str | None] = mapped_column(Text)
