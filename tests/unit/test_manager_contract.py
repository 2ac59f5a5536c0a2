"""One contract, every TaskManager: the worker manager (real subprocesses), the
kubernetes manager on the in-memory backend (the test plays the kubelet), and the
instant manager.

Each harness builds its manager over the same DAG, whose tasks say how an attempt
behaves (``succeed``, ``fail``, ``hang``, ``slow``: hangs past its one-second
timeout), and moves its world one step at a time: real time for the worker
(``wait``), a fake clock for the others. The tests play the tick: they start
launches and poll with the rows the database would hold.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.support import write_project
from workflows_tick.dags import DagRegistry
from workflows_tick.managers.base import Launch, Outcome, PollResult, RunningTaskRun, TaskManager
from workflows_tick.managers.kubernetes import KubernetesTaskManager
from workflows_tick.managers.kubernetes.pods import TASK_ANNOTATION
from workflows_tick.managers.worker import WorkerTaskManager
from workflows_tick.testing import FakeClock, InMemoryBackend, InstantManager

DAG = {
    "workflow.yaml": "description: one task per behaviour\n",
    "succeed.sh": "# description: ends well\nexit 0\n",
    "fail.sh": "# description: ends badly\necho boom\nexit 3\n",
    "hang.sh": "# description: runs until stopped\nexec sleep 60\n",
    "slow.sh": "# description: runs past its timeout\n# timeout: 1\nexec sleep 60\n",
}
MAX_STEPS = 200
"""Steps of the world before a test gives up waiting (20 s of real time for the worker)."""


class Harness:
    """A manager, and the world around it moved one step at a time."""

    name: ClassVar[str]
    bounded: ClassVar[bool] = True
    """``capacity()`` counts the attempts this process runs (else ``global_limit`` caps)."""
    timeout_error: ClassVar[str]
    """What the error of an attempt stopped at its timeout says."""
    manager: TaskManager

    def __init__(self, registry: DagRegistry) -> None:
        self.registry = registry
        self._next_id = 0

    def launch(self, task: str) -> Launch:
        self._next_id += 1
        dag = self.registry.get("contract")
        return Launch(
            task_run_id=self._next_id,
            dag_run_id=1,
            attempt=1,
            dag=dag,
            task=dag.task(f"{task}.sh"),
            config="config.py",
            worker_config=self.registry.worker_config_for(dag, dag.task(f"{task}.sh")),
        )

    def step(self) -> None:
        """Let the world move on: time passes, attempts progress."""
        raise NotImplementedError

    def is_running(self, launch: Launch) -> bool:
        """The attempt's process (pod, pending entry) still exists."""
        raise NotImplementedError

    def close(self) -> None:
        self.manager.shutdown(kill=True)


class WorkerHarness(Harness):
    name = "worker"
    timeout_error = "timed out after 1s"

    def __init__(self, registry: DagRegistry, log_dir: Path) -> None:
        super().__init__(registry)
        self.manager = self.worker = WorkerTaskManager(
            concurrency=2,
            log_dir=log_dir,
            command=lambda launch: ["/bin/sh", "-c", launch.task.body],
            kill_grace=0.2,
            shutdown_grace=0.2,
        )

    def step(self) -> None:
        self.manager.wait(0.1)

    def is_running(self, launch: Launch) -> bool:
        child = self.worker._children.get(launch.task_run_id)
        if child is None:
            return False
        try:
            os.kill(child.pid, 0)
        except ProcessLookupError:
            return False
        return child.process.poll() is None


class ForkedWorkerHarness(WorkerHarness):
    """The worker manager as the scheduler runs it: real ``workflows CONFIG run``
    attempts forked from its fork server."""

    name = "forked worker"

    def __init__(self, registry: DagRegistry, log_dir: Path, config: Path) -> None:
        Harness.__init__(self, registry)
        self.config = str(config)
        self.manager = self.worker = WorkerTaskManager(
            concurrency=2, log_dir=log_dir, kill_grace=0.2, shutdown_grace=0.2
        )
        self.worker.start_fork_server()

    def launch(self, task: str) -> Launch:
        return dataclasses.replace(super().launch(task), config=self.config)

    def is_running(self, launch: Launch) -> bool:
        child = self.worker._children.get(launch.task_run_id)
        return child is not None and not child.exited


class KubernetesHarness(Harness):
    name = "kubernetes"
    bounded = False
    timeout_error = "DeadlineExceeded"
    SECONDS_PER_STEP = 5.0

    def __init__(self, registry: DagRegistry) -> None:
        super().__init__(registry)
        registry.worker_config["kube_image"] = "registry.example/tasks:1"
        self.clock = FakeClock(datetime(2026, 1, 1, 12, tzinfo=UTC))
        self.backend = InMemoryBackend(clock=self.clock)
        self.manager = KubernetesTaskManager(
            registry, max_running=2, backend=self.backend, clock=self.clock, retry_wait=0
        )

    def step(self) -> None:
        """Time passes, and the kubelet runs each pod as its task says."""
        self.clock.advance(self.SECONDS_PER_STEP)
        for (namespace, name), pod in list(self.backend.pods.items()):
            if pod["status"].get("phase") in ("Succeeded", "Failed"):
                continue
            task = pod["metadata"]["annotations"][TASK_ANNOTATION]
            deadline = pod["spec"].get("activeDeadlineSeconds")
            created = datetime.fromisoformat(pod["metadata"]["creationTimestamp"])
            if task == "succeed.sh":
                status = _terminated("Succeeded", 0)
            elif task == "fail.sh":
                status = _terminated("Failed", 3)
                self.backend.logs[name] = "boom\n"
            elif deadline and (self.clock() - created).total_seconds() > deadline:
                status = {"phase": "Failed", "reason": "DeadlineExceeded", "message": "too long"}
            else:
                status = {"phase": "Running"}
            self.backend.set_status(namespace, name, status)

    def is_running(self, launch: Launch) -> bool:
        name = self.manager.host_for(
            launch.task_run_id, launch.attempt, launch.dag.name, launch.task.name
        )
        return any(pod_name == name for _, pod_name in self.backend.pods)


class InstantHarness(Harness):
    name = "instant"
    timeout_error = "timed out after 1s"

    def __init__(self, registry: DagRegistry) -> None:
        super().__init__(registry)
        self.clock = FakeClock(datetime(2026, 1, 1, 12, tzinfo=UTC))
        outcomes = {"succeed.sh": True, "fail.sh": False}
        self.manager = self.instant = InstantManager(
            outcome=lambda launch: outcomes.get(launch.task.name),
            capacity=2,
            clock=self.clock,
        )

    def step(self) -> None:
        self.clock.advance(5)

    def is_running(self, launch: Launch) -> bool:
        return launch.task_run_id in self.instant._pending


def _terminated(phase: str, exit_code: int) -> dict[str, Any]:
    state = {
        "terminated": {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error"}
    }
    return {"phase": phase, "containerStatuses": [{"name": "task", "state": state}]}


@pytest.fixture(params=["worker", "forked worker", "kubernetes", "instant"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    registry = write_project(tmp_path / "dags", {"contract": DAG})
    made: Harness
    if request.param == "worker":
        (tmp_path / "logs").mkdir()
        made = WorkerHarness(registry, tmp_path / "logs")
    elif request.param == "forked worker":
        (tmp_path / "logs").mkdir()
        made = ForkedWorkerHarness(registry, tmp_path / "logs", tmp_path / "dags" / "config.py")
    elif request.param == "kubernetes":
        made = KubernetesHarness(registry)
    else:
        made = InstantHarness(registry)
    yield made
    made.close()


def row(harness: Harness, launch: Launch) -> RunningTaskRun:
    """The row the tick records before it starts ``launch``."""
    return RunningTaskRun(
        id=launch.task_run_id,
        dag_run_id=launch.dag_run_id,
        dag_name=launch.dag.name,
        task_name=launch.task.name,
        attempt=launch.attempt,
        host=harness.manager.host_for(
            launch.task_run_id, launch.attempt, launch.dag.name, launch.task.name
        ),
        started_at=_now(harness),
        lease_expires_at=None,
    )


def _now(harness: Harness) -> datetime:
    clock = getattr(harness, "clock", None)
    return clock() if clock is not None else datetime.now(UTC)


def start(harness: Harness, *tasks: str) -> list[Launch]:
    launches = [harness.launch(task) for task in tasks]
    for launch in launches:
        harness.manager.start(launch)
    return launches


def poll_until(
    harness: Harness,
    rows: Callable[[], Sequence[RunningTaskRun]],
    done: Callable[[PollResult], bool],
) -> list[PollResult]:
    """Play the tick: poll with ``rows()`` and step the world until ``done(result)``."""
    results = []
    for _ in range(MAX_STEPS):
        results.append(harness.manager.poll(rows()))
        if done(results[-1]):
            return results
        harness.step()
    raise AssertionError(f"{harness.name}: not done after {MAX_STEPS} steps: {results[-3:]}")


def outcome_of(results: Sequence[PollResult], launch: Launch) -> Outcome:
    (found,) = [o for r in results for o in r.finished if o.task_run_id == launch.task_run_id]
    return found


# --- start and poll ---------------------------------------------------------------------------


def test_a_started_attempt_that_ends_well_is_reported_succeeded(harness: Harness) -> None:
    (launch,) = start(harness, "succeed")
    rows = [row(harness, launch)]

    results = poll_until(harness, lambda: rows, lambda r: bool(r.finished))

    outcome = outcome_of(results, launch)
    assert outcome.succeeded
    assert outcome.exit_code == 0
    assert outcome.error is None
    assert harness.manager.host_for(1, 1, "contract", "succeed.sh")


def test_a_started_attempt_that_fails_is_reported_failed_with_one_line(harness: Harness) -> None:
    (launch,) = start(harness, "fail")
    rows = [row(harness, launch)]

    results = poll_until(harness, lambda: rows, lambda r: bool(r.finished))

    outcome = outcome_of(results, launch)
    assert not outcome.succeeded
    assert outcome.error
    assert "\n" not in outcome.error


def test_an_attempt_still_running_is_alive_at_every_poll(harness: Harness) -> None:
    (launch,) = start(harness, "hang")
    rows = [row(harness, launch)]

    for _ in range(5):
        result = harness.manager.poll(rows)
        assert list(result.alive) == [launch.task_run_id]
        assert list(result.finished) == []
        harness.step()
    assert harness.is_running(launch)


def test_an_outcome_is_reported_once(harness: Harness) -> None:
    done, running = start(harness, "succeed", "hang")
    rows = [row(harness, done), row(harness, running)]
    poll_until(harness, lambda: rows, lambda r: bool(r.finished))

    # The tick recorded the outcome: the row is no longer running.
    later = []
    for _ in range(3):
        harness.step()
        later.append(harness.manager.poll([row(harness, running)]))

    assert [o.task_run_id for r in later for o in r.finished] == []
    assert all(list(r.alive) == [running.task_run_id] for r in later)


# --- timeout and stop -------------------------------------------------------------------------


def test_an_attempt_past_its_timeout_is_stopped_and_reported_failed(harness: Harness) -> None:
    (launch,) = start(harness, "slow")
    rows = [row(harness, launch)]

    results = poll_until(harness, lambda: rows, lambda r: bool(r.finished))

    outcome = outcome_of(results, launch)
    assert not outcome.succeeded
    assert harness.timeout_error in (outcome.error or "")


def test_an_attempt_whose_row_is_no_longer_running_is_stopped(harness: Harness) -> None:
    (launch,) = start(harness, "hang")
    assert harness.manager.poll([row(harness, launch)]).alive == [launch.task_run_id]

    # Another scheduler failed the row (its lease ran out): polls no longer list it.
    results = poll_until(harness, list, lambda r: not harness.is_running(launch))

    assert all(launch.task_run_id not in r.alive for r in results)


def test_an_attempt_of_a_cancelled_run_is_stopped_and_reported_not_succeeded(
    harness: Harness,
) -> None:
    (launch,) = start(harness, "hang")
    cancelled = dataclasses.replace(row(harness, launch), cancelled=True)

    results = poll_until(harness, lambda: [cancelled], lambda r: bool(r.finished))

    assert not outcome_of(results, launch).succeeded  # the tick records it cancelled
    assert not harness.is_running(launch)


# --- capacity and shutdown --------------------------------------------------------------------


def test_capacity_counts_the_attempts_in_flight(harness: Harness) -> None:
    before = harness.manager.capacity()
    if not harness.bounded:
        # Attempts run elsewhere: the cap is global_limit, across every scheduler.
        start(harness, "hang", "hang")
        assert harness.manager.global_limit == 2
        assert harness.manager.capacity() == before
        return
    assert before == 2
    done, running = start(harness, "succeed", "hang")
    assert harness.manager.capacity() == 0
    assert harness.manager.in_flight() == 2

    rows = [row(harness, done), row(harness, running)]
    poll_until(harness, lambda: rows, lambda r: bool(r.finished))

    assert harness.manager.capacity() == 1
    assert harness.manager.in_flight() == 1


def test_shutdown_with_kill_leaves_nothing_in_flight(harness: Harness) -> None:
    (launch,) = start(harness, "hang")
    harness.manager.poll([row(harness, launch)])

    outcomes = harness.manager.shutdown(kill=True)

    assert harness.manager.in_flight() == 0
    if harness.bounded:
        # It ran the attempt itself: it stopped it, and says so.
        assert [(o.task_run_id, o.succeeded) for o in outcomes] == [(launch.task_run_id, False)]
        assert not harness.is_running(launch)
    else:
        # The pod runs on; the next pass of any scheduler reconciles it.
        assert list(outcomes) == []
        assert harness.is_running(launch)


def test_shutdown_without_kill_reports_how_attempts_ended(harness: Harness) -> None:
    (launch,) = start(harness, "succeed")

    outcomes = harness.manager.shutdown(kill=False)

    assert harness.manager.in_flight() == 0
    if harness.bounded:
        assert [(o.task_run_id, o.succeeded) for o in outcomes] == [(launch.task_run_id, True)]
    else:
        assert list(outcomes) == []
