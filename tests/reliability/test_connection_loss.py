"""The database connection lost in the middle of a pass: nothing is forgotten or run twice.

The scheduler's connections are terminated (``pg_terminate_backend``, as a server
restart or a failover does) at the worst moment of a pass: right after the manager
has reported a finished attempt and before the pass commits. The pass is retried
by the scheduler's reconnect logic (:func:`workflows_tick.loop._with_reconnect`);
the outcome must still be recorded, and the task must not be started again.
The whole-server version is ``benchmarks/reliability/db_outage.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine

from tests.reliability.helpers import query
from tests.support import write_project
from workflows_tick.loop import _with_reconnect
from workflows_tick.managers.base import PollResult, RunningTaskRun
from workflows_tick.scheduler import trigger_dag
from workflows_tick.testing import FakeClock, InstantManager
from workflows_tick.tick import Ticker

LEASE = 60.0


class ConnectionCuttingManager(InstantManager):
    """Reports every attempt finished, then cuts the scheduler's connections once."""

    def __init__(self, database_url: str) -> None:
        super().__init__()
        self.database_url = database_url
        self.cut = False

    def poll(self, running: Sequence[RunningTaskRun]) -> PollResult:
        result = super().poll(running)
        if result.finished and not self.cut:
            self.cut = True
            query(
                self.database_url,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()",
            )
        return result


def test_an_outcome_survives_a_connection_lost_before_it_is_committed(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    registry = write_project(tmp_path, {"d": {"workflow.yaml": "description: x\n", "a.yaml": ""}})
    clock = FakeClock(datetime(2024, 1, 1, 12, tzinfo=UTC))
    manager = ConnectionCuttingManager(database_url)
    ticker = Ticker(registry, manager, engine, "config.py", clock=clock, lease_seconds=LEASE)
    trigger_dag("d", creator="test", engine=engine, clock=clock)
    for _ in range(3):  # start the attempt; the next pass loses its connection
        _with_reconnect(ticker.run_pass)
        clock.advance(1)
    assert manager.cut
    clock.advance(LEASE + 1)  # long enough for any lease to run out
    for _ in range(5):
        _with_reconnect(ticker.run_pass)
        clock.advance(1)
    assert query(database_url, "SELECT attempt, status FROM task_run") == [(1, "succeeded")]
    assert manager.ran() == [("d", "a.yaml", 1)]
    assert query(database_url, "SELECT status FROM dag_run") == [("succeeded",)]
