"""Helpers shared by the test suites. Those the benchmarks need too (DAG projects on
disk, the real command and its processes) and the fakes live in :mod:`workflows_tick.testing`."""

from __future__ import annotations

from workflows_tick.testing import (
    LEDGER_TABLE,
    LEDGER_TASK,
    descendants,
    processes_matching,
    query,
    still_alive,
    wait_for,
    workflows,
    write_project,
)

__all__ = [
    "LEDGER_TABLE",
    "LEDGER_TASK",
    "descendants",
    "processes_matching",
    "query",
    "still_alive",
    "wait_for",
    "workflows",
    "write_project",
]
