"""The manager with the real ``kubernetes`` client over HTTPS against the kmock emulator."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.kubernetes.kube_emulator import PODS, EmulatorThread, FakeKubelet, Fault
from tests.support import wait_for
from workflows_tick.dags import DagRegistry
from workflows_tick.errors import KubernetesPermissionError
from workflows_tick.managers.base import Launch, RunningTaskRun
from workflows_tick.managers.kubernetes import KubernetesTaskManager
from workflows_tick.managers.kubernetes import backend as kube_backend
from workflows_tick.managers.kubernetes.backend import ClientBackend

DAGS = {
    "fan": {
        "tasks": {
            "start.yaml": {},
            "left.yaml": {"inputs": ["start.yaml"]},
            "right.yaml": {"inputs": ["start.yaml"], "worker_config": {"kube_namespace": "jobs"}},
        }
    }
}


@pytest.fixture
def kubeconfig(emu: EmulatorThread, tmp_path: Path) -> Path:
    return emu.write_kubeconfig(tmp_path / "kubeconfig", namespace="default")


@pytest.fixture
def backends(emu: EmulatorThread) -> Iterator[list[Any]]:
    """Backends to close before the emulator stops (no socket left open)."""
    opened: list[Any] = []
    yield opened
    for backend in opened:
        backend.close()


@pytest.fixture
def registry(project: Callable[..., DagRegistry]) -> DagRegistry:
    return project(DAGS, kube_image="registry.example/app:1")


def make_manager(
    registry: DagRegistry, kubeconfig: Path, backends: list[Any], **kwargs: Any
) -> KubernetesTaskManager:
    backend = ClientBackend(config_file=str(kubeconfig), request_timeout=(2.0, 1.0))
    backends.append(backend)
    kwargs.setdefault("retry_wait", 0.01)
    return KubernetesTaskManager(registry, max_running=10, backend=backend, **kwargs)


class Rows:
    """The running rows the tick would hand to poll."""

    def __init__(self, manager: KubernetesTaskManager, registry: DagRegistry) -> None:
        self.manager, self.registry = manager, registry
        self.rows: dict[int, RunningTaskRun] = {}

    def start(self, dag: str, task: str, task_run_id: int, attempt: int = 1, ago: float = 0) -> str:
        loaded = self.registry.get(dag)
        host = self.manager.host_for(task_run_id, attempt, dag, task)
        started = datetime.now(UTC) - timedelta(seconds=ago)
        self.rows[task_run_id] = RunningTaskRun(
            task_run_id, 1, dag, task, attempt, host, started, None
        )
        self.manager.start(
            Launch(
                task_run_id=task_run_id,
                dag_run_id=1,
                attempt=attempt,
                dag=loaded,
                task=loaded.task(task),
                config="config.py",
                parameters={"RUN_DATE": "2026-01-01"},
                worker_config=self.registry.worker_config_for(loaded, loaded.task(task)),
            )
        )
        return host

    def poll(self) -> tuple[dict[int, Any], list[int]]:
        result = self.manager.poll(list(self.rows.values()))
        for outcome in result.finished:
            self.rows.pop(outcome.task_run_id)
        return {o.task_run_id: o for o in result.finished}, list(result.alive)


def test_kubeconfig_lifecycle_with_a_fake_kubelet(
    emu: EmulatorThread, kubeconfig: Path, registry: DagRegistry, backends: list[Any]
) -> None:
    manager = make_manager(registry, kubeconfig, backends, grace=0.0)
    assert manager.backend.default_namespace == "default"
    rows = Rows(manager, registry)
    left = rows.start("fan", "left.yaml", 1)
    right = rows.start("fan", "right.yaml", 2)
    emu.emulator.logs[left] = "left says hi\n"
    emu.emulator.logs[right] = "right breaks\n"
    outcome_of = {left: 0, right: 3}
    finished: dict[int, Any] = {}
    with FakeKubelet(kubeconfig, ["default", "jobs"], lambda p: outcome_of[p["metadata"]["name"]]):

        def all_finished() -> bool:
            finished.update(rows.poll()[0])
            return not rows.rows

        wait_for(all_finished, what="both pods to finish")
    assert finished[1].succeeded and finished[1].output_tail == "left says hi\n"
    assert not finished[2].succeeded and finished[2].exit_code == 3
    assert finished[2].output_tail == "right breaks\n"
    # The server saw our bearer token and the pod we built.
    create = emu.emulator.client_requests("CREATE")[0]
    assert create.headers["Authorization"] == "Bearer t0ken"
    assert create.data["spec"]["containers"][0]["args"][-3:] == ["fan", "-o", "left.yaml"]
    # Recorded pods are deleted on the next pass.
    rows.poll()
    remaining = emu.call(lambda: [k for k, o in emu.emulator.objects.items() if not o.deleted])
    assert remaining == []


@pytest.mark.parametrize("setting", [True, None], ids=["kube_in_cluster", "detected"])
def test_in_cluster_config(
    emu: EmulatorThread,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    registry: DagRegistry,
    backends: list[Any],
    setting: bool | None,
) -> None:
    from kubernetes.config import incluster_config

    token, namespace_file = tmp_path / "token", tmp_path / "namespace"
    token.write_text("in-cluster-token")
    namespace_file.write_text("batch\n")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", emu.url.rsplit(":", 1)[1])
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(token))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(emu.cert))
    monkeypatch.setattr(kube_backend, "IN_CLUSTER_NAMESPACE_FILE", str(namespace_file))
    if setting is not None:
        registry.worker_config["kube_in_cluster"] = setting
    # Unset, it is detected from KUBERNETES_SERVICE_HOST (dag-workflows defaulted to true).
    manager = KubernetesTaskManager(registry, max_running=3)
    backends.append(manager.backend)
    assert manager.backend.default_namespace == "batch"
    Rows(manager, registry).start("fan", "start.yaml", 5)
    create = emu.emulator.client_requests("CREATE")[0]
    assert create.headers["Authorization"].lower() == "bearer in-cluster-token"
    assert create.namespace == "batch"


def test_existing_pod_is_adopted(
    emu: EmulatorThread, kubeconfig: Path, registry: DagRegistry, backends: list[Any]
) -> None:
    rows = Rows(make_manager(registry, kubeconfig, backends), registry)
    rows.start("fan", "start.yaml", 1)
    rows.start("fan", "start.yaml", 1)  # 409, adopted
    assert len(emu.emulator.client_requests("CREATE")) == 2
    assert len(emu.emulator.objects) == 1


def test_a_deleted_pod_fails_its_attempt(
    emu: EmulatorThread, kubeconfig: Path, registry: DagRegistry, backends: list[Any]
) -> None:
    rows = Rows(make_manager(registry, kubeconfig, backends), registry)
    name = rows.start("fan", "start.yaml", 1, ago=60)
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    with client.ApiClient(configuration) as api_client:
        client.CoreV1Api(api_client).delete_namespaced_pod(name, "default")
    finished, _ = rows.poll()
    assert finished[1].error == f"pod {name} vanished (deleted or evicted)"


@pytest.mark.parametrize(
    "fault",
    [Fault("LIST", status=500, count=2), Fault("LIST", status=429), Fault("LIST", delay=1.5)],
    ids=["500", "429", "timeout"],
)
def test_transient_list_errors_are_retried(
    emu: EmulatorThread, kubeconfig: Path, registry: DagRegistry, backends: list[Any], fault: Fault
) -> None:
    rows = Rows(make_manager(registry, kubeconfig, backends), registry)
    rows.start("fan", "start.yaml", 1, ago=60)
    injected = fault.count  # the emulator counts it down as it answers
    emu.emulator.faults.append(fault)
    finished, alive = rows.poll()
    assert finished == {} and alive == [1]
    lists = emu.emulator.client_requests("LIST")
    # One LIST per namespace, plus one retry per injected fault.
    assert len(lists) == len({r.namespace for r in lists}) + injected


def test_create_timeout_then_adopted(
    emu: EmulatorThread, kubeconfig: Path, registry: DagRegistry, backends: list[Any]
) -> None:
    # The server stores the pod but answers too late; the retry gets 409 and adopts it.
    rows = Rows(make_manager(registry, kubeconfig, backends), registry)
    emu.emulator.faults.append(Fault("CREATE", delay=1.5))
    rows.start("fan", "start.yaml", 1)
    assert len(emu.emulator.client_requests("CREATE")) == 2
    _, alive = rows.poll()
    assert alive == [1]


def test_api_down_fails_nothing(
    emu: EmulatorThread, kubeconfig: Path, registry: DagRegistry, backends: list[Any]
) -> None:
    rows = Rows(make_manager(registry, kubeconfig, backends), registry)
    rows.start("fan", "start.yaml", 1, ago=60)
    emu.emulator.faults.append(Fault("LIST", status=503, count=100))
    finished, alive = rows.poll()
    assert finished == {} and alive == []


def test_forbidden_is_one_clear_line(
    emu: EmulatorThread, kubeconfig: Path, registry: DagRegistry, backends: list[Any]
) -> None:
    rows = Rows(make_manager(registry, kubeconfig, backends), registry)
    emu.emulator.faults.append(Fault("LIST", status=403))
    with pytest.raises(KubernetesPermissionError) as info:
        rows.poll()
    assert str(info.value) == (
        'cannot list pods in namespace "default": grant the role verbs [list] on pods'
    )


def test_invalid_pod_is_a_launch_error(
    emu: EmulatorThread, kubeconfig: Path, registry: DagRegistry, backends: list[Any]
) -> None:
    from workflows_tick.errors import LaunchError

    rows = Rows(make_manager(registry, kubeconfig, backends), registry)
    emu.emulator.faults.append(Fault("CREATE", status=422))
    with pytest.raises(LaunchError, match="injected 422"):
        rows.start("fan", "start.yaml", 1)


def test_one_list_per_namespace_and_200_pods(
    emu: EmulatorThread, kubeconfig: Path, registry: DagRegistry, backends: list[Any]
) -> None:
    manager = make_manager(registry, kubeconfig, backends)
    rows = Rows(manager, registry)
    for i in range(1, 201):
        rows.start("fan", "right.yaml" if i % 2 else "left.yaml", i)

    def run_all() -> None:
        for obj in emu.emulator.objects.values():
            obj.patch({"status": {"phase": "Running"}})

    emu.call(run_all)
    before = len(emu.emulator.client_requests())
    finished, alive = rows.poll()
    requests = emu.emulator.client_requests()[before:]
    assert finished == {} and len(alive) == 200
    assert sorted((r.action.value if r.action else "", r.namespace) for r in requests) == [
        ("LIST", "default"),
        ("LIST", "jobs"),
    ]
    assert all(r.resource == PODS and r.params.get("labelSelector") for r in requests)


def test_a_refused_log_read_costs_only_the_log(
    emu: EmulatorThread,
    kubeconfig: Path,
    registry: DagRegistry,
    backends: list[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The RBAC of dag-workflows' documentation grants pods but not pods/log.
    manager = make_manager(registry, kubeconfig, backends)
    rows = Rows(manager, registry)
    rows.start("fan", "left.yaml", 1)
    rows.start("fan", "start.yaml", 2)
    emu.emulator.faults.append(Fault("FETCH", status=403, subresource="log", count=10))
    finished: dict[int, Any] = {}
    with FakeKubelet(kubeconfig, ["default", "jobs"], lambda pod: 0):

        def all_finished() -> bool:
            finished.update(rows.poll()[0])
            return not rows.rows

        wait_for(all_finished, what="both pods to finish")
    why = 'cannot get pods/log in namespace "default": grant the role verbs [get] on pods/log'
    for task_run_id in (1, 2):
        assert finished[task_run_id].succeeded
        assert finished[task_run_id].output_tail == f"[no log: {why}]\n"
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert [w for w in warnings if "pods/log" in w] == [
        f"{why}; task runs finish without their log until then"
    ]


LIST_WITHOUT_GENERATED_API = """
import sys
from workflows_tick.managers.kubernetes.backend import ClientBackend

backend = ClientBackend(config_file=sys.argv[1])
print(len(backend.list_pods("default", "app=none")))
backend.close()
print("kubernetes.client.api.core_v1_api" in sys.modules)
"""


def test_the_backend_speaks_to_the_api_without_the_generated_core_api(kubeconfig: Path) -> None:
    # CoreV1Api builds validating models for every endpoint when imported (about a
    # second): a one-shot pass that lists pods must not pay for it.
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", LIST_WITHOUT_GENERATED_API, str(kubeconfig)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "False"]
