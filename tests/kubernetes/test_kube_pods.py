"""Pod names, labels, options and validation: pure logic."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workflows_tick.dags import DagRegistry
from workflows_tick.managers.kubernetes import KubernetesTaskManager
from workflows_tick.managers.kubernetes.pods import (
    option_problems,
    pod_labels,
    pod_name,
    pod_options,
    read_pod,
)

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

names = st.text(min_size=1, max_size=120)
ids = st.integers(min_value=1, max_value=2**63 - 1)
attempts = st.integers(min_value=1, max_value=1000)


@settings(max_examples=300, deadline=None)
@given(names, names, ids, attempts)
def test_pod_names_are_dns_labels(dag: str, task: str, task_run_id: int, attempt: int) -> None:
    name = pod_name(dag, task, task_run_id, attempt)
    assert len(name) <= 63
    assert DNS_LABEL.match(name), name
    assert name.endswith(f"-{task_run_id}-{attempt}")


@settings(max_examples=300, deadline=None)
@given(names, names, ids, attempts)
def test_labels_are_valid_label_values(dag: str, task: str, task_run_id: int, attempt: int) -> None:
    for value in pod_labels(dag, task, task_run_id, attempt).values():
        assert len(value) <= 63
        assert LABEL_VALUE.match(value), value


@settings(max_examples=200, deadline=None)
@given(names, names, names, names)
def test_different_dag_task_pairs_never_share_a_name(a: str, b: str, c: str, d: str) -> None:
    if (a, b) != (c, d):
        assert pod_name(a, b, 1, 1) != pod_name(c, d, 1, 1)


def test_similar_names_do_not_collide() -> None:
    assert pod_name("my_dag", "t.sql", 1, 1) != pod_name("mydag", "t.sql", 1, 1)
    assert pod_name("my_dag", "t.sql", 1, 1) != pod_name("my-dag", "t.sql", 1, 1)
    assert pod_name("a", "b_c.sql", 1, 1) != pod_name("a_b", "c.sql", 1, 1)


def test_pod_names_are_readable_and_at_most_63_characters() -> None:
    name = pod_name("Sales_ETL", "load_orders.sql", 12345, 2)
    assert re.fullmatch(r"sales-etl-load-orders-sql-[0-9a-f]{6}-12345-2", name)
    long_name = pod_name("d" * 80, "t" * 80, 10**18, 3)
    assert len(long_name) == 63 and "ddd" in long_name and "ttt" in long_name


def test_read_pod_without_status_is_pending() -> None:
    state = read_pod({"metadata": {"name": "x", "labels": {}}})
    assert state.phase == "Pending" and state.task_run_id is None and not state.stuck


GOOD: dict[str, Any] = {
    "kube_in_cluster": True,
    "kube_namespace": "jobs",
    "kube_image": "img:1",
    "kube_command": ["secrets-init", "--"],
    "kube_env": {"A": "1", "PORT": 5432},
    "kube_requests_cpu": "250m",
    "kube_requests_memory": "256Mi",
    "kube_limits_cpu": 1,
    "kube_limits_memory": "1Gi",
    "kube_service_account_name": "etl-runner",
    "kube_node_selector": {"pool": "batch"},
    "kube_tolerations": [{"key": "batch", "operator": "Exists", "effect": "NoSchedule"}],
    "kube_labels": {"team": "data"},
    "kube_annotations": {"example.com/note": "anything at all"},
    "kube_image_pull_policy": "IfNotPresent",
    "kube_image_pull_secrets": ["regcred"],
    "kube_pending_timeout": 120,
    "concurrency": 3,  # not ours: ignored
}


def test_every_option_accepted() -> None:
    assert option_problems(GOOD) == []
    options = pod_options(GOOD)
    assert options.env == {"A": "1", "PORT": "5432"}
    assert options.limits == {"cpu": "1", "memory": "1Gi"}


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("kube_imag", "x", "unknown option kube_imag"),
        ("kube_in_cluster", "yes", "true or false"),
        ("kube_namespace", "Jobs_1", "namespace name"),
        ("kube_image", "", "non-empty"),
        ("kube_command", "run.sh", "list of strings"),
        ("kube_env", ["A=1"], "mapping"),
        ("kube_env", {"A": {"b": 1}}, "value of A"),
        ("kube_env", {"1 A": "x"}, "not a valid environment variable name"),
        ("kube_requests_cpu", "lots", "quantity"),
        ("kube_limits_memory", True, "quantity"),
        ("kube_node_selector", {"pool": 1}, "mapping of strings"),
        ("kube_tolerations", [{"keyy": "x"}], "unknown field(s) keyy"),
        ("kube_labels", {"team": "a b"}, "not a valid label value"),
        ("kube_image_pull_policy", "always", "one of"),
        ("kube_image_pull_secrets", "regcred", "list of secret names"),
        ("kube_pending_timeout", -1, "positive"),
    ],
)
def test_bad_options_are_named(key: str, value: Any, fragment: str) -> None:
    problems = option_problems({**GOOD, key: value})
    assert len(problems) == 1
    assert key in problems[0] and fragment in problems[0]


@pytest.mark.parametrize(
    "toleration",
    [
        {"key": "gpu", "operator": "Equal", "value": 1, "effect": "NoSchedule"},
        {"key": "gpu", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": "soon"},
        {"key": "gpu", "operator": "Sometimes"},
        {"key": "gpu", "operator": "Exists", "effect": "NoSchedul"},
    ],
)
def test_bad_toleration_values_are_named(toleration: dict[str, object]) -> None:
    problems = option_problems({**GOOD, "kube_tolerations": [toleration]})
    assert len(problems) == 1
    assert "kube_tolerations" in problems[0]


def test_validate_names_the_tasks_without_an_image(
    project: Callable[..., DagRegistry],
) -> None:
    registry = project(
        {
            "d": {
                "tasks": {
                    "a.yaml": {"worker_config": {"kube_image": "img"}},
                    "b.yaml": {},
                }
            },
            "ok": {"workflow": {"worker_config": {"kube_image": "img"}}, "tasks": {"t.yaml": {}}},
            "tasks_only": {"tasks": {"t.yaml": {"worker_config": {"kube_image": "img"}}}},
        }
    )
    checker = KubernetesTaskManager.__new__(KubernetesTaskManager)  # as `validate` builds it
    d = registry.get("d")
    assert checker.validate(d, registry.worker_config_for(d)) == [
        "kube_image is not set for task 'b.yaml' (set it in the registry, DAG or task worker_config)"
    ]
    for name in ("ok", "tasks_only"):
        dag = registry.get(name)
        assert checker.validate(dag, registry.worker_config_for(dag)) == []


def test_validate_through_the_command(project: Callable[..., DagRegistry]) -> None:
    from workflows_tick.validate import validate_registry

    registry = project({"d": {"tasks": {"t.yaml": {"worker_config": {"kube_limits_cpu": "x"}}}}})
    problems = validate_registry(registry, manager="kubernetes").problems
    assert any("kube_image is not set for task 't.yaml'" in p for p in problems), problems
    assert any("task 't.yaml'" in p and "kube_limits_cpu" in p for p in problems), problems
