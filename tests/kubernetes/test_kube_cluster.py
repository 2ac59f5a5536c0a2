"""Against a real cluster: set WORKFLOWS_TEST_KUBECONFIG (and optionally
WORKFLOWS_TEST_NAMESPACE, default "default"). Skipped otherwise.

The pod runs ``sh -c 'echo task ran'`` (kube_command) so any small image with a
shell works (WORKFLOWS_TEST_IMAGE, default busybox); the workflows args become
the shell's positional parameters and are ignored.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from tests.support import wait_for
from workflows_tick.dags import DagRegistry
from workflows_tick.managers.base import Launch, RunningTaskRun
from workflows_tick.managers.kubernetes import KubernetesTaskManager
from workflows_tick.managers.kubernetes.backend import ClientBackend

KUBECONFIG = os.environ.get("WORKFLOWS_TEST_KUBECONFIG")

pytestmark = [
    pytest.mark.kubernetes_cluster,
    pytest.mark.skipif(not KUBECONFIG, reason="WORKFLOWS_TEST_KUBECONFIG is not set"),
]


def test_a_pod_runs_and_is_reported(project: Callable[..., DagRegistry]) -> None:
    namespace = os.environ.get("WORKFLOWS_TEST_NAMESPACE", "default")
    registry = project(
        {"cluster_check": {"tasks": {"echo.yaml": {"timeout": 120}}}},
        kube_image=os.environ.get("WORKFLOWS_TEST_IMAGE", "busybox:1.36"),
        kube_command=["sh", "-c", "echo task ran"],
        kube_namespace=namespace,
    )
    backend = ClientBackend(config_file=KUBECONFIG)
    manager = KubernetesTaskManager(registry, max_running=1, backend=backend, grace=0)
    dag = registry.get("cluster_check")
    task = dag.task("echo.yaml")
    task_run_id = uuid.uuid4().int % 10**9
    manager.start(
        Launch(task_run_id, 1, 1, dag, task, "config.py",
               worker_config=registry.worker_config_for(dag, task))
    )  # fmt: skip
    row = RunningTaskRun(task_run_id, 1, dag.name, task.name, 1, None, datetime.now(UTC), None)
    finished = []

    def pod_finished() -> bool:
        finished.extend(manager.poll([row]).finished)
        return bool(finished)

    wait_for(pod_finished, timeout=180, what="the pod to finish", step=2)
    (outcome,) = finished
    assert outcome.succeeded, outcome.error
    assert "task ran" in (outcome.output_tail or "")
    manager.poll([])  # deletes the finished pod
    backend.close()
