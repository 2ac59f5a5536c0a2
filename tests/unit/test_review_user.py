"""Regression tests for bugs a user met, found in review."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.support import write_project
from workflows_tick import cli, entry, loader, logs
from workflows_tick.errors import DagLoadError, DatabaseConfigError, TaskFailed
from workflows_tick.managers.kubernetes.pods import option_problems
from workflows_tick.model import TaskType
from workflows_tick.plan import TaskRunState, plan_run
from workflows_tick.runner import run_task
from workflows_tick.states import TaskStatus
from workflows_tick.validate import validate_registry

BOM = "\ufeff"


# --- CLI option values ------------------------------------------------------------------


@pytest.mark.parametrize("option", ["--interval", "--lease", "--reload-interval"])
def test_schedule_refuses_nan_durations(
    option: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_project(tmp_path, {"d": {"workflow.yaml": "description: d\n"}})
    started = []
    monkeypatch.setattr("workflows_tick.loop.run_scheduler", lambda *a, **k: started.append(a))
    result = CliRunner().invoke(
        cli.cli, [str(tmp_path / "config.py"), "schedule", "worker", option, "nan"]
    )
    assert result.exit_code == 2
    assert not started


# --- run -b/-e ----------------------------------------------------------------------------


def test_run_begin_after_end_is_a_usage_error(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        {
            "d": {
                "workflow.yaml": "description: d\n",
                "a.yaml": "",
                "b.yaml": "inputs: [a.yaml]\n",
            }
        },
    )
    # b.yaml is downstream of a.yaml: nothing is downstream of b and upstream of a.
    with pytest.raises(SystemExit) as exc:
        entry.main([str(tmp_path / "config.py"), "run", "d", "-b", "b.yaml", "-e", "a.yaml"])
    assert exc.value.code == 2


# --- UTF-8 byte order mark ------------------------------------------------------------------


def test_shell_header_after_a_bom_is_read(tmp_path: Path) -> None:
    path = tmp_path / "b.sh"
    path.write_text(f"{BOM}#!/bin/bash\n# inputs: [a.sh]\necho hi\n", encoding="utf-8")
    task = loader.load_task(path)
    assert task.inputs == ("a.sh",)


def test_sql_header_after_a_bom_is_read(tmp_path: Path) -> None:
    path = tmp_path / "a.sql"
    path.write_text(f"{BOM}/*\nparameters: [DATABASE_URL]\n*/\nSELECT 1;\n", encoding="utf-8")
    task = loader.load_task(path)
    assert task.type is TaskType.SQL
    assert task.parameters == ("DATABASE_URL",)


def test_python_task_with_a_bom_loads(tmp_path: Path) -> None:
    path = tmp_path / "a.py"
    path.write_text(f'{BOM}"""description: x"""\ndef run(context):\n    pass\n', "utf-8")
    task = loader.load_task(path)
    assert task.description == "x"


# --- YAML aliases -------------------------------------------------------------------------


class _Counted:
    calls = 0

    def __repr__(self) -> str:
        _Counted.calls += 1
        return "x"


def test_kind_does_not_render_a_huge_value() -> None:
    _Counted.calls = 0
    value = [_Counted() for _ in range(100_000)]
    text = loader._kind(value)
    assert text.startswith("a list")
    assert _Counted.calls < 1000


# --- secrets -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    ["postgres//u:hunter22@h/db", "postgresql:/u:hunter22@h/db", "postgresql:u:hunter22@h/db"],
)
def test_unparsable_database_url_never_shows_its_password(raw: str) -> None:
    from workflows_tick.database import normalize_url

    with pytest.raises(DatabaseConfigError) as exc:
        normalize_url(raw, source="DATABASE_URL")
    assert "hunter22" not in str(exc.value)


def test_task_with_malformed_database_url_never_shows_its_password(tmp_path: Path) -> None:
    registry = write_project(
        tmp_path,
        {
            "d": {
                "workflow.yaml": "description: d\n",
                "a.sql": "/*\nparameters: [DATABASE_URL]\n*/\nSELECT 1;\n",
            }
        },
    )
    dag = registry.get("d")
    with pytest.raises(TaskFailed) as exc:
        run_task(dag, dag.task("a.sql"), {"DATABASE_URL": "postgres//u:hunter22@h/db"})
    assert "hunter22" not in str(exc.value)


def test_plain_kube_env_values_do_not_mask_log_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workflows_tick.managers.kubernetes import KubernetesTaskManager

    monkeypatch.setattr(logs, "_SECRETS", set())
    registry = write_project(tmp_path, {"d": {"workflow.yaml": "description: d\n"}})
    registry.worker_config = {"kube_image": "img", "kube_env": {"LOG_LEVEL": "INFO"}}
    KubernetesTaskManager(registry, backend=object())  # type: ignore[arg-type]
    record = logging.LogRecord("workflows_tick.tick", logging.INFO, "x", 1, "pass", None, None)
    line = logs._RedactingFormatter("%(levelname)s %(name)s: %(message)s").format(record)
    assert line == "INFO workflows_tick.tick: pass"


# --- validate --manager kubernetes ---------------------------------------------------------


def test_a_task_kube_problem_is_reported_once_against_the_task_file(tmp_path: Path) -> None:
    registry = write_project(
        tmp_path,
        {
            "d": {
                "workflow.yaml": "description: d\nworker_config: {kube_image: img}\n",
                "a.yaml": "worker_config: {kube_namespace: Bad_NS}\n",
            }
        },
    )
    report = validate_registry(registry, manager="kubernetes")
    assert report.problems == [
        f"{tmp_path / 'd' / 'a.yaml'}: worker_config of task 'a.yaml': kube_namespace must be "
        "a namespace name (lowercase letters, digits and '-', at most 63)"
    ]


def test_a_registry_kube_problem_is_not_blamed_on_workflow_yaml(tmp_path: Path) -> None:
    registry = write_project(tmp_path, {"d": {"workflow.yaml": "description: d\n", "a.yaml": ""}})
    registry.worker_config = {"kube_image": "img", "kube_in_cluster": "yes"}
    report = validate_registry(registry, manager="kubernetes")
    assert report.problems
    assert not any("workflow.yaml" in p for p in report.problems)


@pytest.mark.parametrize(
    "toleration",
    [
        {"key": "gpu", "operator": "Equal", "value": 1, "effect": "NoSchedule"},
        {"key": "gpu", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": "soon"},
        {"key": "gpu", "operator": "Sometimes"},
        {"key": "gpu", "operator": "Exists", "effect": "NoSchedul"},
    ],
)
def test_bad_toleration_values_are_reported(toleration: dict[str, object]) -> None:
    assert option_problems({"kube_image": "img", "kube_tolerations": [toleration]})


# --- durations the loader accepts but the scheduler cannot use ------------------------------


def test_a_huge_retry_delay_is_refused_or_planned(tmp_path: Path) -> None:
    files = {"workflow.yaml": "description: d\n", "a.yaml": "retry_delay: 1000000000000\n"}
    try:
        registry = write_project(tmp_path, {"d": files})
        dag = registry.get("d")
    except DagLoadError:
        return
    failed = [TaskRunState("a.yaml", 1, TaskStatus.FAILED)]
    plan = plan_run(dag, failed, datetime(2024, 1, 1, tzinfo=UTC))
    assert plan.create
