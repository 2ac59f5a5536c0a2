"""validate_registry and list_lines on small projects."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from workflows_tick import dags
from workflows_tick.validate import list_lines, next_fire_time, validate_registry

NOW = datetime(2024, 3, 9, 12, 0, tzinfo=UTC)


def project(tmp_path: Path) -> dags.DagRegistry:
    for name, workflow in {
        "nightly": "description: n\nschedule: '30 2 * * *'\ntimezone: America/New_York\n",
        "manual": "description: m\n",
        "broken": "description: b\nretries: -3\n",
    }.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "workflow.yaml").write_text(workflow)
    (tmp_path / "nightly" / "a.yaml").write_text("worker_config: {kube_image: 'img:1'}\n")
    (tmp_path / "manual" / "b.yaml").write_text("")
    return dags.register_directory(tmp_path)


def test_validate_reports_problems_and_summary(tmp_path: Path) -> None:
    report = validate_registry(project(tmp_path), now=NOW)
    assert report.problems == [
        f"{tmp_path}/broken/workflow.yaml: key 'retries': expected an integer >= 0, got an integer -3"
    ]
    assert report.summary == [
        "3 DAG(s), 2 task(s), 1 broken",
        "  manual: 1 task, no schedule (UTC)",
        "  nightly: 1 task, schedule '30 2 * * *' (America/New_York), next 2024-03-10 03:00-04:00",
    ]


def test_validate_with_the_kubernetes_manager(tmp_path: Path) -> None:
    registry = project(tmp_path)
    report = validate_registry(registry, manager="kubernetes", now=NOW)
    assert any(
        "manual/workflow.yaml: worker_config: kube_image is not set" in p for p in report.problems
    )
    assert not any("nightly" in p for p in report.problems)


def test_list_shows_each_dag_with_its_schedule_and_next_fire_time(tmp_path: Path) -> None:
    lines = list_lines(project(tmp_path), now=NOW)
    assert lines[0].startswith("broken: BROKEN: ")
    assert lines[1:] == [
        "manual: 1 task, no schedule (UTC)",
        "nightly: 1 task, schedule '30 2 * * *' (America/New_York), next 2024-03-10 03:00-04:00",
    ]


def test_next_fire_time_is_in_the_dag_time_zone() -> None:
    fire = next_fire_time("0 9 * * *", "Asia/Tokyo", NOW)
    assert fire.isoformat() == "2024-03-10T09:00:00+09:00"


def test_task_worker_config_is_checked_once(tmp_path: Path) -> None:
    registry = project(tmp_path)
    (tmp_path / "manual" / "c.yaml").write_text("worker_config: {kube_limits_cpu: [1]}\n")
    registry.reload()
    problems = validate_registry(registry, manager="kubernetes", now=NOW).problems
    task_lines = [p for p in problems if "worker_config of task 'c.yaml'" in p]
    assert len(task_lines) == 1
    assert "kube_limits_cpu" in task_lines[0]
    assert task_lines[0].startswith(f"{tmp_path}/manual/c.yaml: ")


def test_a_task_kube_problem_is_reported_once_against_the_task_file(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "workflow.yaml").write_text(
        "description: d\nworker_config: {kube_image: img}\n"
    )
    (tmp_path / "d" / "a.yaml").write_text("worker_config: {kube_namespace: Bad_NS}\n")
    report = validate_registry(dags.register_directory(tmp_path), manager="kubernetes", now=NOW)
    assert report.problems == [
        f"{tmp_path / 'd' / 'a.yaml'}: worker_config of task 'a.yaml': kube_namespace must be "
        "a namespace name (lowercase letters, digits and '-', at most 63)"
    ]


def test_a_registry_kube_problem_is_not_blamed_on_workflow_yaml(tmp_path: Path) -> None:
    registry = project(tmp_path)
    registry.worker_config = {"kube_image": "img", "kube_in_cluster": "yes"}
    problems = validate_registry(registry, manager="kubernetes", now=NOW).problems
    assert any("kube_in_cluster" in p for p in problems)
    assert not any("workflow.yaml" in p and "kube_in_cluster" in p for p in problems)
