"""The control commands (cancel, ...) of the real ``workflows`` command, next to a real
scheduler, against a real PostgreSQL."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
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


@pytest.fixture
def hourly_project(tmp_path: Path) -> str:
    flag = tmp_path / "ok"
    write_project(
        tmp_path,
        {
            "hourly": {
                "workflow.yaml": "description: x\nschedule: '0 * * * *'\ntimezone: Europe/Paris\n",
                "a.yaml": "type: no_op\n",
            },
            "flaky": {
                "workflow.yaml": "description: x\nretries: 0\n",
                "first.yaml": "type: no_op\n",
                "check.sh": f"test -f {flag}\n",
                "last.yaml": "type: no_op\ninputs: [check.sh]\n",
            },
        },
    )
    return str(tmp_path / "config.py")


def test_pause_unpause_list_runs_and_status(
    hourly_project: str, subprocess_env: dict[str, str]
) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return workflows(hourly_project, *args, env=subprocess_env)

    assert run("pause", "hourly").stdout == "DAG hourly paused\n"
    assert run("pause", "hourly").stdout == "DAG hourly was already paused\n"
    listed = run("list").stdout.splitlines()
    assert [line for line in listed if line.endswith(", PAUSED")] == [
        line for line in listed if line.startswith("hourly:")
    ]
    assert run("runs").stdout.startswith("paused: hourly\n")
    shown = run("status")
    assert shown.returncode == 0, shown.stderr
    assert "paused DAGs: hourly" in shown.stdout
    assert "runs running: 0; task runs running: 0, waiting: 0" in shown.stdout
    assert run("unpause", "hourly").stdout == "DAG hourly unpaused\n"
    assert run("unpause", "hourly").stdout == "DAG hourly was not paused\n"
    unknown = run("pause", "nope")
    assert unknown.returncode == 2 and unknown.stderr.startswith("workflows: unknown DAG 'nope'")


def test_backfill_and_prune_from_the_command_line(
    hourly_project: str, subprocess_env: dict[str, str], database_url: str
) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return workflows(hourly_project, *args, env=subprocess_env)

    dry = run(
        "backfill",
        "hourly",
        "--start",
        "2024-03-01T10:00",
        "--end",
        "2024-03-01T11:30",
        "--dry-run",
    )
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout == (
        "2024-03-01T10:00:00+01:00  new run\n"
        "2024-03-01T11:00:00+01:00  new run\n"
        "dry run: 2 to create, 0 to skip\n"
    )
    assert query(database_url, "SELECT count(*) FROM dag_run") == [(0,)]
    made = run("backfill", "hourly", "--start", "2024-03-01T10:00", "--end", "2024-03-01T11:30")
    assert made.stdout == "hourly: 2 run(s) created, 0 skipped\n", made.stderr
    again = run(
        "backfill", "hourly", "--start", "2024-03-01T09:00+01:00", "--end", "2024-03-01T11:00"
    )
    assert again.stdout == "hourly: 1 run(s) created, 2 skipped\n", again.stderr
    assert query(
        database_url, "SELECT scheduled_for AT TIME ZONE 'UTC', trigger FROM dag_run ORDER BY id"
    ) == [
        (datetime(2024, 3, 1, 9), "backfill"),
        (datetime(2024, 3, 1, 10), "backfill"),
        (datetime(2024, 3, 1, 8), "backfill"),
    ]
    for args, message in [
        (("--start", "soon", "--end", "2024-03-01"), "--start 'soon' is not an ISO time"),
        (("--start", "2024-03-02", "--end", "2024-03-01"), "is before --start"),
        (("--start", "2024-03-01T10:01", "--end", "2024-03-01T10:59"), "has no fire time"),
    ]:
        bad = run("backfill", "hourly", *args)
        assert bad.returncode == 2 and message in bad.stderr and bad.stderr.count("\n") == 1
    adhoc = run("backfill", "flaky", "--start", "2024-03-01", "--end", "2024-03-02")
    assert adhoc.returncode == 2 and "DAG flaky has no schedule" in adhoc.stderr

    query(
        database_url,
        "UPDATE dag_run SET status = 'succeeded', ended_at = now() - interval '100 days'",
    )
    pruned = run("prune", "--older-than", "90d")
    assert pruned.returncode == 0, pruned.stderr
    assert pruned.stdout.splitlines()[0] == "hourly: removed 2 run(s), 0 task run(s)"
    assert query(database_url, "SELECT count(*) FROM dag_run") == [(1,)]  # the most recent stays
    bad = run("prune", "--older-than", "90 days")
    assert bad.returncode == 2 and "not a positive duration" in bad.stderr


def test_trigger_wait_rerun_and_timeout(
    hourly_project: str, subprocess_env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    lonely = workflows(
        hourly_project, "trigger", "flaky", "--wait", "--timeout", "0.5", env=subprocess_env
    )
    assert lonely.returncode == 124, lonely.stderr
    assert lonely.stderr.endswith("is still running after 0.5s\n")
    first = int(lonely.stdout.splitlines()[0])
    refused = workflows(hourly_project, "rerun", str(first), env=subprocess_env)
    assert refused.returncode == 1
    assert (
        refused.stderr == f"workflows: run {first} is running; it can be rerun once it has ended\n"
    )
    cancelled = workflows(hourly_project, "cancel", str(first), env=subprocess_env)
    assert cancelled.returncode == 0, cancelled.stderr

    env = {**subprocess_env, "WORKFLOWS_INTERVAL": "0.2"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "workflows_tick", hourly_project, "schedule", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        failed = workflows(hourly_project, "trigger", "flaky", "--wait", env=subprocess_env)
        assert failed.returncode == 1, failed.stderr
        lines = failed.stdout.splitlines()
        run_id = int(lines[0])
        assert (
            lines[-1]
            == f"run {run_id} failed: failed: check.sh (after 1 attempt); not run: last.yaml"
        )
        assert any("check.sh attempt 1 failed: exit code 1" in line for line in lines), lines
        assert any(line.endswith("first.yaml attempt 1 succeeded") for line in lines)

        (tmp_path / "ok").touch()
        rerun = workflows(hourly_project, "rerun", str(run_id), env=subprocess_env)
        assert rerun.stdout == f"run {run_id} (flaky) is running again: new attempts of check.sh\n"
        wait_for(
            lambda: (
                query(database_url, f"SELECT status FROM dag_run WHERE id = {run_id}")
                == [("succeeded",)]
            ),
            timeout=60,
            what="the rerun to succeed",
        )
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
