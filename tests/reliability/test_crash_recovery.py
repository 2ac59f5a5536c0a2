"""A worker scheduler killed mid-task: the attempt dies with it, is failed within its lease
plus one pass, and is retried; nothing of it keeps running (a shell task's bash included,
which runs in its own process group).

The long version (20 kills, timings) is ``benchmarks/reliability/crashes.py``.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
from pathlib import Path

import pytest

from tests.reliability.helpers import (
    LEDGER_TABLE,
    LEDGER_TASK,
    SHELL_LEDGER_TASK,
    descendants,
    kill_all,
    processes_matching,
    query,
    start_scheduler,
    still_alive,
    stop,
    wait_for,
    workflows,
)
from tests.support import write_project

LEASE = 2.0
INTERVAL = 0.2
SLEEP = 4  # the first attempt's; the kill comes well before it ends


def _project(tmp_path: Path) -> str:
    body = f"time.sleep({SLEEP} if context['WORKFLOWS_ATTEMPT'] == '1' else 0)"
    write_project(
        tmp_path,
        {
            "crash_python": {
                "workflow.yaml": "description: x\n",
                "work.py": LEDGER_TASK.format(body=body, extra=""),
            },
            "crash_shell": {
                "workflow.yaml": "description: x\n",
                "work.sh": SHELL_LEDGER_TASK.format(sleep=SLEEP),
            },
        },
    )
    return str(tmp_path / "config.py")


def _kill_mid_task(
    config: str, env: dict[str, str], url: str, dag: str, kills: int
) -> tuple[list[int], list[float], list[subprocess.Popen[str]], dict[int, int]]:
    """Kill -9 the scheduler ``kills`` times while a first attempt runs.

    Returns the task runs killed, how far past its lease at the kill each row ended,
    every scheduler started, and the processes of the killed trees still alive 10 s
    after their kill.
    """
    extra = ("--lease", str(LEASE), "--interval", str(INTERVAL))
    schedulers = [start_scheduler(config, env, *extra)]
    killed: list[int] = []
    past_lease: list[float] = []
    survivors: dict[int, int] = {}
    for _ in range(kills):
        run_id = int(workflows(config, "trigger", dag, env=env).stdout)
        first = (
            "SELECT id, lease_expires_at FROM task_run WHERE dag_run_id = %s AND attempt = 1 "
            "AND status = 'running'"
        )
        wait_for(
            lambda r=run_id, q=first: bool(query(url, q, (r,))), what="the first attempt to run"
        )
        marker = f"sleep {SLEEP}" if dag == "crash_shell" else f"run {dag} -o work.py"
        wait_for(
            lambda pid=schedulers[-1].pid, text=marker: bool(
                set(processes_matching(text)) & set(descendants(pid))
            ),
            what="the attempt's process to run under the scheduler",
        )
        tree = descendants(schedulers[-1].pid)
        assert tree, "the attempt's process is not a child of the scheduler"
        task_run_id, lease_at_kill = query(url, first, (run_id,))[0]
        schedulers[-1].kill()
        schedulers[-1].communicate(timeout=10)
        schedulers.append(start_scheduler(config, env, *extra))
        with contextlib.suppress(TimeoutError):
            wait_for(lambda t=tree: not still_alive(t), timeout=10, what="the attempt to die")
        survivors.update({pid: tree[pid] for pid in still_alive(tree)})
        wait_for(
            lambda r=run_id: (
                query(url, "SELECT status FROM dag_run WHERE id = %s", (r,)) != [("running",)]
            ),
            what="the run to end",
        )
        killed.append(task_run_id)
        past_lease.append(
            query(
                url,
                "SELECT extract(epoch FROM ended_at - %s) FROM task_run WHERE id = %s",
                (lease_at_kill, task_run_id),
            )[0][0]
        )
    return killed, [float(p) for p in past_lease], schedulers, survivors


def _check(url: str, killed: list[int], past_lease: list[float], dag: str) -> None:
    rows = query(
        url,
        "SELECT t.dag_run_id, t.attempt, t.status, t.error FROM task_run t "
        "JOIN dag_run r ON r.id = t.dag_run_id WHERE r.dag_name = %s ORDER BY 1, 2",
        (dag,),
    )
    assert [(a, s) for _, a, s, _ in rows] == [(1, "failed"), (2, "succeeded")] * len(killed)
    assert all(e.startswith("lease expired") for _, a, _, e in rows if a == 1)
    assert query(url, "SELECT DISTINCT status FROM dag_run") == [("succeeded",)]
    # Failed once its lease had expired, never before (how soon after is measured by
    # benchmarks/reliability/crashes.py).
    assert min(past_lease) >= 0, past_lease


@pytest.mark.slow
def test_python_attempt_dies_with_its_killed_scheduler_and_is_retried(
    tmp_path: Path, subprocess_env: dict[str, str], database_url: str
) -> None:
    query(database_url, LEDGER_TABLE)
    config = _project(tmp_path)
    killed, past_lease, schedulers, survivors = [], [], [], {}
    try:
        killed, past_lease, schedulers, survivors = _kill_mid_task(
            config, subprocess_env, database_url, "crash_python", kills=2
        )
    finally:
        stop(schedulers)
        kill_all(survivors)
    assert survivors == {}
    _check(database_url, killed, past_lease, "crash_python")
    # The killed attempts never reached the ledger; each retry wrote exactly one line.
    assert sorted(a for (a,) in query(database_url, "SELECT attempt FROM ledger")) == [2, 2]


@pytest.mark.slow
def test_shell_attempt_dies_with_its_killed_scheduler(
    tmp_path: Path, subprocess_env: dict[str, str], database_url: str
) -> None:
    query(database_url, LEDGER_TABLE)
    config = _project(tmp_path)
    killed, past_lease, schedulers, survivors = [], [], [], {}
    try:
        killed, past_lease, schedulers, survivors = _kill_mid_task(
            config, subprocess_env, database_url, "crash_shell", kills=1
        )
        _check(database_url, killed, past_lease, "crash_shell")
        # Every process of the killed attempt is gone (survivors is empty, checked
        # below), so none of them can write to the ledger later.
        ledger = sorted(a for (a,) in query(database_url, "SELECT attempt FROM ledger"))
    finally:
        stop(schedulers)
        kill_all(survivors)
    assert survivors == {}, "processes of the killed attempt kept running"
    assert ledger == [2], "the killed attempt completed its work after it was retried"


def test_sigterm_stops_a_running_shell_task_for_good(
    tmp_path: Path, subprocess_env: dict[str, str], database_url: str
) -> None:
    write_project(tmp_path, {"d": {"workflow.yaml": "description: x\n", "slow.sh": "sleep 20\n"}})
    config = str(tmp_path / "config.py")
    workflows(config, "trigger", "d", env=subprocess_env)
    proc = start_scheduler(config, subprocess_env, "--interval", str(INTERVAL))
    tree: dict[int, int] = {}
    try:
        wait_for(
            lambda: query(database_url, "SELECT status FROM task_run") == [("running",)],
            what="the task to start",
        )
        wait_for(lambda: len(descendants(proc.pid)) >= 3, what="runner, bash and sleep")
        tree = descendants(proc.pid)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert query(database_url, "SELECT status, error FROM task_run") == [
            ("failed", "stopped by scheduler shutdown (SIGTERM)")
        ]
        with contextlib.suppress(TimeoutError):
            wait_for(lambda: not still_alive(tree), timeout=10, what="the task to die")
        left = still_alive(tree)
    finally:
        stop([proc])
        kill_all(tree)
    assert left == [], "the task recorded as stopped is still running"
