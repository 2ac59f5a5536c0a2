"""The worker task manager, driven directly with hand-built launches (no database).

Most tests replace the ``workflows ... run`` command with the task's body run by
``python -c`` or ``sh -c``, so each one exercises the subprocess handling alone.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support import wait_for
from workflows_tick.errors import LaunchError
from workflows_tick.managers.base import Launch, Outcome, RunningTaskRun
from workflows_tick.managers.worker import CANCELLED_ERROR, SHUTDOWN_ERROR, WorkerTaskManager
from workflows_tick.model import Dag, Task, TaskType


def body_command(launch: Launch) -> list[str]:
    """Run the task's body directly: ``sh -c`` for shell tasks, ``python -c`` otherwise."""
    if launch.task.type is TaskType.SHELL:
        return ["/bin/sh", "-c", launch.task.body]
    return [sys.executable, "-c", launch.task.body]


def make_launch(
    body: str,
    *,
    task_run_id: int = 1,
    shell: bool = False,
    timeout: float | None = None,
    parameters: Mapping[str, str] | None = None,
    config: str = "config.py",
) -> Launch:
    name = f"t{task_run_id}.sh" if shell else f"t{task_run_id}.py"
    task = Task(
        name=name,
        type=TaskType.SHELL if shell else TaskType.PYTHON,
        path=Path(name),
        body=body,
        timeout=timeout,
    )
    dag = Dag(name="d", path=Path("d"), description="", tasks={name: task})
    return Launch(
        task_run_id=task_run_id,
        dag_run_id=70 + task_run_id,
        attempt=2,
        dag=dag,
        task=task,
        config=config,
        parameters=dict(parameters or {}),
    )


def running_row(launch: Launch, host: str = "here:1") -> RunningTaskRun:
    return RunningTaskRun(
        id=launch.task_run_id,
        dag_run_id=launch.dag_run_id,
        dag_name=launch.dag.name,
        task_name=launch.task.name,
        attempt=launch.attempt,
        host=host,
        started_at=datetime.now(UTC),
        lease_expires_at=None,
    )


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    path = tmp_path / "logs"
    path.mkdir()
    return path


@pytest.fixture
def manager(log_dir: Path) -> Iterator[WorkerTaskManager]:
    mgr = WorkerTaskManager(
        concurrency=4, log_dir=log_dir, command=body_command, kill_grace=0.5, shutdown_grace=0.5
    )
    yield mgr
    mgr.shutdown(kill=True)  # never leave a child behind, even when a test fails


def run_to_completion(
    manager: WorkerTaskManager, launches: Sequence[Launch], limit: float = 15.0
) -> dict[int, Outcome]:
    """Play the tick: poll and wait until every launch has an outcome."""
    rows = [running_row(launch) for launch in launches]
    outcomes: dict[int, Outcome] = {}
    end = time.monotonic() + limit
    while True:
        result = manager.poll([r for r in rows if r.id not in outcomes])
        outcomes.update((o.task_run_id, o) for o in result.finished)
        if len(outcomes) == len(launches):
            return outcomes
        assert time.monotonic() < end, f"no outcome within {limit}s: {outcomes}"
        manager.wait(1.0)


def run_one(manager: WorkerTaskManager, launch: Launch) -> Outcome:
    manager.start(launch)
    return run_to_completion(manager, [launch])[launch.task_run_id]


def dead(pid: int) -> bool:
    """``pid`` no longer exists, or is a zombie waiting for init."""
    try:
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (ProcessLookupError, FileNotFoundError):
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


def gone(pid: int) -> bool:
    """True once ``pid`` is dead; False if it still runs 10 s later."""
    try:
        wait_for(lambda: dead(pid), timeout=10, what=f"pid {pid} to end")
    except TimeoutError:
        return False
    return True


def test_success_reports_exit_code_zero_and_output(
    manager: WorkerTaskManager, log_dir: Path
) -> None:
    outcome = run_one(manager, make_launch("print('hello from the task')"))

    assert outcome == Outcome(
        task_run_id=1, succeeded=True, exit_code=0, error=None, output_tail="hello from the task\n"
    )
    assert manager.in_flight() == 0
    assert list(log_dir.iterdir()) == [], "the log file is deleted once reported"


def test_non_zero_exit_reports_code_and_last_workflows_line(manager: WorkerTaskManager) -> None:
    body = (
        "import sys\n"
        "print('working...')\n"
        "print('workflows: task d/t1.py failed: division by zero', file=sys.stderr)\n"
        "print('2024-01-01 INFO some late log line', file=sys.stderr)\n"
        "sys.exit(3)\n"
    )
    outcome = run_one(manager, make_launch(body))

    assert not outcome.succeeded
    assert outcome.exit_code == 3
    assert outcome.error == "exit code 3: workflows: task d/t1.py failed: division by zero"
    assert outcome.output_tail is not None
    assert "working..." in outcome.output_tail


def test_error_falls_back_to_last_non_empty_line_and_is_truncated(
    manager: WorkerTaskManager,
) -> None:
    body = "import sys\nprint('x' * 2000)\nprint()\nsys.exit(1)\n"
    outcome = run_one(manager, make_launch(body))

    assert outcome.error is not None
    assert outcome.error.startswith("exit code 1: xxx")
    assert len(outcome.error) <= 500


def test_a_task_killed_by_a_signal_reports_the_signal(manager: WorkerTaskManager) -> None:
    outcome = run_one(
        manager, make_launch("import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    )

    assert not outcome.succeeded
    assert outcome.exit_code == -signal.SIGKILL
    assert outcome.error == "killed by signal 9 (SIGKILL)"


def test_timeout_kills_the_whole_process_group(manager: WorkerTaskManager, tmp_path: Path) -> None:
    # The shell and its background sleep both ignore SIGTERM: only the SIGKILL that
    # follows the grace period, sent to the process group, ends them.
    pidfile = tmp_path / "grandchild.pid"
    body = f"trap '' TERM; sleep 60 & echo $! > {pidfile}; wait; wait"
    launch = make_launch(body, shell=True, timeout=0.5)
    manager.start(launch)
    wait_for(
        lambda: pidfile.exists() and pidfile.read_text().strip() != "",
        what="the task to start its grandchild",
    )
    grandchild = int(pidfile.read_text())

    outcome = run_to_completion(manager, [launch])[1]

    assert outcome.error == "timed out after 0.5s"
    assert not outcome.succeeded
    assert outcome.exit_code == -signal.SIGKILL
    assert gone(grandchild), "the grandchild sleep survived the timeout"


def test_timed_out_child_is_alive_during_its_grace(manager: WorkerTaskManager) -> None:
    launch = make_launch("trap '' TERM; sleep 60", shell=True, timeout=0.2)
    manager.start(launch)
    assert manager.wait(5.0)  # returns at the timeout, not after 5 s
    result = manager.poll([running_row(launch)])  # sends SIGTERM, which is ignored

    assert result.finished == []
    assert result.alive == [1]
    assert run_to_completion(manager, [launch])[1].error == "timed out after 0.2s"


def test_exit_of_leader_ends_what_it_left_behind(
    manager: WorkerTaskManager, tmp_path: Path
) -> None:
    pidfile = tmp_path / "orphan.pid"
    outcome = run_one(manager, make_launch(f"sleep 60 & echo $! > {pidfile}", shell=True))

    assert outcome.succeeded
    assert gone(int(pidfile.read_text()))


def test_large_output_keeps_a_bounded_tail(log_dir: Path) -> None:
    manager = WorkerTaskManager(output_tail_bytes=1000, log_dir=log_dir, command=body_command)
    body = "import sys\nsys.stdout.write('x' * 2_000_000)\nsys.stdout.write('\\nEND\\n')\n"
    try:
        outcome = run_one(manager, make_launch(body))
    finally:
        manager.shutdown(kill=True)

    assert outcome.succeeded
    assert outcome.output_tail is not None
    assert len(outcome.output_tail.encode()) == 1000
    assert outcome.output_tail.endswith("x\nEND\n")


def test_tail_does_not_start_with_half_a_character(log_dir: Path) -> None:
    manager = WorkerTaskManager(output_tail_bytes=101, log_dir=log_dir, command=body_command)
    try:
        outcome = run_one(manager, make_launch("print('é' * 500, end='')"))
    finally:
        manager.shutdown(kill=True)

    assert outcome.output_tail == "é" * 50


def test_parameters_reach_the_environment_not_the_command_line(
    manager: WorkerTaskManager,
) -> None:
    body = (
        "import os, sys\n"
        "print(sys.argv)\n"
        "for k in ('RUN_DATE', 'API_TOKEN', 'WORKFLOWS_TASK_RUN_ID', 'WORKFLOWS_DAG_RUN_ID',"
        " 'WORKFLOWS_ATTEMPT'):\n"
        "    print(k + '=' + os.environ[k])\n"
    )
    launch = make_launch(
        body, task_run_id=5, parameters={"RUN_DATE": "2024-01-31", "API_TOKEN": "t0p-s3cret"}
    )
    outcome = run_one(manager, launch)

    assert outcome.succeeded, outcome.error
    lines = (outcome.output_tail or "").splitlines()
    assert lines[1:] == [
        "RUN_DATE=2024-01-31",
        "API_TOKEN=t0p-s3cret",
        "WORKFLOWS_TASK_RUN_ID=5",
        "WORKFLOWS_DAG_RUN_ID=75",
        "WORKFLOWS_ATTEMPT=2",
    ]
    assert "t0p-s3cret" not in lines[0]


def test_default_command_runs_workflows_run_for_one_task() -> None:
    manager = WorkerTaskManager(python="/opt/py/bin/python")
    launch = make_launch("", parameters={"API_TOKEN": "t0p-s3cret"}, config="proj/config.py")

    assert manager.command_for(launch) == [
        "/opt/py/bin/python",
        "-m",
        "workflows_tick",
        "proj/config.py",
        "run",
        "d",
        "-o",
        "t1.py",
    ]


def test_wait_returns_when_a_child_exits(manager: WorkerTaskManager, tmp_path: Path) -> None:
    # How soon it returns is measured by benchmarks/worker_wakeup.py.
    stamp = tmp_path / "exited"
    body = f"import os, time\ntime.sleep(0.3)\nopen({str(stamp)!r}, 'w').close()\nos._exit(0)\n"
    manager.start(make_launch(body))
    assert manager.wait(60.0)  # True: a child exited (the task has no timeout to wake for)
    assert stamp.exists()
    assert [o.succeeded for o in manager.poll([]).finished] == [True]


def test_an_exit_before_wait_is_not_missed(manager: WorkerTaskManager) -> None:
    launch = make_launch("pass")
    manager.start(launch)
    assert manager.wait_all(10)

    assert manager.wait(60.0)  # True: the exit is still there to report
    assert len(manager.poll([running_row(launch)]).finished) == 1

    began = time.monotonic()
    assert not manager.wait(0.2)  # nothing left: sleeps the whole timeout
    assert time.monotonic() - began >= 0.15


def test_an_exited_child_holds_its_slot_until_reported(log_dir: Path) -> None:
    manager = WorkerTaskManager(concurrency=1, log_dir=log_dir, command=body_command)
    launch = make_launch("pass")
    try:
        manager.start(launch)
        assert manager.wait_all(10)
        assert (manager.in_flight(), manager.capacity()) == (1, 0)
        assert len(manager.poll([running_row(launch)]).finished) == 1
        assert (manager.in_flight(), manager.capacity()) == (0, 1)
    finally:
        manager.shutdown(kill=True)


def test_nul_bytes_in_output_are_replaced(manager: WorkerTaskManager) -> None:
    body = "import sys; sys.stdout.write('a\\0b'); sys.stderr.write('bad\\0line\\n'); sys.exit(2)"
    outcome = run_one(manager, make_launch(body))

    assert outcome.output_tail == "a\ufffdbbad\ufffdline\n"
    assert outcome.error == "exit code 2: a\ufffdbbad\ufffdline"


def test_wait_wakes_at_a_childs_timeout(manager: WorkerTaskManager) -> None:
    manager.start(make_launch("sleep 60", shell=True, timeout=0.3))
    began = time.monotonic()
    assert manager.wait(60.0)
    assert time.monotonic() - began < 60.0, "slept its whole timeout, not until the child's"
    assert manager.wait(10.0), "still due until poll() acts on it, so a loop never spins"
    assert manager.poll([]).alive == []  # SIGTERM sent
    assert manager.wait(10.0)  # and the exit follows


def test_capacity_with_concurrency_two(log_dir: Path) -> None:
    manager = WorkerTaskManager(concurrency=2, log_dir=log_dir, command=body_command)
    first, second = (
        make_launch("import time; time.sleep(0.2)", task_run_id=1),
        make_launch("import time; time.sleep(0.4)", task_run_id=2),
    )
    try:
        assert (manager.capacity(), manager.in_flight()) == (2, 0)
        manager.start(first)
        assert (manager.capacity(), manager.in_flight()) == (1, 1)
        manager.start(second)
        assert (manager.capacity(), manager.in_flight()) == (0, 2)

        result = manager.poll([running_row(first), running_row(second)])
        assert sorted(result.alive) == [1, 2]
        outcomes = run_to_completion(manager, [first, second])
    finally:
        manager.shutdown(kill=True)

    assert sorted(outcomes) == [1, 2]
    assert (manager.capacity(), manager.in_flight()) == (2, 0)


def test_poll_ignores_other_schedulers_rows_and_stops_children_it_lost(
    manager: WorkerTaskManager,
) -> None:
    ours = make_launch("import time; time.sleep(0.3)", task_run_id=1)
    lost = make_launch("import time; time.sleep(30)", task_run_id=2)
    theirs = make_launch("", task_run_id=99)
    manager.start(ours)
    manager.start(lost)
    rows = [running_row(ours), running_row(lost)]
    assert sorted(manager.poll(rows).alive) == [1, 2]

    # Task run 2 is no longer running in the database: its lease expired elsewhere.
    result = manager.poll([running_row(ours), running_row(theirs, host="elsewhere:7")])
    assert result.finished == []
    assert list(result.alive) == [1], "neither another scheduler's row nor a row we lost"

    assert manager.wait_all(10)
    finished = {o.task_run_id: o for o in manager.poll([running_row(theirs)]).finished}
    assert sorted(finished) == [1, 2]
    assert finished[1].succeeded
    assert not finished[2].succeeded
    assert "no longer running" in (finished[2].error or "")
    assert manager.in_flight() == 0


def test_shutdown_with_kill_stops_children_and_reports_them_failed(
    manager: WorkerTaskManager, tmp_path: Path
) -> None:
    done = make_launch("print('quick')", task_run_id=1)
    manager.start(done)
    manager.wait_all(10)
    manager.start(make_launch("sleep 60", task_run_id=2, shell=True))
    trapped = tmp_path / "trapped"
    manager.start(
        make_launch(f"trap '' TERM; touch {trapped}; sleep 60", task_run_id=3, shell=True)
    )
    wait_for(trapped.exists, what="the shell to install its trap")

    outcomes = {o.task_run_id: o for o in manager.shutdown(kill=True)}

    assert outcomes[1].succeeded, "an attempt that had already finished keeps its outcome"
    for tid, code in ((2, -signal.SIGTERM), (3, -signal.SIGKILL)):
        assert not outcomes[tid].succeeded
        assert outcomes[tid].error == SHUTDOWN_ERROR
        assert outcomes[tid].exit_code == code
    assert manager.in_flight() == 0


def test_shutdown_with_kill_waits_its_own_grace_before_sigkill(
    log_dir: Path, tmp_path: Path
) -> None:
    manager = WorkerTaskManager(
        log_dir=log_dir, command=body_command, kill_grace=0.1, shutdown_grace=1.0
    )
    trapped = tmp_path / "trapped"
    manager.start(make_launch(f"trap '' TERM; touch {trapped}; sleep 60", shell=True))
    wait_for(trapped.exists, what="the shell to install its trap")

    began = time.monotonic()
    (outcome,) = manager.shutdown(kill=True)

    assert time.monotonic() - began >= 0.9  # the shutdown grace, not the kill grace
    assert (outcome.error, outcome.exit_code) == (SHUTDOWN_ERROR, -signal.SIGKILL)


def test_shutdown_without_kill_lets_children_finish(manager: WorkerTaskManager) -> None:
    manager.start(make_launch("import time; time.sleep(0.5); print('finished')"))
    outcomes = manager.shutdown(kill=False)

    assert [(o.succeeded, o.output_tail) for o in outcomes] == [(True, "finished\n")]
    assert manager.in_flight() == 0


def test_spawn_failure_raises_launch_error(log_dir: Path) -> None:
    manager = WorkerTaskManager(python="/nonexistent/bin/python3", log_dir=log_dir)

    with pytest.raises(LaunchError) as caught:
        manager.start(make_launch(""))

    message = str(caught.value)
    assert "\n" not in message
    assert message == (
        "cannot start task d/t1.py (task run 1): /nonexistent/bin/python3: "
        "No such file or directory"
    )
    assert (manager.in_flight(), manager.capacity()) == (0, 1)
    assert list(log_dir.iterdir()) == []


def test_starting_a_running_task_run_twice_is_refused(manager: WorkerTaskManager) -> None:
    launch = make_launch("import time; time.sleep(0.3)")
    manager.start(launch)
    with pytest.raises(LaunchError, match="already running"):
        manager.start(launch)
    assert manager.in_flight() == 1


def test_host_is_hostname_and_pid() -> None:
    host = WorkerTaskManager().host_for(1, 1, "d", "t.sql")
    assert host.endswith(f":{os.getpid()}")
    assert host.split(":")[0]


def test_through_the_real_workflows_run_command(tmp_path: Path, log_dir: Path) -> None:
    from workflows_tick.config import load_registry

    project = tmp_path / "project"
    dag_dir = project / "d"
    dag_dir.mkdir(parents=True)
    (project / "config.py").write_text(
        "import os\n"
        "from workflows_tick import dags\n"
        "DAGS = dags.register_directory(os.path.dirname(__file__))\n"
    )
    (dag_dir / "workflow.yaml").write_text("description: worker manager test\nretries: 0\n")
    (dag_dir / "greet.py").write_text(
        '"""\nparameters: [GREETING_NAME]\n"""\n\n\n'
        "def run(context):\n"
        "    print(f\"hello, {context['GREETING_NAME']}!\")\n"
    )
    (dag_dir / "fails.sh").write_text("echo 'about to fail' >&2\nexit 3\n")
    config = str(project / "config.py")
    dag = load_registry(config).get("d")

    def launch(task_run_id: int, task: str) -> Launch:
        return Launch(
            task_run_id=task_run_id,
            dag_run_id=1,
            attempt=1,
            dag=dag,
            task=dag.task(task),
            config=config,
            parameters={"GREETING_NAME": "worker"},
        )

    manager = WorkerTaskManager(concurrency=2, log_dir=log_dir)
    greet, fails = launch(1, "greet.py"), launch(2, "fails.sh")
    try:
        manager.start(greet)
        manager.start(fails)
        outcomes = run_to_completion(manager, [greet, fails], limit=60)
    finally:
        manager.shutdown(kill=True)

    assert outcomes[1].succeeded, outcomes[1]
    assert "hello, worker!" in (outcomes[1].output_tail or "")
    assert not outcomes[2].succeeded
    assert outcomes[2].exit_code == 1
    assert outcomes[2].error == "exit code 1: workflows: task d/fails.sh failed: exit code 3"
    assert "about to fail" in (outcomes[2].output_tail or "")


def cancelled_row(launch: Launch) -> RunningTaskRun:
    return dataclasses.replace(running_row(launch), cancelled=True)


def test_cancelled_attempt_has_its_process_group_killed_after_the_grace(
    manager: WorkerTaskManager, tmp_path: Path
) -> None:
    # Both ignore SIGTERM: only the SIGKILL to the group after the grace ends them.
    pidfile = tmp_path / "grandchild.pid"
    launch = make_launch(f"trap '' TERM; sleep 60 & echo $! > {pidfile}; wait; wait", shell=True)
    manager.start(launch)
    began = time.monotonic()
    while not pidfile.exists() or not pidfile.read_text().strip():
        assert time.monotonic() - began < 5, "the task never started its grandchild"
        time.sleep(0.01)
    grandchild = int(pidfile.read_text())

    first = manager.poll([cancelled_row(launch)])  # SIGTERM, ignored
    assert first.finished == [] and first.alive == [1]
    outcomes: list[Outcome] = []
    while not outcomes:
        assert time.monotonic() - began < 10, "the cancelled attempt was never killed"
        manager.wait(1.0)
        outcomes = list(manager.poll([cancelled_row(launch)]).finished)

    assert outcomes[0].error == CANCELLED_ERROR
    assert not outcomes[0].succeeded
    assert outcomes[0].exit_code == -signal.SIGKILL
    assert gone(grandchild), "the grandchild survived the cancel"


def test_cancelled_attempt_that_exits_zero_on_sigterm_succeeds(
    manager: WorkerTaskManager, tmp_path: Path
) -> None:
    ready = tmp_path / "ready"
    launch = make_launch(f"trap 'exit 0' TERM; touch {ready}; sleep 60 & wait", shell=True)
    manager.start(launch)
    began = time.monotonic()
    while not ready.exists():  # SIGTERM before the trap is set would kill the shell
        assert time.monotonic() - began < 10, "the task never set its trap"
        time.sleep(0.01)
    manager.poll([cancelled_row(launch)])
    outcome = run_to_completion(manager, [launch])[1]
    assert outcome.succeeded and outcome.error is None


def test_cancel_of_another_schedulers_attempt_is_left_to_it(manager: WorkerTaskManager) -> None:
    mine = make_launch("import time; time.sleep(60)", task_run_id=1)
    theirs = make_launch("import time; time.sleep(60)", task_run_id=2)
    manager.start(mine)
    result = manager.poll([running_row(mine), cancelled_row(theirs)])
    assert result.finished == [] and result.alive == [1]


def test_the_host_is_fixed_unless_a_subclass_places_attempts() -> None:
    class Placed(WorkerTaskManager):
        def host_for(self, task_run_id: int, attempt: int, dag_name: str, task_name: str) -> str:
            return f"slot-{task_run_id % 2}"

    plain = WorkerTaskManager(fork_server=False)
    assert plain.fixed_host() == plain.host_for(1, 1, "d", "t")
    assert Placed(fork_server=False).fixed_host() is None
