"""Fakes for testing the scheduler and task managers without real time, processes or a cluster.

- :class:`FakeClock`: a clock the test moves by hand; pass it as ``clock=`` to
  :class:`~workflows_tick.tick.Ticker` or to the kubernetes manager.
- :class:`InstantManager`: a :class:`~workflows_tick.managers.base.TaskManager`
  that runs nothing; every attempt it starts finishes at the next poll.
- :class:`InMemoryBackend`: the Kubernetes API calls of the kubernetes manager,
  over pods kept in a dict; the test plays the kubelet with :meth:`InMemoryBackend.set_status`.

None of them touches the network, the disk or the database. For tests that do:

- :func:`write_project`: DAG folders and a ``config.py`` on disk, registered;
- :func:`workflows`: the real ``workflows`` command in a subprocess; :func:`query`:
  one SQL statement on its own connection; :func:`wait_for`: poll a condition;
- :data:`LEDGER_TASK`: a Python task that records each attempt in a ``ledger``
  table (:data:`LEDGER_TABLE`), to prove that no attempt ran twice;
- :func:`descendants`, :func:`still_alive`, :func:`processes_matching`: the
  processes a scheduler left behind (Linux ``/proc``).

See ``docs/managers.md``.
"""

from __future__ import annotations

import copy
import fnmatch
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from workflows_tick.dags import DagRegistry, register_directory
from workflows_tick.errors import KubeApiError, KubeConflict, KubeNotFound, LaunchError
from workflows_tick.managers.base import Launch, Outcome, PollResult, RunningTaskRun, TaskManager
from workflows_tick.managers.kubernetes.backend import Pod

__all__ = [
    "LEDGER_TABLE",
    "LEDGER_TASK",
    "FakeClock",
    "InMemoryBackend",
    "InstantManager",
    "descendants",
    "processes_matching",
    "query",
    "still_alive",
    "wait_for",
    "workflows",
    "write_project",
]


class FakeClock:
    """A clock that stands still until the test moves it with :meth:`advance`."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float = 0, **kwargs: float) -> datetime:
        """Move forward by ``seconds`` (and ``timedelta`` keywords: ``minutes=5``); the new time."""
        self.now += timedelta(seconds=seconds, **kwargs)
        return self.now


class InstantManager(TaskManager):
    """Runs nothing: every started attempt finishes at the next poll.

    ``outcome(launch)`` decides how an attempt ends: True succeeded (the
    default), False failed, None still running (reported alive, asked again at
    the next poll). An attempt still running past its task's ``timeout`` on
    ``clock`` fails with ``timed out after <N>s``. ``fail_launch(launch)`` makes
    :meth:`start` raise :class:`~workflows_tick.errors.LaunchError`; with
    ``finish=False`` every attempt stays running until ``finish`` is set again.
    An attempt whose row is no longer running (another scheduler failed it) is
    dropped, as a real manager stops it; one whose run was cancelled is reported
    failed at once (the tick records it cancelled). ``started`` lists every launch,
    in order.
    """

    name: ClassVar[str] = "test"

    def __init__(
        self,
        outcome: Callable[[Launch], bool | None] = lambda launch: True,
        capacity: int = 1000,
        fail_launch: Callable[[Launch], bool] = lambda launch: False,
        finish: bool = True,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.outcome = outcome
        self._capacity = capacity
        self.fail_launch = fail_launch
        self.finish = finish
        self._clock = clock or (lambda: datetime.now(UTC))
        self.started: list[Launch] = []
        self._pending: dict[int, tuple[Launch, datetime]] = {}

    def capacity(self) -> int:
        return max(0, self._capacity - len(self._pending))

    def host_for(self, task_run_id: int, attempt: int, dag_name: str, task_name: str) -> str:
        return f"test-{task_run_id}-{attempt}"

    def start(self, launch: Launch) -> None:
        if self.fail_launch(launch):
            raise LaunchError("no room at the inn")
        self.started.append(launch)
        self._pending[launch.task_run_id] = (launch, self._clock())

    def poll(self, running: Sequence[RunningTaskRun]) -> PollResult:
        rows = {row.id for row in running}
        cancelled = {row.id for row in running if row.cancelled}
        for lost in [i for i in self._pending if i not in rows]:
            del self._pending[lost]
        finished: list[Outcome] = []
        alive: list[int] = []
        for task_run_id, (launch, started) in list(self._pending.items()):
            if task_run_id in cancelled:  # stopped at once, as a real manager stops it
                finished.append(Outcome(task_run_id, succeeded=False, error="cancelled"))
                del self._pending[task_run_id]
                continue
            outcome = self._end(launch, started)
            if outcome is None:
                alive.append(task_run_id)
            else:
                finished.append(outcome)
                del self._pending[task_run_id]
        return PollResult(finished=finished, alive=alive)

    def _end(self, launch: Launch, started: datetime) -> Outcome | None:
        """How the attempt ended, or None while it runs."""
        succeeded = self.outcome(launch) if self.finish else None
        if succeeded is None:
            timeout = launch.timeout
            if timeout is None or (self._clock() - started).total_seconds() <= timeout:
                return None
            error = f"timed out after {timeout:g}s"
            return Outcome(launch.task_run_id, succeeded=False, error=error)
        return Outcome(
            launch.task_run_id,
            succeeded=succeeded,
            exit_code=0 if succeeded else 1,
            error=None if succeeded else "it failed",
        )

    def in_flight(self) -> int:
        return len(self._pending)

    def shutdown(self, kill: bool) -> Sequence[Outcome]:
        """With ``kill``, every attempt still running is reported failed; otherwise
        each is reported as ``outcome`` says (failed if it would still run)."""
        pending, self._pending = self._pending, {}
        if kill:
            return [Outcome(i, succeeded=False, error="stopped by shutdown") for i in pending]
        return [
            Outcome(i, succeeded=bool(self.finish and self.outcome(launch)))
            for i, (launch, _) in pending.items()
        ]

    def ran(self) -> list[tuple[str, str, int]]:
        """(DAG, task, attempt) of every launch, in order."""
        return [(launch.dag.name, launch.task.name, launch.attempt) for launch in self.started]


class InMemoryBackend:
    """Pods in a dict, for tests of the manager's decisions.

    ``fail_next`` queues errors: each call of a verb (create, list, delete, log)
    first pops the next error queued for it and raises it. ``logs`` maps a pod
    name to its output. Pods get ``creationTimestamp`` from ``clock``.
    """

    def __init__(
        self,
        default_namespace: str = "default",
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.default_namespace = default_namespace
        self.pods: dict[tuple[str, str], Pod] = {}
        self.logs: dict[str, str] = {}
        self.calls: list[tuple[str, str, str]] = []
        """(verb, namespace, name or selector), in order."""
        self.fail_next: dict[str, list[KubeApiError]] = {}
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()

    def _maybe_fail(self, verb: str) -> None:
        queue = self.fail_next.get(verb)
        if queue:
            raise queue.pop(0)

    def create_pod(self, namespace: str, body: Mapping[str, Any]) -> None:
        with self._lock:
            name = body["metadata"]["name"]
            self.calls.append(("create", namespace, name))
            self._maybe_fail("create")
            if (namespace, name) in self.pods:
                raise KubeConflict(409, "AlreadyExists", f'pods "{name}" already exists')
            pod: Pod = copy.deepcopy(dict(body))
            pod["metadata"]["namespace"] = namespace
            pod["metadata"]["creationTimestamp"] = self._clock().strftime("%Y-%m-%dT%H:%M:%SZ")
            pod["status"] = {"phase": "Pending"}
            self.pods[(namespace, name)] = pod

    def list_pods(self, namespace: str, label_selector: str) -> list[Pod]:
        with self._lock:
            self.calls.append(("list", namespace, label_selector))
            self._maybe_fail("list")
            wanted = dict(part.split("=", 1) for part in label_selector.split(",") if part)
            return [
                copy.deepcopy(pod)
                for (ns, _), pod in self.pods.items()
                if ns == namespace
                and all(
                    fnmatch.fnmatchcase(str((pod["metadata"].get("labels") or {}).get(k)), v)
                    for k, v in wanted.items()
                )
            ]

    def delete_pod(self, namespace: str, name: str) -> None:
        with self._lock:
            self.calls.append(("delete", namespace, name))
            self._maybe_fail("delete")
            self.pods.pop((namespace, name), None)

    def read_pod_log(self, namespace: str, name: str, tail_lines: int, limit_bytes: int) -> str:
        with self._lock:
            self.calls.append(("log", namespace, name))
            self._maybe_fail("log")
            if (namespace, name) not in self.pods:
                raise KubeNotFound(404, "NotFound", f'pods "{name}" not found')
            lines = self.logs.get(name, "").splitlines(keepends=True)
            return "".join(lines[-tail_lines:])[-limit_bytes:]

    def close(self) -> None:
        pass

    # -- helpers for tests: what a kubelet would do --

    def set_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        with self._lock:
            self.pods[(namespace, name)]["status"] = copy.deepcopy(dict(status))

    def set_created(self, namespace: str, name: str, when: datetime) -> None:
        with self._lock:
            meta = self.pods[(namespace, name)]["metadata"]
            meta["creationTimestamp"] = when.strftime("%Y-%m-%dT%H:%M:%SZ")


# -- DAG projects, the real command, its database and its processes ------------------------


def write_project(root: Path, dags: Mapping[str, Mapping[str, str]]) -> DagRegistry:
    """Write DAG folders (``{dag: {file: text}}``) under ``root`` and register them."""
    for dag, files in dags.items():
        folder = root / dag
        folder.mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            (folder / name).write_text(textwrap.dedent(content))
    (root / "config.py").write_text(
        "import os\nfrom workflows_tick import dags\n"
        "DAGS = dags.register_directory(os.path.dirname(__file__))\n"
    )
    return register_directory(root)


LEDGER_TABLE = "CREATE TABLE IF NOT EXISTS ledger (task_run_id bigint, attempt int, pid int)"

LEDGER_TASK = '''"""
parameters: [DATABASE_URL, WORKFLOWS_TASK_RUN_ID, WORKFLOWS_ATTEMPT]
{extra}
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
"""A Python task that appends one ledger row per attempt: ``.format(body=..., extra=...)``."""


def workflows(
    *args: str | Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run the real ``workflows`` command (this interpreter's) to completion.

    ``env`` is its whole environment (default: this process's).
    """
    return subprocess.run(
        [sys.executable, "-m", "workflows_tick", *map(str, args)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def query(url: str, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
    """Run one statement on its own connection, committed; its rows (or [])."""
    import psycopg2

    conn = psycopg2.connect(url, connect_timeout=5)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def wait_for(
    check: Callable[[], bool], timeout: float = 30, what: str = "condition", step: float = 0.05
) -> float:
    """Seconds until ``check()`` held; TimeoutError after ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(step)
    raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")


def _stat(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, state, start time in clock ticks) of ``pid``, or None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), fields[0], int(fields[19])


def descendants(root: int) -> dict[int, int]:
    """Every live descendant of ``root``: pid -> start time (to tell a reused pid apart)."""
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
    """The pids of ``processes`` (pid -> start time) still running; zombies count as gone."""
    return [
        pid
        for pid, start in processes.items()
        if (info := _stat(pid)) is not None and info[1] != "Z" and info[2] == start
    ]


def processes_matching(text: str) -> list[int]:
    """Pids of live processes whose command line contains ``text``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        info = _stat(int(proc.name))
        if info is not None and info[1] != "Z" and text in cmdline:
            found.append(int(proc.name))
    return found
