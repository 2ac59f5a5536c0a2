"""``kube_security_context`` (dag-workflows' key): checked, applied over the non-root
defaults, able to run an image as root, and a validate warning when it does."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.kubernetes.test_kube_manifests import validate
from workflows_tick.dags import DagRegistry
from workflows_tick.managers.kubernetes.manager import in_cluster
from workflows_tick.managers.kubernetes.pods import (
    option_problems,
    pod_manifest,
    pod_name,
    pod_options,
)
from workflows_tick.validate import validate_registry


def manifest(registry: DagRegistry) -> dict[str, Any]:
    from kubernetes.client import ApiClient

    dag = registry.get("etl")
    task = dag.task("load.yaml")
    body = pod_manifest(
        name=pod_name(dag.name, task.name, 1, 1),
        namespace="default",
        dag=dag,
        task=task,
        task_run_id=1,
        attempt=1,
        config="/app/config.py",
        options=pod_options(registry.worker_config_for(dag, task)),
        parameters={},
    )
    document: dict[str, Any] = ApiClient().sanitize_for_serialization(body)
    validate(document)
    return document


@pytest.fixture
def etl(project: Callable[..., DagRegistry]) -> Callable[..., DagRegistry]:
    def make(**worker_config: Any) -> DagRegistry:
        return project(
            {"etl": {"tasks": {"load.yaml": {}}}},
            kube_image="registry.example/etl:1",
            **worker_config,
        )

    return make


def test_pods_run_as_non_root_by_default(etl: Callable[..., DagRegistry]) -> None:
    spec = manifest(etl())["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["containers"][0]["securityContext"]["runAsNonRoot"] is True
    assert spec["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True


def test_a_security_context_is_applied_where_kubernetes_takes_each_field(
    etl: Callable[..., DagRegistry],
) -> None:
    spec = manifest(
        etl(
            kube_security_context={
                "runAsUser": 1000,
                "fs_group": 2000,  # snake_case, as the Python client took it
                "readOnlyRootFilesystem": False,
            }
        )
    )["spec"]
    pod, container = spec["securityContext"], spec["containers"][0]["securityContext"]
    assert pod["runAsUser"] == 1000 and container["runAsUser"] == 1000
    assert pod["fsGroup"] == 2000 and "fsGroup" not in container
    assert container["readOnlyRootFilesystem"] is False
    assert "readOnlyRootFilesystem" not in pod
    assert pod["runAsNonRoot"] is True and container["runAsNonRoot"] is True


def test_an_image_that_must_run_as_root_can(etl: Callable[..., DagRegistry]) -> None:
    spec = manifest(etl(kube_security_context={"runAsUser": 0}))["spec"]
    pod, container = spec["securityContext"], spec["containers"][0]["securityContext"]
    assert (pod["runAsUser"], pod["runAsNonRoot"]) == (0, False)
    assert (container["runAsUser"], container["runAsNonRoot"]) == (0, False)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("root", "kube_security_context must be a mapping"),
        ({"runAsUser": -1}, "runAsUser must be an integer >= 0"),
        ({"runAsNonRoot": "no"}, "runAsNonRoot must be true or false"),
        ({"capabilities": {"add": "NET_ADMIN"}}, "capabilities must be a mapping"),
        ({"runAsRoot": True}, "has unknown field 'runAsRoot'"),
    ],
)
def test_a_bad_security_context_is_one_line(value: Any, problem: str) -> None:
    problems = option_problems({"kube_security_context": value})
    assert len(problems) == 1 and problem in problems[0]


def test_validate_is_clean_with_a_security_context_and_warns_about_root(
    etl: Callable[..., DagRegistry],
) -> None:
    clean = validate_registry(
        etl(kube_security_context={"runAsUser": 1000, "fsGroup": 2000}), manager="kubernetes"
    )
    assert (clean.problems, clean.warnings) == ([], [])
    root = validate_registry(
        etl(kube_security_context={"runAsNonRoot": False}), manager="kubernetes"
    )
    assert root.problems == []
    assert len(root.warnings) == 1
    assert root.warnings[0].endswith(
        "DAGS.worker_config: kube_security_context lets task pods run as root or privileged "
        "(runAsNonRoot: false)"
    )


@pytest.mark.parametrize(
    ("setting", "environ", "expected"),
    [
        (None, {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, True),
        (None, {}, False),
        (False, {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, False),
        (True, {}, True),
    ],
)
def test_kube_in_cluster_unset_means_whether_we_run_in_a_pod(
    setting: bool | None, environ: dict[str, str], expected: bool
) -> None:
    config = {} if setting is None else {"kube_in_cluster": setting}
    assert in_cluster(config, environ) is expected
