"""The worker manager's fork server: every property an exec'd attempt has, kept.

Each test runs real ``workflows CONFIG run DAG -o TASK`` attempts (a project on
disk) forked from a real server process; no database is involved.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tests.support import wait_for, write_project
from tests.unit.test_worker_manager import gone, run_to_completion
from workflows_tick.config import load_registry
from workflows_tick.managers.base import Launch, Outcome
from workflows_tick.managers.worker import SERVER_LOST_ERROR, WorkerTaskManager

REPORT_TASK = '''"""
description: reports its process
"""
import json
import os
import signal
import sys
import threading


def run(context):
    report = {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "pgid": os.getpgid(0),
        "sid": os.getsid(0),
        "cwd": os.getcwd(),
        "usr1": str(signal.getsignal(signal.SIGUSR1)),
        "leaked_module": "leaked_module" in sys.modules,
        "threads": threading.active_count(),
        "fds": sorted(os.listdir("/proc/self/fd")),
        "cmdline": open("/proc/self/cmdline", "rb").read().decode().replace(chr(0), " ").split(" ", 1)[1],
    }
    print("REPORT " + json.dumps(report))
'''

MESSY_TASK = '''"""
description: changes its process in every way it can
"""
import os
import signal
import sys
import threading
import time
import types


def run(context):
    os.chdir("/")
    signal.signal(signal.SIGUSR1, lambda signum, frame: None)
    sys.modules["leaked_module"] = types.ModuleType("leaked_module")
    threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()
    os.open("/dev/null", os.O_RDONLY)
'''

ENDING_TASK = """import atexit
import sys
import threading
import time


def run(context):
    atexit.register(print, "atexit ran")

    def late():
        time.sleep(0.3)
        print("thread done")

    threading.Thread(target=late).start()
    sys.stdout.write("no newline at the end")
"""

DAG = {
    "workflow.yaml": "description: fork server tests\nretries: 0\n",
    "ends.py": ENDING_TASK,
    "report.py": REPORT_TASK,
    "messy.py": MESSY_TASK,
    "fails.sh": "echo 'about to fail' >&2\nexit 3\n",
    "killed.py": "import os, signal\n\n\ndef run(context):\n    os.kill(os.getpid(), signal.SIGKILL)\n",
    "exits.py": "import os\n\n\ndef run(context):\n    print('bye', flush=True)\n    os._exit(7)\n",
    "raises.py": "def run(context):\n    raise ValueError('bad value')\n",
    "group.sh": 'sleep 61.5 &\necho $! > "$PIDFILE"\nsleep 61.5\n',
    "version.py": "def run(context):\n    print('version 1')\n",
    "needs_p.py": '"""\nparameters: [P]\n"""\n\n\ndef run(context):\n    print(context["P"])\n',
    "needs_marker.py": '"""\nparameters: [LEAK_MARKER]\n"""\n\n\ndef run(context):\n    pass\n',
}
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+")
GROUP_HEADER = "# parameters: [PIDFILE]\n"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    dag = dict(DAG)
    dag["group.sh"] = GROUP_HEADER + dag["group.sh"]
    write_project(root, {"d": dag})
    # The config records every process that imports it: the server never must.
    (root / "config.py").write_text(
        "import os\nfrom workflows_tick import dags\n"
        "open(os.path.join(os.path.dirname(__file__), f'imported-{os.getpid()}'), 'w').close()\n"
        "DAGS = dags.register_directory(os.path.dirname(__file__))\n"
    )
    return root


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[WorkerTaskManager]:
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    mgr = WorkerTaskManager(concurrency=4, log_dir=log_dir, kill_grace=0.5, shutdown_grace=0.5)
    mgr.start_fork_server()
    assert mgr.fork_server is not None
    yield mgr
    mgr.shutdown(kill=True)


class Attempts:
    def __init__(self, project: Path) -> None:
        self.config = str(project / "config.py")
        self.dag = load_registry(self.config).get("d")
        self.next_id = 0

    def launch(
        self, task: str, parameters: Mapping[str, str] | None = None, timeout: float | None = None
    ) -> Launch:
        self.next_id += 1
        spec = self.dag.task(task)
        if timeout is not None:
            spec = dataclasses.replace(spec, timeout=timeout)
        return Launch(
            task_run_id=self.next_id,
            dag_run_id=1,
            attempt=1,
            dag=self.dag,
            task=spec,
            config=self.config,
            parameters=dict(parameters or {}),
        )


@pytest.fixture
def attempts(project: Path) -> Attempts:
    return Attempts(project)


def run(manager: WorkerTaskManager, launch: Launch) -> Outcome:
    manager.start(launch)
    return run_to_completion(manager, [launch], limit=60)[launch.task_run_id]


def report(outcome: Outcome) -> dict:  # type: ignore[type-arg]
    assert outcome.succeeded, outcome
    line = next(x for x in (outcome.output_tail or "").splitlines() if x.startswith("REPORT "))
    return dict(json.loads(line.removeprefix("REPORT ")))


def test_an_attempt_is_forked_from_the_server_and_leads_its_own_session(
    manager: WorkerTaskManager, attempts: Attempts
) -> None:
    server = manager.fork_server
    assert server is not None
    seen = report(run(manager, attempts.launch("report.py")))
    assert seen["ppid"] == server.pid
    assert seen["pgid"] == seen["pid"] == seen["sid"]
    # ps shows what runs, as for an exec'd attempt.
    assert seen["cmdline"].startswith(f"-m workflows_tick {attempts.config} run d -o report.py")
    assert seen["fds"] == ["0", "1", "2", "3"]  # stdin, the log twice, and listdir's own


def test_only_the_managers_environment_reaches_an_attempt(
    attempts: Attempts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A server started while LEAK_MARKER was set: the variable is in the server's own
    # environment, not in the scheduler's when it starts the attempts.
    monkeypatch.setenv("LEAK_MARKER", "the server's")
    manager = WorkerTaskManager(log_dir=tmp_path)
    manager.start_fork_server()
    monkeypatch.delenv("LEAK_MARKER")
    try:
        marker = run(manager, attempts.launch("needs_marker.py"))
        given = run(manager, attempts.launch("needs_p.py", {"P": "one"}))
        not_given = run(manager, attempts.launch("needs_p.py"))
    finally:
        manager.shutdown(kill=True)
    assert "needs environment variable(s) LEAK_MARKER" in (marker.error or "")
    assert given.succeeded and "one" in (given.output_tail or "")
    assert "needs environment variable(s) P," in (not_given.error or "")


def test_what_an_attempt_does_to_its_process_does_not_reach_the_next(
    manager: WorkerTaskManager, attempts: Attempts
) -> None:
    before = report(run(manager, attempts.launch("report.py")))
    assert run(manager, attempts.launch("messy.py")).succeeded
    after = report(run(manager, attempts.launch("report.py")))
    for key in ("cwd", "usr1", "leaked_module", "threads", "fds"):
        assert after[key] == before[key], key


def test_an_edited_task_file_is_read_by_the_next_attempt(
    manager: WorkerTaskManager, attempts: Attempts, project: Path
) -> None:
    assert "version 1" in (run(manager, attempts.launch("version.py")).output_tail or "")
    (project / "d" / "version.py").write_text("def run(context):\n    print('version 2')\n")
    assert "version 2" in (run(manager, attempts.launch("version.py")).output_tail or "")


def test_the_server_imports_no_user_code_and_opens_no_connection(
    manager: WorkerTaskManager, attempts: Attempts, project: Path
) -> None:
    server = manager.fork_server
    assert server is not None
    seen = report(run(manager, attempts.launch("report.py")))
    imported = {p.name for p in project.glob("imported-*")}
    assert f"imported-{seen['pid']}" in imported  # the attempt imported the config
    assert f"imported-{server.pid}" not in imported
    fds = [str(fd.readlink()) for fd in Path(f"/proc/{server.pid}/fd").iterdir()]
    sockets = {fd.removeprefix("socket:[").rstrip("]") for fd in fds if fd.startswith("socket:")}
    # Its control socket and the one to its spare process, both Unix sockets; any
    # database connection would be one more socket.
    unix = {line.split()[6] for line in Path("/proc/net/unix").read_text().splitlines()[1:]}
    assert len(sockets) == 2, fds
    assert sockets <= unix, fds


@pytest.mark.parametrize("task", ["report.py", "fails.sh", "killed.py", "exits.py", "raises.py"])
def test_outcomes_are_those_of_a_new_interpreter(
    task: str, manager: WorkerTaskManager, attempts: Attempts, tmp_path: Path
) -> None:
    execed = WorkerTaskManager(log_dir=tmp_path, fork_server=False)
    try:
        expected = run(execed, attempts.launch(task))
    finally:
        execed.shutdown(kill=True)
    got = run(manager, attempts.launch(task))
    assert (got.succeeded, got.exit_code, _untimed(got.error)) == (
        expected.succeeded,
        expected.exit_code,
        _untimed(expected.error),
    )
    assert got.output_tail and "starting (" in got.output_tail  # the output was captured
    if task == "killed.py":
        assert (got.error or "").startswith("killed by signal 9 (SIGKILL): ")


def test_an_attempt_ends_as_an_interpreter_ends(
    manager: WorkerTaskManager, attempts: Attempts, tmp_path: Path
) -> None:
    # Forked attempts skip the interpreter's teardown: what it does that can be seen
    # (threads waited for, atexit callbacks, buffers flushed) must still happen.
    execed = WorkerTaskManager(log_dir=tmp_path, fork_server=False)
    try:
        expected = run(execed, attempts.launch("ends.py"))
    finally:
        execed.shutdown(kill=True)
    got = run(manager, attempts.launch("ends.py"))
    assert (got.succeeded, got.exit_code) == (expected.succeeded, expected.exit_code) == (True, 0)
    for outcome in (got, expected):
        tail = outcome.output_tail or ""
        for line in ("no newline at the end", "thread done", "atexit ran"):
            assert line in tail, tail


def _untimed(error: str | None) -> str | None:
    """``error`` without the time stamps of log lines it quotes."""
    return None if error is None else TIMESTAMP.sub("<time>", error)


def test_a_timeout_kills_the_attempts_whole_process_group(
    manager: WorkerTaskManager, attempts: Attempts, tmp_path: Path
) -> None:
    pidfile = tmp_path / "background.pid"
    launch = attempts.launch("group.sh", {"PIDFILE": str(pidfile)}, timeout=1)
    outcome = run(manager, launch)
    assert outcome.error == "timed out after 1s"
    assert gone(int(pidfile.read_text()))


def test_shutdown_with_kill_stops_the_attempts_whole_process_group(
    manager: WorkerTaskManager, attempts: Attempts, tmp_path: Path
) -> None:
    pidfile = tmp_path / "background.pid"
    manager.start(attempts.launch("group.sh", {"PIDFILE": str(pidfile)}))
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() != "", what="the task")
    [outcome] = manager.shutdown(kill=True)
    assert outcome.error == "stopped by scheduler shutdown (SIGTERM)"
    assert gone(int(pidfile.read_text()))


SCHEDULER = textwrap.dedent(
    """
    import sys, time
    from workflows_tick.config import load_registry
    from workflows_tick.managers.base import Launch
    from workflows_tick.managers.worker import WorkerTaskManager

    config, pidfile = sys.argv[1], sys.argv[2]
    dag = load_registry(config).get("d")
    manager = WorkerTaskManager()
    manager.start(Launch(1, 1, 1, dag, dag.task("group.sh"), config, {"PIDFILE": pidfile}))
    print(manager.fork_server.pid, flush=True)
    time.sleep(3600)
    """
)


def test_the_server_and_its_attempts_die_with_their_scheduler(
    attempts: Attempts, tmp_path: Path
) -> None:
    pidfile = tmp_path / "background.pid"
    scheduler = subprocess.Popen(
        [sys.executable, "-c", SCHEDULER, attempts.config, str(pidfile)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert scheduler.stdout is not None
        server = int(scheduler.stdout.readline())
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() != "", what="the task")
        attempt = next(
            int(p.name)
            for p in Path("/proc").iterdir()
            if p.name.isdigit() and _ppid(int(p.name)) == server
        )
    finally:
        scheduler.kill()
        scheduler.communicate()
    assert gone(server)
    assert gone(attempt)


def _ppid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _children_of(pid: int) -> list[int]:
    return [
        int(p.name)
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and _ppid(int(p.name)) == pid
    ]


def test_the_spare_process_is_replaced_when_it_dies_and_ends_with_the_server(
    manager: WorkerTaskManager, attempts: Attempts
) -> None:
    server = manager.fork_server
    assert server is not None and server.pid is not None
    first = report(run(manager, attempts.launch("report.py")))
    # Between attempts the server keeps one process forked ahead: the next attempt's.
    wait_for(lambda: len(_children_of(server.pid or 0)) == 1, what="the spare process")
    [spare] = _children_of(server.pid)
    assert spare != first["pid"]
    os.kill(spare, signal.SIGKILL)
    wait_for(lambda: not Path(f"/proc/{spare}").exists(), what="the killed spare to be reaped")
    second = report(run(manager, attempts.launch("report.py")))
    assert second["ppid"] == server.pid and second["pid"] != spare
    assert second["pgid"] == second["pid"] == second["sid"]
    wait_for(lambda: len(_children_of(server.pid or 0)) == 1, what="a new spare process")
    [replacement] = _children_of(server.pid)
    manager.shutdown(kill=True)
    assert gone(server.pid) and gone(replacement)


def test_a_server_that_cannot_start_means_new_interpreters_said_once(
    attempts: Attempts, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    python = tmp_path / "python"
    python.write_text(
        f'#!/bin/sh\n[ "$2" = workflows_tick.forkserver ] && exit 1\nexec {sys.executable} "$@"\n'
    )
    python.chmod(0o755)
    manager = WorkerTaskManager(python=str(python), log_dir=tmp_path)
    caplog.set_level(logging.WARNING, logger="workflows_tick.managers.worker")
    try:
        first = report(run(manager, attempts.launch("report.py")))
        second = report(run(manager, attempts.launch("report.py")))
    finally:
        manager.shutdown(kill=True)
    assert first["ppid"] == second["ppid"] == os.getpid()  # exec'd by this process
    warnings = [r.getMessage() for r in caplog.records if "fork server" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "new interpreter" in warnings[0]


def test_a_dying_server_fails_its_attempts_and_the_next_ones_are_execd(
    manager: WorkerTaskManager, attempts: Attempts, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = manager.fork_server
    assert server is not None and server.pid is not None
    pidfile = tmp_path / "background.pid"
    launch = attempts.launch("group.sh", {"PIDFILE": str(pidfile)})
    manager.start(launch)
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() != "", what="the task")
    caplog.set_level(logging.WARNING, logger="workflows_tick.managers.worker")
    os.kill(server.pid, signal.SIGKILL)
    outcome = run_to_completion(manager, [launch], limit=60)[launch.task_run_id]
    assert (outcome.succeeded, outcome.exit_code, outcome.error) == (
        False,
        None,
        SERVER_LOST_ERROR,
    )
    assert gone(int(pidfile.read_text()))  # it died with its server
    after = report(run(manager, attempts.launch("report.py")))
    also = report(run(manager, attempts.launch("report.py")))
    assert after["ppid"] == also["ppid"] == os.getpid()
    warnings = [r.getMessage() for r in caplog.records if "fork server" in r.getMessage()]
    assert len(warnings) == 1, warnings
