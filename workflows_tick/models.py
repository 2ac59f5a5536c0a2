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
    Boolean,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from workflows_tick.states import RunStatus, TaskStatus, Trigger

__all__ = [
    "Base",
    "CronitorMonitor",
    "DagRun",
    "DagSchedule",
    "DagState",
    "Event",
    "RunStatus",
    "SchedulerHeartbeat",
    "TaskRun",
    "TaskStatus",
    "Trigger",
]


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
    dst_gap: Mapped[str | None] = mapped_column(Text)
    dst_repeat: Mapped[str | None] = mapped_column(Text)
    """The DST policy ``next_fire_at`` was computed with (NULL: the default rule)."""
    fingerprint: Mapped[str | None] = mapped_column(Text)
    """The fingerprint of the DAG copy that last set this cursor."""


class DagRun(Base):
    __tablename__ = "dag_run"
    __table_args__ = (
        UniqueConstraint("dag_name", "scheduled_for"),
        CheckConstraint(_one_of("status", RunStatus), name="status"),
        CheckConstraint(_one_of("trigger", Trigger), name="trigger"),
        Index("ix_dag_run_running", "dag_name", "id", postgresql_where=text("status = 'running'")),
        Index("ix_dag_run_dag_name_id", "dag_name", "id"),
        Index("ix_dag_run_dag_name_status_id", "dag_name", "status", "id"),
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
    fingerprint: Mapped[str | None] = mapped_column(Text)
    """The fingerprint of the DAG copy that created (or adopted) the run; NULL: any."""


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
        Index(
            "ix_task_run_waiting_for",
            "id",
            postgresql_where=text("status = 'waiting' AND waiting_for IS NOT NULL"),
        ),
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
    superseded: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    """A rerun replaced this attempt: it stays in the history, the run's plan ignores it."""
    waiting_for: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    """The ``dag:task`` inputs on other DAGs this task run still waits for (NULL: none)."""


class DagState(Base):
    """Per-DAG switches set by operators (``pause``), shared by every scheduler."""

    __tablename__ = "dag_state"

    dag_name: Mapped[str] = mapped_column(Text, primary_key=True)
    paused: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    paused_at: Mapped[datetime | None] = mapped_column(TZ)
    paused_by: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(TZ)


class SchedulerHeartbeat(Base):
    """One row per scheduler process, updated by each of its passes."""

    __tablename__ = "scheduler_heartbeat"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    host: Mapped[str] = mapped_column(Text)
    pid: Mapped[int] = mapped_column(Integer)
    manager: Mapped[str] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(TZ)
    last_pass_at: Mapped[datetime] = mapped_column(TZ)
    last_pass_seconds: Mapped[float] = mapped_column(Double)
    dags: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'::text[]"))
    """The names of the DAGs this scheduler has loaded (and so runs)."""
    stopped_at: Mapped[datetime | None] = mapped_column(TZ)
    """Set when the process exits cleanly; NULL while it runs (or after a crash)."""
    fingerprints: Mapped[dict[str, str]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    """The fingerprint of each loaded DAG, by name."""


class Event(Base):
    """One committed state change of a run or task run: the outbox of hooks and integrations.

    Rows are written by triggers on ``dag_run`` and ``task_run`` (see the migration), in
    the transaction that changes the state, so each change has exactly one row whoever
    made it. Schedulers deliver them after commit and record the delivery here.
    """

    __tablename__ = "event"
    __table_args__ = (
        Index(
            "ix_event_pending",
            "next_attempt_at",
            "id",
            postgresql_where=text("delivered_at IS NULL AND given_up_at IS NULL"),
        ),
        Index("ix_event_dag_run_id", "dag_run_id"),
        Index("ix_event_given_up", "id", postgresql_where=text("given_up_at IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(TZ, server_default=text("now()"))
    kind: Mapped[str] = mapped_column(Text)
    dag_run_id: Mapped[int] = mapped_column(BigInteger)
    """No foreign key: writing an event must take no lock on its run (a pass holds
    runs locked while others record their task runs' outcomes)."""
    task_run_id: Mapped[int | None] = mapped_column(BigInteger)
    dag_name: Mapped[str] = mapped_column(Text)
    task_name: Mapped[str | None] = mapped_column(Text)
    attempt: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    """Delivery attempts so far."""
    next_attempt_at: Mapped[datetime] = mapped_column(TZ, server_default=text("now()"))
    done: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'::text[]"))
    """The sinks (hooks, integrations) that already took this event."""
    delivered_at: Mapped[datetime | None] = mapped_column(TZ)
    given_up_at: Mapped[datetime | None] = mapped_column(TZ)
    last_error: Mapped[str | None] = mapped_column(Text)


class CronitorMonitor(Base):
    """A Cronitor monitor as last synced, so that only changes are sent."""

    __tablename__ = "cronitor_monitor"

    key: Mapped[str] = mapped_column(Text, primary_key=True)
    dag_name: Mapped[str] = mapped_column(Text)
    spec: Mapped[dict[str, Any]] = mapped_column(JSONB)
    synced_at: Mapped[datetime] = mapped_column(TZ)
