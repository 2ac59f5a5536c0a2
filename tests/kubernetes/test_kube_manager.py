"""The kubernetes manager's decisions, against the in-memory backend (no HTTP)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from workflows_tick import logs
from workflows_tick.dags import DagRegistry
from workflows_tick.errors import (
    KubeApiError,
    KubeConflict,
    KubeForbidden,
    KubernetesPermissionError,
    KubeTransientError,
    LaunchError,
)
from workflows_tick.managers.base import Launch, RunningTaskRun
from workflows_tick.managers.kubernetes import KubernetesTaskManager
from workflows_tick.managers.kubernetes.pods import MANAGED_SELECTOR
from workflows_tick.testing import FakeClock, InMemoryBackend

DAGS = {
    "etl": {
        "workflow": {"worker_config": {"kube_env": {"STAGE": "prod"}}},
        "tasks": {
            "load.yaml": {"timeout": 90},
            "report.yaml": {"inputs": ["load.yaml"], "worker_config": {"kube_namespace": "jobs"}},
        },
    },
}


class Harness:
    """A manager over the in-memory backend, plus what the tick would do around it."""

    def __init__(self, registry: DagRegistry, clock: FakeClock, **kwargs: Any) -> None:
        self.registry = registry
        self.clock = clock
        self.backend = InMemoryBackend(clock=clock)
        self.manager = KubernetesTaskManager(
            registry, max_running=5, backend=self.backend, clock=clock, retry_wait=0, **kwargs
        )
        self.rows: dict[int, RunningTaskRun] = {}

    def launch(
        self, dag: str, task: str, task_run_id: int, attempt: int = 1, **parameters: str
    ) -> str:
        loaded = self.registry.get(dag)
        launch = Launch(
            task_run_id=task_run_id,
            dag_run_id=1,
            attempt=attempt,
            dag=loaded,
            task=loaded.task(task),
            config="/app/config.py",
            parameters=parameters,
            worker_config=self.registry.worker_config_for(loaded, loaded.task(task)),
        )
        host = self.manager.host_for(task_run_id, attempt, dag, task)
        self.rows[task_run_id] = RunningTaskRun(
            id=task_run_id,
            dag_run_id=1,
            dag_name=dag,
            task_name=task,
            attempt=attempt,
            host=host,
            started_at=self.clock(),
            lease_expires_at=None,
        )
        self.manager.start(launch)
        return host

    def poll(self) -> tuple[dict[int, Any], list[int]]:
        result = self.manager.poll(list(self.rows.values()))
        finished = {o.task_run_id: o for o in result.finished}
        for task_run_id in finished:
            self.rows.pop(task_run_id)  # the tick records it: no longer running
        return finished, list(result.alive)

    def pod(self, name: str, namespace: str = "default") -> dict[str, Any]:
        return self.backend.pods[(namespace, name)]


@pytest.fixture
def harness(project: Callable[..., DagRegistry], clock: FakeClock) -> Harness:
    return Harness(project(DAGS, kube_image="registry.example/etl:1"), clock)


def terminated(phase: str, exit_code: int, reason: str) -> dict[str, Any]:
    return {
        "phase": phase,
        "containerStatuses": [
            {"name": "task", "state": {"terminated": {"exitCode": exit_code, "reason": reason}}}
        ],
    }


def test_pod_spec_follows_the_launch(harness: Harness) -> None:
    name = harness.launch("etl", "load.yaml", 7, GREETING="hi")
    pod = harness.pod(name)
    container = pod["spec"]["containers"][0]
    assert container["args"] == ["workflows", "/app/config.py", "run", "etl", "-o", "load.yaml"]
    assert "command" not in container
    assert {"name": "GREETING", "value": "hi"} in container["env"]
    assert {"name": "STAGE", "value": "prod"} in container["env"]
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["activeDeadlineSeconds"] == 90
    labels = pod["metadata"]["labels"]
    assert labels["workflows-tick/task-run"] == "7"
    assert labels["workflows-tick/attempt"] == "1"
    assert labels["app.kubernetes.io/managed-by"] == "workflows-tick"
    assert name.startswith("etl-load-yaml-") and name.endswith("-7-1")


def test_task_namespace_and_listing_once_per_namespace(harness: Harness) -> None:
    harness.launch("etl", "load.yaml", 1)
    harness.launch("etl", "report.yaml", 2)
    assert {ns for ns, _ in harness.backend.pods} == {"default", "jobs"}
    harness.backend.calls.clear()
    _, alive = harness.poll()
    assert sorted(alive) == [1, 2]
    lists = [c for c in harness.backend.calls if c[0] == "list"]
    assert sorted(lists) == [
        ("list", "default", MANAGED_SELECTOR),
        ("list", "jobs", MANAGED_SELECTOR),
    ]
    assert [c for c in harness.backend.calls if c[0] != "list"] == []


def test_success_reads_the_log_then_deletes_once_recorded(harness: Harness) -> None:
    name = harness.launch("etl", "load.yaml", 1)
    harness.backend.logs[name] = "".join(f"line {i}\n" for i in range(500))
    harness.backend.set_status("default", name, terminated("Succeeded", 0, "Completed"))
    finished, alive = harness.poll()
    assert alive == []
    outcome = finished[1]
    assert outcome.succeeded and outcome.exit_code == 0
    assert outcome.output_tail is not None
    assert outcome.output_tail.splitlines()[-1] == "line 499"
    assert len(outcome.output_tail.splitlines()) == 200
    # Reported, not yet deleted: the row is still running in the database until recorded.
    assert ("default", name) in harness.backend.pods
    harness.clock.advance(31)
    harness.poll()
    assert ("default", name) not in harness.backend.pods
    verbs = [c[0] for c in harness.backend.calls if c[2] == name]
    assert verbs.index("log") < verbs.index("delete")


def test_failure_reports_exit_code_and_reason(harness: Harness) -> None:
    name = harness.launch("etl", "load.yaml", 1)
    harness.backend.logs[name] = "Killed\n"
    harness.backend.set_status("default", name, terminated("Failed", 137, "OOMKilled"))
    finished, _ = harness.poll()
    outcome = finished[1]
    assert not outcome.succeeded
    assert outcome.exit_code == 137
    assert outcome.error is not None and "OOMKilled" in outcome.error and "137" in outcome.error
    assert outcome.output_tail == "Killed\n"


def test_deadline_exceeded_is_the_pod_reason(harness: Harness) -> None:
    name = harness.launch("etl", "load.yaml", 1)
    harness.backend.set_status(
        "default",
        name,
        {"phase": "Failed", "reason": "DeadlineExceeded", "message": "Pod was active too long"},
    )
    finished, _ = harness.poll()
    assert finished[1].error is not None and "DeadlineExceeded" in finished[1].error


@pytest.mark.parametrize(
    "status",
    [
        {"containerStatuses": [{"name": "task", "state": {"waiting": {"reason": reason}}}]}
        for reason in (
            "ErrImagePull",
            "ImagePullBackOff",
            "CreateContainerConfigError",
            "InvalidImageName",
        )
    ]
    + [
        {
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/3 nodes are available: 3 Insufficient cpu.",
                }
            ]
        }
    ],
)
def test_stuck_pending_fails_after_the_timeout(harness: Harness, status: dict[str, Any]) -> None:
    name = harness.launch("etl", "load.yaml", 1)
    harness.backend.set_status("default", name, {"phase": "Pending", **status})
    harness.clock.advance(299)
    finished, alive = harness.poll()
    assert finished == {} and alive == [1]
    harness.clock.advance(2)
    finished, alive = harness.poll()
    reason = (
        status.get("containerStatuses") or [{"state": {"waiting": {"reason": "Unschedulable"}}}]
    )[0]["state"]["waiting"]["reason"]
    assert alive == []
    assert finished[1].error is not None and reason in finished[1].error


def test_pending_timeout_is_a_per_task_option(
    project: Callable[..., DagRegistry], clock: FakeClock
) -> None:
    dags = {"d": {"tasks": {"t.yaml": {"worker_config": {"kube_pending_timeout": 10}}}}}
    h = Harness(project(dags, kube_image="img"), clock)
    name = h.launch("d", "t.yaml", 1)
    h.backend.set_status(
        "default",
        name,
        {
            "phase": "Pending",
            "containerStatuses": [{"state": {"waiting": {"reason": "ErrImagePull"}}}],
        },
    )
    clock.advance(11)
    finished, _ = h.poll()
    assert "ErrImagePull" in (finished[1].error or "")


def test_plain_pending_is_alive_however_long(harness: Harness) -> None:
    harness.launch("etl", "load.yaml", 1)
    harness.clock.advance(3600)
    finished, alive = harness.poll()
    assert finished == {} and alive == [1]


def test_vanished_pod_fails_only_after_the_grace(harness: Harness) -> None:
    name = harness.launch("etl", "load.yaml", 1)
    harness.backend.delete_pod("default", name)
    harness.clock.advance(10)
    finished, alive = harness.poll()
    assert finished == {} and alive == []  # maybe another replica has not created it yet
    harness.clock.advance(21)
    finished, _ = harness.poll()
    assert finished[1].error == f"pod {name} vanished (deleted or evicted)"


def test_row_committed_before_its_pod_is_created_is_left_alone(harness: Harness) -> None:
    harness.rows[9] = RunningTaskRun(9, 1, "etl", "load.yaml", 1, "x", harness.clock(), None)
    finished, alive = harness.poll()
    assert finished == {} and alive == []


def test_orphan_pods_are_deleted_after_the_grace(harness: Harness) -> None:
    old = harness.launch("etl", "load.yaml", 1)
    harness.rows.clear()  # e.g. its lease expired and the tick failed it
    harness.poll()
    assert ("default", old) in harness.backend.pods  # young: maybe another replica's
    harness.clock.advance(31)
    harness.poll()
    assert ("default", old) not in harness.backend.pods


def test_an_orphan_pod_of_unknown_age_is_deleted_at_once(harness: Harness) -> None:
    old = harness.launch("etl", "load.yaml", 1)
    del harness.pod(old)["metadata"]["creationTimestamp"]
    harness.rows.clear()
    harness.poll()
    assert ("default", old) not in harness.backend.pods


def test_pod_of_an_older_attempt_is_an_orphan(harness: Harness) -> None:
    first = harness.launch("etl", "load.yaml", 1, attempt=1)
    harness.clock.advance(31)
    second = harness.launch("etl", "load.yaml", 1, attempt=2)
    _, alive = harness.poll()
    assert alive == [1]
    assert ("default", first) not in harness.backend.pods
    assert ("default", second) in harness.backend.pods


def test_unlabelled_and_foreign_pods_are_ignored(harness: Harness) -> None:
    harness.backend.pods[("default", "other")] = {
        "metadata": {"name": "other", "namespace": "default", "labels": {"app": "x"}},
        "status": {"phase": "Running"},
    }
    harness.clock.advance(100)
    harness.poll()
    assert ("default", "other") in harness.backend.pods


def test_existing_pod_is_adopted(harness: Harness, clock: FakeClock) -> None:
    host = harness.launch("etl", "load.yaml", 1)
    # A scheduler that restarts before it recorded the start creates the pod again.
    harness.manager = KubernetesTaskManager(
        harness.registry, max_running=5, backend=harness.backend, clock=clock, retry_wait=0
    )
    assert harness.launch("etl", "load.yaml", 1) == host  # the 409 is no launch error
    assert [c[0] for c in harness.backend.calls] == ["create", "create"]
    assert list(harness.backend.pods) == [("default", host)]
    assert harness.poll() == ({}, [1])


def test_create_retries_transient_errors_then_adopts(harness: Harness) -> None:
    # The first request timed out after the server stored the pod: the retry sees 409.
    harness.backend.fail_next["create"] = [
        KubeTransientError(None, "ReadTimeoutError", "read timed out"),
        KubeConflict(409, "AlreadyExists", "exists"),
    ]
    harness.launch("etl", "load.yaml", 1)
    assert [c[0] for c in harness.backend.calls] == ["create", "create"]


def test_invalid_pod_is_a_launch_error_with_the_api_message(harness: Harness) -> None:
    harness.backend.fail_next["create"] = [
        KubeApiError(422, "Invalid", 'Pod "x" is invalid: spec.containers[0].image: Required value')
    ]
    with pytest.raises(LaunchError, match=r"spec\.containers"):
        harness.launch("etl", "load.yaml", 1)


def test_create_forbidden_is_one_clear_line(harness: Harness) -> None:
    harness.backend.fail_next["create"] = [KubeForbidden(403, "Forbidden", "...")]
    with pytest.raises(KubernetesPermissionError) as info:
        harness.launch("etl", "load.yaml", 1)
    assert str(info.value) == (
        'cannot create pods in namespace "default": grant the role verbs [create] on pods'
    )


def test_list_forbidden_is_one_clear_line(harness: Harness) -> None:
    harness.launch("etl", "report.yaml", 1)
    harness.backend.fail_next["list"] = [KubeForbidden(403, "Forbidden", "...")]
    with pytest.raises(
        KubernetesPermissionError,
        match=r'cannot list pods in namespace "default": grant the role verbs \[list\] on pods',
    ):
        harness.poll()


def test_transient_list_errors_are_retried(harness: Harness) -> None:
    harness.launch("etl", "load.yaml", 1)
    harness.backend.fail_next["list"] = [KubeTransientError(500, "Internal", "etcd")] * 2
    _, alive = harness.poll()
    assert alive == [1]


def test_listing_down_fails_nothing_and_renews_nothing(harness: Harness) -> None:
    name = harness.launch("etl", "load.yaml", 1)
    harness.backend.delete_pod("default", name)
    harness.clock.advance(100)
    harness.backend.fail_next["list"] = [KubeTransientError(503, "Unavailable", "down")] * 4
    finished, alive = harness.poll()
    assert finished == {} and alive == []


def test_kube_env_values_never_reach_errors_or_logs(
    project: Callable[..., DagRegistry], clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "s3cr3t-token-value"
    h = Harness(project(DAGS, kube_image="img", kube_env={"API_TOKEN": secret}), clock)
    h.backend.fail_next["create"] = [KubeApiError(422, "Invalid", f"env value {secret} is bad")]
    with pytest.raises(LaunchError) as info:
        h.launch("etl", "load.yaml", 1)
    assert secret not in str(info.value)
    h.backend.fail_next["create"] = [KubeTransientError(None, "Timeout", f"{secret}")] * 4
    with caplog.at_level(logging.INFO), pytest.raises(LaunchError) as info:
        h.launch("etl", "load.yaml", 2)
    assert secret not in str(info.value)
    assert secret not in caplog.text


def test_plain_kube_env_values_do_not_mask_log_lines(
    project: Callable[..., DagRegistry], clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only secrets are masked in logs: an ordinary value such as INFO is not one.
    monkeypatch.setattr(logs, "_SECRETS", set())
    Harness(project(DAGS, kube_image="img", kube_env={"LOG_LEVEL": "INFO"}), clock)
    record = logging.LogRecord("workflows_tick.tick", logging.INFO, "x", 1, "pass", None, None)
    line = logs._RedactingFormatter("%(levelname)s %(name)s: %(message)s").format(record)
    assert line == "INFO workflows_tick.tick: pass"


def test_missing_image_is_a_launch_error(
    project: Callable[..., DagRegistry], clock: FakeClock
) -> None:
    h = Harness(project(DAGS), clock)
    with pytest.raises(LaunchError, match="kube_image is not set"):
        h.launch("etl", "load.yaml", 1)


def test_capacity_and_global_limit(harness: Harness) -> None:
    assert harness.manager.global_limit == 5
    assert harness.manager.capacity() >= 1000


def test_started_at_without_timezone_is_utc(harness: Harness) -> None:
    harness.rows[3] = RunningTaskRun(
        3, 1, "etl", "load.yaml", 1, None, datetime(2026, 1, 1, 11, 0), None
    )
    finished, _ = harness.poll()
    assert 3 in finished


def cancel(harness: Harness, task_run_id: int) -> None:
    row = harness.rows[task_run_id]
    harness.rows[task_run_id] = RunningTaskRun(
        row.id,
        row.dag_run_id,
        row.dag_name,
        row.task_name,
        row.attempt,
        row.host,
        row.started_at,
        row.lease_expires_at,
        cancelled=True,
    )


@pytest.mark.parametrize("phase", ["Pending", "Running"])
def test_cancelled_attempt_has_its_pod_deleted_at_once(harness: Harness, phase: str) -> None:
    name = harness.launch("etl", "load.yaml", 1)
    harness.backend.set_status("default", name, {"phase": phase})
    cancel(harness, 1)
    finished, alive = harness.poll()
    assert alive == []
    assert finished[1].error == f"cancelled: pod {name} deleted"
    assert not finished[1].succeeded
    assert ("default", name) not in harness.backend.pods


def test_cancelled_attempt_whose_pod_succeeded_keeps_its_success(harness: Harness) -> None:
    name = harness.launch("etl", "load.yaml", 1)
    harness.backend.set_status("default", name, terminated("Succeeded", 0, "Completed"))
    cancel(harness, 1)
    finished, _ = harness.poll()
    assert finished[1].succeeded


def test_cancelled_attempt_without_a_pod_ends_without_waiting_for_the_grace(
    harness: Harness,
) -> None:
    harness.rows[9] = RunningTaskRun(
        9, 1, "etl", "load.yaml", 1, "x", harness.clock(), None, cancelled=True
    )
    finished, alive = harness.poll()
    assert alive == [] and not finished[9].succeeded


def test_cancelled_pod_that_cannot_be_deleted_stays_alive_until_it_can(
    harness: Harness,
) -> None:
    name = harness.launch("etl", "load.yaml", 1)
    cancel(harness, 1)
    harness.backend.fail_next["delete"] = [KubeTransientError(500, "InternalError", "etcd")] * 4
    finished, alive = harness.poll()
    assert finished == {} and alive == [1]
    finished, _ = harness.poll()
    assert 1 in finished and ("default", name) not in harness.backend.pods
