"""The real ``workflows`` command in subprocesses against a real PostgreSQL."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tests.support import (
    LEDGER_TABLE,
    LEDGER_TASK,
    processes_matching,
    query,
    start_scheduler,
    wait_for,
    workflows,
    write_project,
)
from workflows_tick.scheduler import trigger_dag

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "config.py"


def test_trigger_then_schedule_worker_runs_the_example(
    subprocess_env: dict[str, str], database_url: str
) -> None:
    trig = workflows(str(EXAMPLES), "trigger", "hello", "-p", "GREETING=a=b", env=subprocess_env)
    assert trig.returncode == 0, trig.stderr
    run_id = int(trig.stdout.strip())
    sched = workflows(
        str(EXAMPLES), "schedule", "worker", "--until-idle", "--interval", "0.5", env=subprocess_env
    )
    assert sched.returncode == 0, sched.stderr
    assert query(database_url, f"SELECT status FROM dag_run WHERE id = {run_id}") == [
        ("succeeded",)
    ]
    assert query(database_url, "SELECT parameters FROM dag_run") == [({"GREETING": "a=b"},)]
    runs = workflows(str(EXAMPLES), "runs", "hello", env=subprocess_env)
    assert runs.returncode == 0, runs.stderr
    assert f"run {run_id}  hello  succeeded" in runs.stdout
    assert "a=b" not in runs.stdout  # parameter values are never printed


def test_a_failing_task_is_attempted_exactly_three_times(
    tmp_path: Path, subprocess_env: dict[str, str], database_url: str
) -> None:
    write_project(
        tmp_path,
        {
            "flaky": {
                "workflow.yaml": "description: x\n",
                "boom.sh": "# description: fails\necho boom >&2\nexit 7\n",
            }
        },
    )
    config = str(tmp_path / "config.py")
    assert workflows(config, "trigger", "flaky", env=subprocess_env).returncode == 0
    sched = workflows(
        config, "schedule", "worker", "--until-idle", "--interval", "0.5", env=subprocess_env
    )
    assert sched.returncode == 0, sched.stderr
    attempts = query(
        database_url, "SELECT attempt, status, exit_code FROM task_run ORDER BY attempt"
    )
    assert attempts == [(1, "failed", 1), (2, "failed", 1), (3, "failed", 1)]
    assert query(database_url, "SELECT status FROM dag_run") == [("failed",)]
    task_run = query(database_url, "SELECT id FROM task_run WHERE attempt = 3")[0][0]
    logs = workflows(config, "logs", str(task_run), env=subprocess_env)
    assert logs.returncode == 0 and "boom" in logs.stdout


def test_once_runs_one_pass_and_waits_for_the_task_it_started(
    tmp_path: Path, subprocess_env: dict[str, str], database_url: str
) -> None:
    write_project(
        tmp_path,
        {
            "d": {
                "workflow.yaml": "description: x\n",
                "a.sh": "sleep 1\n",
                "b.yaml": "type: no_op\ninputs: [a.sh]\n",
            }
        },
    )
    config = str(tmp_path / "config.py")
    workflows(config, "trigger", "d", env=subprocess_env)
    once = workflows(config, "schedule", "worker", "--once", env=subprocess_env)
    assert once.returncode == 0, once.stderr
    assert query(database_url, "SELECT task_name, status FROM task_run") == [("a.sh", "succeeded")]
    workflows(config, "schedule", "worker", "--once", env=subprocess_env)
    workflows(config, "schedule", "worker", "--once", env=subprocess_env)
    assert query(database_url, "SELECT status FROM dag_run") == [("succeeded",)]


def test_trigger_mistakes_are_one_line(subprocess_env: dict[str, str]) -> None:
    bad = workflows(str(EXAMPLES), "trigger", "hello", "-p", "NOVALUE", env=subprocess_env)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0, bad.stderr
    assert "VAR=value" in bad.stderr
    unknown = workflows(str(EXAMPLES), "trigger", "nope", env=subprocess_env)
    assert unknown.returncode == 2 and "known DAGs: fan_out" in unknown.stderr
    assert "Traceback" not in unknown.stderr


def test_a_parameter_value_that_is_not_utf8_is_one_line_that_hides_the_value(
    subprocess_env: dict[str, str],
) -> None:
    value = os.fsdecode(b"TOKEN=s3cret\xff")  # passed to the command as those bytes
    done = workflows(str(EXAMPLES), "trigger", "hello", "-p", value, env=subprocess_env)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("workflows: ") and done.stderr.count("\n") == 1, done.stderr
    assert "s3cret" not in done.stderr


def _ledger_project(
    tmp_path: Path, dags: int, body: str = "pass", extra: str = "", schedule: bool = True
) -> str:
    project = {}
    for i in range(dags):
        project[f"dag{i}"] = {
            "workflow.yaml": "description: x\n" + ("schedule: '* * * * *'\n" if schedule else ""),
            "first.py": LEDGER_TASK.format(body=body, extra=extra),
            "second.py": LEDGER_TASK.format(body=body, extra="inputs: [first.py]\n" + extra),
        }
    write_project(tmp_path, project)
    return str(tmp_path / "config.py")


@pytest.mark.slow
def test_many_schedulers_never_duplicate_runs_or_attempts(
    tmp_path: Path, subprocess_env: dict[str, str], database_url: str, engine: Engine
) -> None:
    query(database_url, LEDGER_TABLE)
    config = _ledger_project(tmp_path, dags=6)
    schedulers = [
        start_scheduler(config, subprocess_env, "--interval", "0.2", "--concurrency", "2")
        for _ in range(4)
    ]
    try:
        for i in range(30):  # in process: 30 command start-ups would only add load
            trigger_dag(f"dag{i % 6}", creator="test", engine=engine)
        wait_for(
            lambda: (
                query(
                    database_url,
                    "SELECT count(*) FROM dag_run WHERE trigger = 'manual' AND status <> 'running'",
                )[0][0]
                == 30
            ),
            timeout=90,
            what="30 triggered runs to finish",
        )
    finally:
        for proc in schedulers:
            proc.send_signal(signal.SIGINT)
        for proc in schedulers:
            _, err = proc.communicate(timeout=30)
            assert proc.returncode == 0, err
    # Nothing ran twice: one ledger line per attempt, one attempt per task run.
    assert (
        query(database_url, "SELECT task_run_id FROM ledger GROUP BY 1 HAVING count(*) > 1") == []
    )
    assert (
        query(database_url, "SELECT count(*) FROM ledger")[0][0]
        == query(database_url, "SELECT count(*) FROM task_run WHERE status = 'succeeded'")[0][0]
    )
    assert query(
        database_url, "SELECT status, count(*) FROM dag_run WHERE trigger = 'manual' GROUP BY 1"
    ) == [("succeeded", 30)]
    dup = "SELECT dag_name, scheduled_for FROM dag_run WHERE scheduled_for IS NOT NULL GROUP BY 1, 2 HAVING count(*) > 1"
    assert query(database_url, dup) == []
    assert query(
        database_url,
        "SELECT count(*) FROM task_run WHERE status IN ('waiting', 'running') AND dag_run_id IN (SELECT id FROM dag_run WHERE trigger = 'manual')",
    ) == [(0,)]


@pytest.mark.slow
def test_a_scheduler_killed_mid_task_is_recovered_by_another(
    tmp_path: Path, subprocess_env: dict[str, str], database_url: str
) -> None:
    query(database_url, LEDGER_TABLE)
    config = _ledger_project(
        tmp_path,
        dags=1,
        body="time.sleep(30 if context['WORKFLOWS_ATTEMPT'] == '1' and __file__.endswith('first.py') else 0)",
        schedule=False,
    )
    first = start_scheduler(config, subprocess_env, "--interval", "0.2", "--lease", "2")
    run_id = int(workflows(config, "trigger", "dag0", env=subprocess_env).stdout)
    wait_for(
        lambda: (
            query(database_url, "SELECT count(*) FROM task_run WHERE status = 'running'")[0][0] == 1
        ),
        what="the first attempt to start",
    )
    wait_for(
        lambda: processes_matching(f"{config} run dag0 -o first.py") != [],
        what="the first attempt's process",
    )
    first.kill()  # kill -9: no chance to clean up
    first.communicate(timeout=10)
    second = start_scheduler(config, subprocess_env, "--interval", "0.2", "--lease", "2")
    try:
        wait_for(
            lambda: (
                query(database_url, f"SELECT status FROM dag_run WHERE id = {run_id}")
                == [("succeeded",)]
            ),
            timeout=60,
            what="the run to succeed",
        )
    finally:
        second.send_signal(signal.SIGINT)
        second.communicate(timeout=30)
    attempts = query(
        database_url,
        "SELECT task_name, attempt, status, error FROM task_run WHERE task_name = 'first.py' ORDER BY attempt",
    )
    assert [(a, s) for _, a, s, _ in attempts] == [(1, "failed"), (2, "succeeded")]
    assert attempts[0][3].startswith("lease expired")
    # The first attempt's process died with its scheduler: it never reached the ledger,
    # and no process of it is left behind.
    assert sorted(query(database_url, "SELECT attempt FROM ledger")) == [(1,), (2,)]
    assert processes_matching(f"{config} run dag0 -o first.py") == []


def test_sigterm_stops_the_running_task_and_records_it_failed(
    tmp_path: Path, subprocess_env: dict[str, str], database_url: str
) -> None:
    write_project(
        tmp_path, {"d": {"workflow.yaml": "description: x\n", "slow.sh": "sleep 61.25\n"}}
    )
    config = str(tmp_path / "config.py")
    workflows(config, "trigger", "d", env=subprocess_env)
    proc = start_scheduler(config, subprocess_env, "--interval", "0.2")
    wait_for(
        lambda: (
            query(database_url, "SELECT count(*) FROM task_run WHERE status = 'running'")[0][0] == 1
        ),
        what="the task to start",
    )
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert query(database_url, "SELECT status, error FROM task_run") == [
        ("failed", "stopped by scheduler shutdown (SIGTERM)")
    ]
    assert processes_matching("sleep 61.25") == []  # the shell task's own processes too


@pytest.mark.slow
def test_a_killed_scheduler_leaves_no_shell_task_behind(
    tmp_path: Path, subprocess_env: dict[str, str], database_url: str
) -> None:
    write_project(
        tmp_path, {"d": {"workflow.yaml": "description: x\n", "slow.sh": "sleep 62.75\n"}}
    )
    config = str(tmp_path / "config.py")
    workflows(config, "trigger", "d", env=subprocess_env)
    proc = start_scheduler(config, subprocess_env, "--interval", "0.2")
    wait_for(lambda: processes_matching("sleep 62.75") != [], what="the task to start")
    proc.kill()
    proc.communicate(timeout=10)
    wait_for(lambda: processes_matching("sleep 62.75") == [], timeout=10, what="the task to die")


def test_sigint_lets_the_running_task_finish(
    tmp_path: Path, subprocess_env: dict[str, str], database_url: str
) -> None:
    write_project(
        tmp_path,
        {
            "d": {
                "workflow.yaml": "description: x\n",
                "slow.sh": "sleep 1\n",
                "next.yaml": "type: no_op\ninputs: [slow.sh]\n",
            }
        },
    )
    config = str(tmp_path / "config.py")
    workflows(config, "trigger", "d", env=subprocess_env)
    proc = start_scheduler(config, subprocess_env, "--interval", "0.2")
    wait_for(
        lambda: (
            query(database_url, "SELECT count(*) FROM task_run WHERE status = 'running'")[0][0] == 1
        ),
        what="the task to start",
    )
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    # The running task finished and was recorded, which made the next task due; it was
    # not started: it waits for a scheduler.
    assert query(database_url, "SELECT task_name, status FROM task_run ORDER BY id") == [
        ("slow.sh", "succeeded"),
        ("next.yaml", "waiting"),
    ]


LISTENING = (
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE datname = current_database() AND query LIKE 'LISTEN %'"
)


def test_a_looping_scheduler_picks_up_a_new_dag_without_restart(
    tmp_path: Path, subprocess_env: dict[str, str], database_url: str
) -> None:
    # Scheduled (yearly), so that the first pass records the DAG's cursor.
    old = {"workflow.yaml": "description: x\nschedule: '0 0 1 1 *'\n", "a.yaml": "type: no_op\n"}
    write_project(tmp_path, {"old": old})
    config = str(tmp_path / "config.py")
    proc = start_scheduler(config, subprocess_env, "--interval", "0.2", "--reload-interval", "0.2")
    try:
        wait_for(
            lambda: query(database_url, "SELECT dag_name FROM dag_schedule") == [("old",)],
            what="the scheduler's first pass",
        )
        new = {
            "workflow.yaml": "description: x\nschedule: '0 3 * * *'\n",
            "b.yaml": "type: no_op\n",
        }
        write_project(tmp_path, {"new": new})
        # Nothing wakes the scheduler: its next reload sees the DAG (and writes its cursor).
        wait_for(
            lambda: ("new",) in query(database_url, "SELECT dag_name FROM dag_schedule"),
            what="the scheduler to load the new DAG",
        )
        assert workflows(config, "trigger", "new", env=subprocess_env).returncode == 0
        wait_for(
            lambda: query(database_url, "SELECT status FROM dag_run") == [("succeeded",)],
            what="the new DAG's run to succeed",
        )
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert "reloading" in err


def test_a_cli_trigger_wakes_a_sleeping_scheduler(
    tmp_path: Path, subprocess_env: dict[str, str], database_url: str
) -> None:
    write_project(tmp_path, {"d": {"workflow.yaml": "description: x\n", "a.yaml": "type: no_op\n"}})
    config = str(tmp_path / "config.py")
    proc = start_scheduler(config, subprocess_env, "--interval", "3600")
    try:
        wait_for(lambda: query(database_url, LISTENING)[0][0] == 1, what="the scheduler to listen")
        trig = workflows(config, "trigger", "d", env=subprocess_env)
        assert trig.returncode == 0, trig.stderr
        wait_for(
            lambda: query(database_url, "SELECT status FROM dag_run") == [("succeeded",)],
            what="the run to succeed long before the scheduler's interval",
        )
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)


def test_a_task_waiting_on_another_dag_shows_in_runs_and_starts_once_it_succeeded(
    tmp_path: Path, subprocess_env: dict[str, str], database_url: str
) -> None:
    go = tmp_path / "go"
    write_project(
        tmp_path,
        {
            "up": {
                "workflow.yaml": "description: up\n",
                "t.sh": f"while [ ! -e {go} ]; do sleep 0.05; done\n",
            },
            "down": {
                "workflow.yaml": "description: down\n",
                "x.yaml": "type: no_op\ninputs: ['up:t.sh']\n",
            },
        },
    )
    config = str(tmp_path / "config.py")
    proc = start_scheduler(config, subprocess_env, "--interval", "3600")
    try:
        wait_for(lambda: query(database_url, LISTENING)[0][0] == 1, what="the scheduler to listen")
        assert workflows(config, "trigger", "up", env=subprocess_env).returncode == 0
        wait_for(
            lambda: query(database_url, "SELECT status FROM task_run") == [("running",)],
            what="up's t.sh to start",
        )
        assert workflows(config, "trigger", "down", env=subprocess_env).returncode == 0
        x_status = "SELECT status, waiting_for FROM task_run WHERE task_name = 'x.yaml'"
        wait_for(
            lambda: query(database_url, x_status) == [("waiting", ["up:t.sh"])],
            what="x.yaml to wait for up:t.sh",
        )

        runs = workflows(config, "runs", "down", env=subprocess_env)

        assert runs.returncode == 0, runs.stderr
        assert "x.yaml  1    waiting for up:t.sh" in runs.stdout
        go.touch()
        wait_for(
            lambda: (
                query(database_url, "SELECT status FROM dag_run ORDER BY id")
                == [("succeeded",), ("succeeded",)]
            ),
            what="up, then down, to succeed long before the scheduler's interval",
        )
        assert query(database_url, x_status) == [("succeeded", None)]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
