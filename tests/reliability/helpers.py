"""Helpers of the reliability tests: the real ``workflows`` command, a ledger, /proc."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psycopg2

LEDGER_TABLE = "CREATE TABLE ledger (task_run_id bigint, attempt int, pid int)"

LEDGER_TASK = '''"""
parameters: [DATABASE_URL, WORKFLOWS_TASK_RUN_ID, WORKFLOWS_ATTEMPT]
"""
import os
import time


def run(context):
    {body}
    with context["conn"].cursor() as cur:
        cur.execute(
            "INSERT INTO ledger (task_run_id, attempt, pid) VALUES (%s, %s, %s)",
            (context["WORKFLOWS_TASK_RUN_ID"], context["WORKFLOWS_ATTEMPT"], os.getpid()),
        )
'''

SHELL_LEDGER_TASK = """\
# parameters: [DATABASE_URL, WORKFLOWS_TASK_RUN_ID, WORKFLOWS_ATTEMPT]
if [ "$WORKFLOWS_ATTEMPT" = 1 ]; then sleep {sleep}; fi
psql -qX "$DATABASE_URL" -c "INSERT INTO ledger VALUES ($WORKFLOWS_TASK_RUN_ID, $WORKFLOWS_ATTEMPT, $$)"
"""


def workflows(
    *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workflows_tick", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_scheduler(config: str, env: dict[str, str], *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "workflows_tick", config, "schedule", "worker", *extra],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


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


def query(url: str, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def wait_for(check: Callable[[], bool], timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _stat(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, state, start time) of ``pid``, or None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), fields[0], int(fields[19])


def descendants(root: int) -> dict[int, int]:
    """Every live descendant of ``root``: pid -> start time (a reused pid differs)."""
    children: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (info := _stat(int(entry.name))) and info[1] != "Z":
            children.setdefault(info[0], []).append(int(entry.name))
            starts[int(entry.name)] = info[2]
    found: dict[int, int] = {}
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found[child] = starts[child]
                todo.append(child)
    return found


def still_alive(processes: dict[int, int]) -> list[int]:
    """Pids of ``processes`` (pid -> start time) still running; zombies count as gone."""
    return [
        pid
        for pid, start in processes.items()
        if (info := _stat(pid)) is not None and info[1] != "Z" and info[2] == start
    ]


def kill_all(processes: dict[int, int]) -> None:
    """SIGKILL whichever of ``processes`` still run (a test cleans up what it left)."""
    for pid in still_alive(processes):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
