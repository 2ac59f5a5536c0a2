"""Fakes for testing the scheduler and task managers without real time, processes or a cluster.

- :class:`FakeClock`: a clock the test moves by hand; pass it as ``clock=`` to
  :class:`~workflows_tick.tick.Ticker` or to the kubernetes manager.
- :class:`InstantManager`: a :class:`~workflows_tick.managers.base.TaskManager`
  that runs nothing; every attempt it starts finishes at the next poll.
- :class:`InMemoryBackend`: the Kubernetes API calls of the kubernetes manager,
  over pods kept in a dict; the test plays the kubelet with :meth:`InMemoryBackend.set_status`.

None of them touches the network, the disk or the database. See ``docs/managers.md``.
"""

from __future__ import annotations

import copy
import fnmatch
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from workflows_tick.errors import KubeApiError, KubeConflict, KubeNotFound, LaunchError
from workflows_tick.managers.base import Launch, Outcome, PollResult, RunningTaskRun, TaskManager
from workflows_tick.managers.kubernetes.backend import Pod

__all__ = ["FakeClock", "InMemoryBackend", "InstantManager"]


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
    dropped, as a real manager stops it. ``started`` lists every launch, in order.
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
        for lost in [i for i in self._pending if i not in rows]:
            del self._pending[lost]
        finished: list[Outcome] = []
        alive: list[int] = []
        for task_run_id, (launch, started) in list(self._pending.items()):
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
