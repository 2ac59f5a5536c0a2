"""dag-workflows' Python API on our objects: the ``workflows`` import package, the
registry, DAG and task attributes, implied DATABASE_URL, inline SQL, cron nicknames,
``_`` files, hooks, and the log flags."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.support import write_project
from workflows_tick import hooks
from workflows_tick.entry import env_log_json, parse_run
from workflows_tick.errors import DagLoadError, TaskFailed, UsageError
from workflows_tick.logs import setup_logging
from workflows_tick.model import Dag, TaskType
from workflows_tick.runner import run_tasks
from workflows_tick.validate import validate_registry

REPO = Path(__file__).parent.parent.parent


# --- the `workflows` import package --------------------------------------------------------


def test_the_workflows_package_reexports_ours() -> None:
    from workflows import bases, dags, scheduler, testing
    from workflows import hooks as their_hooks
    from workflows_tick import dags as our_dags
    from workflows_tick import pytest_plugin

    assert dags.register_directory is our_dags.register_directory
    assert bases.DagRegistry is our_dags.DagRegistry
    assert bases.Event is hooks.Event
    assert [e.name for e in bases.Event] == [
        "DAG_RUN_START",
        "TASK_RUN_START",
        "TASK_START",
        "TASK_FINISH",
        "TASK_RUN_FINISH",
        "DAG_RUN_FINISH",
    ]
    assert their_hooks.make_slack_notification_hook is hooks.make_slack_notification_hook
    assert callable(scheduler.trigger_dag)
    assert testing.workflows is pytest_plugin.workflows
    assert testing.conn is pytest_plugin.conn


def test_importing_the_workflows_package_stays_light() -> None:
    code = (
        "import sys\n"
        "from workflows import dags, hooks, scheduler\n"
        "heavy = [m for m in ('click', 'sqlalchemy', 'psycopg2', 'kubernetes') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_wheel_lists_every_package_and_the_pytest_plugin() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    listed = set(pyproject["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join(init.parent.relative_to(REPO).parts)
        for top in ("workflows", "workflows_tick")
        for init in (REPO / top).rglob("__init__.py")
    }
    assert on_disk <= listed
    assert "workflows" in listed
    plugins = pyproject["project"]["entry-points"]["pytest11"]
    assert plugins == {"workflows": "workflows_tick.pytest_plugin"}


# --- registry, DAG and task objects ---------------------------------------------------------

PROJECT = {
    "sales": {
        "workflow.yaml": "description: sales\nschedule: '@hourly'\n",
        "extract.sql": "/*\ntype: sql\ndescription: no DATABASE_URL listed\n*/\nSELECT 1;\n",
        "load.yaml": (
            "type: sql\ninputs: [extract.sql, 'other:source.yaml']\nsql: |\n  SELECT 2;\n"
            "outputs:\n  - {type: table, name: loaded}\n"
        ),
        "report.py": '"""\ntype: python\ninputs: [load.yaml]\n"""\ndef run(context):\n    pass\n',
        "_helpers.py": '"""Shared code."""\nX = 1\n',
        "_typed.yaml": "type: no_op\n",
    },
    "other": {
        "workflow.yaml": "description: other\n",
        "source.yaml": "description: a source\n",
    },
}


@pytest.fixture
def registry(tmp_path: Path) -> Any:
    return write_project(tmp_path, PROJECT)


def test_iterating_the_registry_yields_the_dags_that_load(registry: Any, tmp_path: Path) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "workflow.yaml").write_text("nope: 1\n")
    registry.reload()
    assert [dag.name for dag in registry] == ["other", "sales"]
    assert registry.names() == ["broken", "other", "sales"]
    assert all(isinstance(dag, Dag) for dag in registry)


def test_a_dag_and_its_tasks_have_dag_workflows_attributes(registry: Any) -> None:
    dag = registry["sales"]
    task = dag.get_task("load.yaml")
    assert task.name == "load.yaml"
    assert task.dag is dag
    assert dag.registry is registry
    assert dag.folder == str(dag.path)
    assert task.inputs == ("extract.sql",)
    assert [o.name for o in task.outputs] == ["loaded"]
    assert dag.tasks() == ["_typed.yaml", "extract.sql", "load.yaml", "report.py"]
    assert dag.tasks(inputs_to="report.py") == ["extract.sql", "load.yaml"]
    assert dag.tasks(inputs_to="report.py", external=True) == [
        "extract.sql",
        "load.yaml",
        "other:source.yaml",
    ]
    assert dag.tasks["report.py"] is dag.get_task("report.py")


def test_unknown_names_raise_key_error_as_in_dag_workflows(registry: Any) -> None:
    with pytest.raises(KeyError, match="unknown DAG 'nope'"):
        registry["nope"]
    with pytest.raises(KeyError, match=r"has no task 'nope\.sql'"):
        registry["sales"].get_task("nope.sql")


def test_update_adds_the_dags_of_another_folder(tmp_path: Path) -> None:
    first = write_project(tmp_path / "a", {"one": {"workflow.yaml": "description: one\n"}})
    second = write_project(tmp_path / "b", {"two": {"workflow.yaml": "description: two\n"}})
    first.update(second)
    assert first.names() == ["one", "two"]
    assert first["two"].path == tmp_path / "b" / "two"
    first.reload()
    assert first.names() == ["one", "two"]


def test_update_refuses_a_dag_name_already_registered(tmp_path: Path) -> None:
    first = write_project(tmp_path / "a", {"one": {"workflow.yaml": "description: one\n"}})
    again = write_project(tmp_path / "b", {"one": {"workflow.yaml": "description: one\n"}})
    with pytest.raises(UsageError, match="DAG 'one' is in both"):
        first.update(again)


# --- task files --------------------------------------------------------------------------------


def test_sql_tasks_and_tasks_with_outputs_imply_database_url(registry: Any) -> None:
    dag = registry["sales"]
    assert dag.get_task("extract.sql").parameters == ("DATABASE_URL",)
    assert dag.get_task("load.yaml").all_parameters == ("DATABASE_URL",)
    assert dag.get_task("report.py").parameters == ()


def test_a_yaml_task_of_type_sql_runs_its_inline_sql(registry: Any) -> None:
    task = registry["sales"].get_task("load.yaml")
    assert task.type is TaskType.SQL
    assert task.body == "SELECT 2;\n"


def test_the_sql_key_belongs_to_yaml_sql_tasks_only(tmp_path: Path) -> None:
    registry = write_project(
        tmp_path,
        {"d": {"workflow.yaml": "description: d\n", "a.yaml": "sql: SELECT 1\n"}},
    )
    error = registry.load("d")
    assert isinstance(error, DagLoadError)
    assert "key 'sql': only a .yaml task of type 'sql' takes its SQL from this key" in str(error)


@pytest.mark.parametrize(
    ("nickname", "fields"),
    [
        ("@hourly", "0 * * * *"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
    ],
)
def test_cron_nicknames_mean_their_five_fields(tmp_path: Path, nickname: str, fields: str) -> None:
    registry = write_project(
        tmp_path, {"d": {"workflow.yaml": f"description: d\nschedule: '{nickname}'\n"}}
    )
    assert registry["d"].schedule == fields


@pytest.mark.parametrize("schedule", ["@reboot", "@every 5m", "@"])
def test_other_at_forms_are_one_clear_error(tmp_path: Path, schedule: str) -> None:
    registry = write_project(
        tmp_path, {"d": {"workflow.yaml": f"description: d\nschedule: '{schedule}'\n"}}
    )
    error = registry.load("d")
    assert isinstance(error, DagLoadError)
    assert f"key 'schedule': {schedule!r} is not a cron nickname" in str(error)
    assert "\n" not in str(error)


def test_underscore_files_declaring_a_type_are_tasks_others_are_skipped_and_said(
    registry: Any,
) -> None:
    dag = registry["sales"]
    assert "_typed.yaml" in dag.tasks
    assert "_helpers.py" not in dag.tasks
    assert dag.skipped == (
        "_helpers.py: not a task: the name starts with '_' and the header declares no "
        "'type' (a helper file)",
    )
    report = validate_registry(registry)
    assert report.problems == []
    assert "    skipped _helpers.py: not a task" in "\n".join(report.summary)


# --- hooks in `run` -----------------------------------------------------------------------------


def one_task_dag(tmp_path: Path, body: str) -> Dag:
    source = f'"""\ndescription: t\n"""\ndef run(context):\n    {body}\n'
    registry = write_project(tmp_path, {"d": {"workflow.yaml": "description: d\n", "t.py": source}})
    dag: Dag = registry["d"]
    return dag


def test_run_fires_task_start_and_task_finish(tmp_path: Path) -> None:
    dag = one_task_dag(tmp_path, "assert context['conn'] is None")
    calls: list[tuple[hooks.Event, dict[str, Any]]] = []
    run_tasks(dag, list(dag.tasks.values()), {}, [lambda event, **kw: calls.append((event, kw))])
    task = dag.get_task("t.py")
    assert [event for event, _ in calls] == [hooks.Event.TASK_START, hooks.Event.TASK_FINISH]
    for _, kwargs in calls:
        assert kwargs == {
            "dag": dag,
            "task": task,
            "dag_run": None,
            "task_run": None,
            "exception": None,
        }


def test_task_finish_carries_the_failure(tmp_path: Path) -> None:
    dag = one_task_dag(tmp_path, "raise ValueError('bad row')")
    seen: list[Any] = []
    with pytest.raises(TaskFailed):
        run_tasks(dag, list(dag.tasks.values()), {}, [lambda event, **kw: seen.append(kw)])
    assert isinstance(seen[-1]["exception"], TaskFailed)
    assert "ValueError: bad row" in str(seen[-1]["exception"])


def test_a_hook_that_raises_is_logged_and_the_task_still_succeeds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dag = one_task_dag(tmp_path, "pass")

    def broken_hook(event: hooks.Event, **kwargs: Any) -> None:
        raise RuntimeError("hook bug")

    with caplog.at_level(logging.WARNING, logger="workflows_tick.hooks"):
        run_tasks(dag, list(dag.tasks.values()), {}, [broken_hook])
    assert "hook broken_hook failed on TASK_START" in caplog.text
    assert "hook broken_hook failed on TASK_FINISH" in caplog.text


def test_a_hook_that_hangs_is_given_up_on(caplog: pytest.LogCaptureFixture) -> None:
    release = threading.Event()
    after: list[str] = []

    def hanging_hook(event: hooks.Event, **kwargs: Any) -> None:
        release.wait(30)

    with caplog.at_level(logging.WARNING, logger="workflows_tick.hooks"):
        hooks.call_hooks(
            [hanging_hook, lambda event, **kw: after.append(event.name)],
            hooks.Event.TASK_START,
            timeout=0.05,
        )
    release.set()
    assert after == ["TASK_START"]
    assert "hook hanging_hook still running after 0.05s on TASK_START" in caplog.text


# --- log flags ------------------------------------------------------------------------------------


def test_run_parses_quiet_and_log_text() -> None:
    assert parse_run(["--quiet", "c.py", "run", "d"]) == ("c.py", -1, False, "d", {})
    assert parse_run(["--log-json", "--log-text", "c.py", "run", "d"], True) == (
        "c.py",
        0,
        False,
        "d",
        {},
    )
    assert parse_run(["c.py", "run", "d"], log_json=True) == ("c.py", 0, True, "d", {})


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, False),
        ({"LOG_JSON": "1"}, True),
        ({"LOG_JSON": "true"}, True),
        ({"LOG_JSON": "false"}, False),
        ({"WORKFLOWS_LOG_JSON": "0", "LOG_JSON": "1"}, False),
        ({"LOG_JSON": "maybe"}, None),
    ],
)
def test_log_json_comes_from_the_environment(environ: dict[str, str], expected: bool) -> None:
    assert env_log_json(environ) == expected


def test_json_log_lines_carry_severity(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(json_lines=True)
    try:
        logging.getLogger("x").warning("careful")
    finally:
        setup_logging()
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["severity"] == "WARNING"
    assert line["level"] == "warning"
    assert line["message"] == "careful"
