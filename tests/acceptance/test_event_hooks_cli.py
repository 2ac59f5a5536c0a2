"""Event hooks under the real ``workflows schedule``: several schedulers, one killed."""

from __future__ import annotations

import collections
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import query, wait_for, workflows, write_project

HOOK = """
import os


def record(event, dag_run=None, task_run=None, **_):
    if dag_run is None:  # TASK_START / TASK_FINISH, from the task's own process
        return
    line = f"{os.getpid()} {event.name} {dag_run.id} {task_run.id if task_run else '-'}\\n"
    fd = os.open(os.environ["HOOK_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


DAGS.register_hook(record)
"""

HOOK_EVENTS = {
    "run_started": "DAG_RUN_START",
    "task_run_started": "TASK_RUN_START",
}


def _start(config: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "workflows_tick", config, "schedule", "worker"),
            *("--interval", "0.2", "--lease", "2", "--concurrency", "2"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _expected_hook_calls(database_url: str) -> set[tuple[str, str, str]]:
    calls = set()
    for kind, run, task_run in query(
        database_url, "SELECT kind, dag_run_id, task_run_id FROM event ORDER BY id"
    ):
        if kind in ("task_run_created", "task_run_retried"):
            continue
        name = HOOK_EVENTS.get(kind) or (
            "DAG_RUN_FINISH" if task_run is None else "TASK_RUN_FINISH"
        )
        calls.add((name, str(run), "-" if task_run is None else str(task_run)))
    return calls


@pytest.mark.slow
def test_events_are_written_once_and_delivered_despite_kill_9(
    tmp_path: Path, subprocess_env: dict[str, str], database_url: str
) -> None:
    dag = {
        "workflow.yaml": "description: x\n",
        "a.sh": "# description: a\ntrue\n",
        "b.sh": "# description: b\n# inputs: [a.sh]\nsleep 0.2\n",
    }
    write_project(tmp_path / "p", {f"d{i}": dag for i in range(3)})
    config = tmp_path / "p" / "config.py"
    config.write_text(config.read_text() + HOOK)
    log = tmp_path / "hooks.log"
    env = {**subprocess_env, "HOOK_LOG": str(log)}
    schedulers = [_start(str(config), env) for _ in range(3)]
    killed = schedulers[0]

    def finished() -> int:
        return query(database_url, "SELECT count(*) FROM dag_run WHERE status <> 'running'")[0][0]

    try:
        for i in range(6):
            assert workflows(str(config), "trigger", f"d{i % 3}", env=env).returncode == 0
        wait_for(lambda: finished() >= 2, timeout=60, what="two runs to finish")
        killed.kill()  # kill -9, in the middle of passes and deliveries
        killed.communicate(timeout=10)
        schedulers.append(_start(str(config), env))
        for i in range(6):
            assert workflows(str(config), "trigger", f"d{i % 3}", env=env).returncode == 0
        wait_for(lambda: finished() == 12, timeout=90, what="12 runs to finish")
        wait_for(
            lambda: (
                query(database_url, "SELECT count(*) FROM event WHERE delivered_at IS NULL")
                == [(0,)]
            ),
            timeout=60,
            what="every event to be delivered",
        )
    finally:
        for proc in schedulers[1:]:
            proc.send_signal(signal.SIGINT)
        for proc in schedulers[1:]:
            _, err = proc.communicate(timeout=30)
            assert proc.returncode == 0, err

    # Exactly one event row per state change: 2 per run, and per task run one for its
    # creation, one for its start (if it started) and one for its end.
    runs = query(database_url, "SELECT count(*) FROM dag_run")[0][0]
    task_runs, started = query(database_url, "SELECT count(*), count(started_at) FROM task_run")[0]
    assert query(database_url, "SELECT count(*) FROM event")[0][0] == (
        2 * runs + 2 * task_runs + started
    )
    assert (
        query(
            database_url,
            "SELECT task_run_id, kind FROM event WHERE task_run_id IS NOT NULL "
            "GROUP BY 1, 2 HAVING count(*) > 1",
        )
        == []
    )
    # Each delivered to the hook; a second call only for events the killed
    # scheduler was delivering when it died.
    lines = [line.split(" ", 1) for line in log.read_text().splitlines()]
    calls = collections.defaultdict(list)
    for pid, call in lines:
        calls[tuple(call.split())].append(int(pid))
    assert set(calls) == _expected_hook_calls(database_url)
    for pids in calls.values():
        assert len(pids) == 1 or (len(pids) == 2 and pids[0] == killed.pid)
