"""Helpers of the reliability tests: the real ``workflows`` command, a ledger, /proc."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence

from tests.support import (
    LEDGER_TABLE,
    LEDGER_TASK,
    descendants,
    processes_matching,
    query,
    start_scheduler,
    still_alive,
    wait_for,
    workflows,
)

__all__ = [
    "LEDGER_TABLE",
    "LEDGER_TASK",
    "SHELL_LEDGER_TASK",
    "descendants",
    "kill_all",
    "processes_matching",
    "query",
    "start_scheduler",
    "still_alive",
    "stop",
    "wait_for",
    "workflows",
]

SHELL_LEDGER_TASK = """\
# parameters: [DATABASE_URL, WORKFLOWS_TASK_RUN_ID, WORKFLOWS_ATTEMPT]
if [ "$WORKFLOWS_ATTEMPT" = 1 ]; then sleep {sleep}; fi
psql -qX "$DATABASE_URL" -c "INSERT INTO ledger VALUES ($WORKFLOWS_TASK_RUN_ID, $WORKFLOWS_ATTEMPT, $$)"
"""


def stop(processes: Sequence[subprocess.Popen[str]]) -> None:
    """SIGTERM what is still running, SIGKILL it after 20 s; collect every exit."""
    for proc in processes:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
    for proc in processes:
        try:
            proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def kill_all(processes: dict[int, int]) -> None:
    """SIGKILL whichever of ``processes`` still run (a test cleans up what it left)."""
    for pid in still_alive(processes):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
