"""The control commands (cancel, ...) of the real ``workflows`` command, next to a real
scheduler, against a real PostgreSQL."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import query, still_alive, wait_for, workflows, write_project


@pytest.fixture
def slow_project(tmp_path: Path) -> str:
    pidfile = tmp_path / "grandchild.pid"
    write_project(
        tmp_path,
        {
            "slow": {
                "workflow.yaml": "description: x\nretries: 2\n",
                # Ignores SIGTERM, like its background child: only SIGKILL to the group ends them.
                "wait.sh": f"trap '' TERM\nsleep 300 &\necho $! > {pidfile}\nwait\nwait\n",
                "after.yaml": "type: no_op\ninputs: [wait.sh]\n",
            }
        },
    )
    return str(tmp_path / "config.py")


@pytest.fixture
def scheduler(slow_project: str, subprocess_env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    env = {**subprocess_env, "WORKFLOWS_INTERVAL": "0.2"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "workflows_tick", slow_project, "schedule", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    yield proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)


def test_cancel_stops_the_running_attempt_and_records_it_cancelled(
    slow_project: str,
    scheduler: subprocess.Popen[str],
    subprocess_env: dict[str, str],
    database_url: str,
    tmp_path: Path,
) -> None:
    trig = workflows(slow_project, "trigger", "slow", env=subprocess_env)
    run_id = int(trig.stdout)
    pidfile = tmp_path / "grandchild.pid"
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() != "", what="the task")
    grandchild = int(pidfile.read_text())
    start = Path(f"/proc/{grandchild}/stat").read_text().rsplit(")", 1)[1].split()[19]

    done = workflows(
        slow_project, "cancel", str(run_id), "--reason", "bad input", env=subprocess_env
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        f"run {run_id} cancelled (0 waiting task run(s) cancelled, "
        "1 running attempt(s) to be stopped)"
    )
    wait_for(
        lambda: query(database_url, "SELECT status FROM task_run") == [("cancelled",)],
        what="the attempt recorded cancelled",
    )
    assert still_alive({grandchild: int(start)}) == []
    assert query(database_url, "SELECT status, message FROM dag_run") == [
        ("cancelled", "cancelled by cli: bad input")
    ]
    assert query(database_url, "SELECT count(*) FROM task_run") == [(1,)]  # never retried

    again = workflows(slow_project, "cancel", str(run_id), env=subprocess_env)
    assert again.returncode == 1
    assert (
        again.stderr
        == f"workflows: run {run_id} has already ended (cancelled); nothing to cancel\n"
    )


def test_cancel_of_an_unknown_run_is_one_line_and_exit_2(
    slow_project: str, subprocess_env: dict[str, str]
) -> None:
    unknown = workflows(slow_project, "cancel", "4242", env=subprocess_env)
    assert (unknown.returncode, unknown.stderr) == (2, "workflows: no run 4242\n")
    bad = workflows(slow_project, "cancel", "abc", env=subprocess_env)
    assert bad.returncode == 2 and "'abc' is not a valid integer" in bad.stderr
