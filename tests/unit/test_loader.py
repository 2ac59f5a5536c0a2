"""The DAG folder loader: headers per extension, defaults, inputs, order, laziness."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from workflows_tick import dags, loader
from workflows_tick.errors import DagLoadError, UnknownDagError
from workflows_tick.model import (
    DEFAULT_RETRIES,
    Dag,
    DstGap,
    DstRepeat,
    ExternalInput,
    OutputColumn,
    Overlap,
    TableOutput,
    TaskType,
)
from workflows_tick.plan import TaskRunState, plan_run
from workflows_tick.states import TaskStatus
from workflows_tick.taskfiles import python_header, shell_header, sql_header


def write_dag(
    root: Path, name: str, files: dict[str, str], workflow: str = "description: d\n"
) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "workflow.yaml").write_text(workflow)
    for filename, text in files.items():
        (folder / filename).write_text(text)
    return folder


def load(root: Path, name: str) -> Dag:
    return dags.register_directory(root).get(name)


def load_error(root: Path, name: str) -> str:
    result = dags.register_directory(root).load(name)
    assert isinstance(result, DagLoadError)
    return str(result)


SQL = "/*\nparameters: [DATABASE_URL]\n*/\nSELECT 1;\n"
BOM = "\ufeff"


def test_workflow_keys_and_defaults(tmp_path: Path) -> None:
    write_dag(tmp_path, "plain", {})
    dag = load(tmp_path, "plain")
    assert (dag.schedule, dag.timezone, dag.retries, dag.retry_delay) == (
        None,
        "UTC",
        DEFAULT_RETRIES,
        0.0,
    )
    assert dag.tasks == {}
    workflow = (
        "description: all keys\nschedule: '30 2 * * 1-5'\ntimezone: Europe/Paris\n"
        "retries: 0\nretry_delay: 1.5\nworker_config: {kube_image: 'img:1'}\n"
    )
    write_dag(tmp_path, "full", {}, workflow)
    dag = load(tmp_path, "full")
    assert dag.description == "all keys"
    assert dag.schedule == "30 2 * * 1-5"
    assert dag.timezone == "Europe/Paris"
    assert (dag.retries, dag.retry_delay) == (0, 1.5)
    assert dag.worker_config == {"kube_image": "img:1"}


def test_task_types_from_extensions(tmp_path: Path) -> None:
    files = {
        "a.sql": SQL,
        "b.py": "def run(context):\n    pass\n",
        "c.sh": "echo hi\n",
        "d.yaml": "",
        "e.yml": "description: yml works too\n",
    }
    dag = load(tmp_path.parent / tmp_path.name, write_dag(tmp_path, "t", files).name)
    types = {t.name: t.type for t in dag.tasks.values()}
    assert types == {
        "a.sql": TaskType.SQL,
        "b.py": TaskType.PYTHON,
        "c.sh": TaskType.SHELL,
        "d.yaml": TaskType.NO_OP,
        "e.yml": TaskType.NO_OP,
    }
    assert dag.task("a.sql").body == "SELECT 1;\n"
    assert dag.task("c.sh").body == "echo hi\n"
    assert dag.task("e.yml").description == "yml works too"


def test_other_files_are_ignored(tmp_path: Path) -> None:
    folder = write_dag(
        tmp_path,
        "t",
        {
            "README.md": "# notes",
            ".gitkeep": "",
            "data.csv": "a,b\n",
            "_helpers.py": "x = 1\n",
            "__init__.py": "",
            ".hidden.sql": "junk",
            "task.yaml": "",
        },
    )
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "x.py").write_text("garbage(")
    (folder / "helpers").mkdir()
    assert list(load(tmp_path, "t").tasks) == ["task.yaml"]


def test_tasks_are_in_topological_order(tmp_path: Path) -> None:
    files = {
        "a_last.yaml": "inputs: [m_middle.yaml]\n",
        "m_middle.yaml": "inputs: [z_first.yaml]\n",
        "z_first.yaml": "",
        "b_free.yaml": "",
    }
    write_dag(tmp_path, "t", files)
    assert list(load(tmp_path, "t").tasks) == [
        "b_free.yaml",
        "z_first.yaml",
        "m_middle.yaml",
        "a_last.yaml",
    ]


def test_every_task_header_key_is_read(tmp_path: Path) -> None:
    header = """/*
type: sql
description: Load things.
parameters: [DATABASE_URL, DATABASE_URL, REGION]
inputs: [a.yaml, 'other:x.yaml']
worker_config: {kube_limits_cpu: 200m}
retries: 5
retry_delay: 10
timeout: 2.5
outputs:
  - type: table
    name: public.things
    columns:
      - {name: id, datatype: int, nullable: false}
      - {name: note}
    validation_queries: [SELECT 1 WHERE false]
*/
INSERT INTO things VALUES (1);
/* a second comment stays in the SQL */
"""
    write_dag(tmp_path, "other", {"x.yaml": ""})
    write_dag(tmp_path, "t", {"a.yaml": "", "load.sql": header})
    task = load(tmp_path, "t").task("load.sql")
    assert task.description == "Load things."
    assert task.parameters == ("DATABASE_URL", "REGION")
    assert task.inputs == ("a.yaml",)
    assert task.external_inputs == (ExternalInput("other", "x.yaml"),)
    assert task.worker_config == {"kube_limits_cpu": "200m"}
    assert (task.retries, task.retry_delay, task.timeout) == (5, 10.0, 2.5)
    assert task.outputs == (
        TableOutput(
            "public.things",
            (OutputColumn("id", "int", False), OutputColumn("note")),
            ("SELECT 1 WHERE false",),
        ),
    )
    assert task.body.startswith("INSERT INTO things")
    assert "/* a second comment stays in the SQL */" in task.body


def test_python_tasks_are_parsed_not_imported(tmp_path: Path) -> None:
    marker = tmp_path / "imported"
    source = (
        '"""\ndescription: side effects\n"""\n'
        f"open({str(marker)!r}, 'w').write('x')\n"
        "raise SystemExit('never at load time')\n\n"
        "def run(context):\n    pass\n"
    )
    write_dag(tmp_path, "t", {"task.py": source})
    assert load(tmp_path, "t").task("task.py").description == "side effects"
    assert not marker.exists()


@pytest.mark.parametrize(
    "source",
    [
        "def run(context):\n    pass\n",
        "from os import getcwd as run\n",
        "import run\n",
        "run = print\n",
        "run: object = print\n",
        "class run:\n    pass\n",
        "try:\n    from x import run\nexcept ImportError:\n    def run(c):\n        pass\n",
        "if True:\n    def run(context):\n        pass\n",
    ],
)
def test_python_run_can_be_defined_many_ways(source: str) -> None:
    assert python_header(source).has_run


def test_python_run_must_be_top_level() -> None:
    assert not python_header("def main():\n    def run(c):\n        pass\n").has_run


def test_shell_header_after_shebang() -> None:
    header = shell_header(
        "#!/bin/bash\n\n# description: x\n#inputs: [a.sh]\n\necho\n# not header\n"
    )
    assert header.text == "description: x\ninputs: [a.sh]"
    assert header.first_line == 3
    assert header.body.startswith("#!/bin/bash")


def test_sql_without_header() -> None:
    header = sql_header("-- a comment\nSELECT 1;\n")
    assert header.text is None
    assert header.body == "-- a comment\nSELECT 1;\n"


def test_header_yaml_errors_name_the_file_line(tmp_path: Path) -> None:
    write_dag(
        tmp_path, "py", {"t.py": '\n\n"""\ndescription: x\nbad: [\n"""\ndef run(c):\n    pass\n'}
    )
    assert "t.py: line 6: YAML syntax error" in load_error(tmp_path, "py")
    write_dag(tmp_path, "sh", {"t.sh": "#!/bin/sh\n# a: 1\n# b: : 2\necho\n"})
    assert "t.sh: line 3: YAML syntax error" in load_error(tmp_path, "sh")


def test_unknown_inputs_are_named(tmp_path: Path) -> None:
    write_dag(tmp_path, "t", {"a.yaml": "inputs: [x.sql, y.py]\n"})
    message = load_error(tmp_path, "t")
    assert "a.yaml: key 'inputs': unknown input(s) 'x.sql', 'y.py'" in message


def test_cross_dag_cycle_of_references_does_not_recurse(tmp_path: Path) -> None:
    write_dag(tmp_path, "a", {"a.yaml": "inputs: ['b:b.yaml']\n"})
    write_dag(tmp_path, "b", {"b.yaml": "inputs: ['a:a.yaml']\n"})
    registry = dags.register_directory(tmp_path)
    assert registry.get("a").task("a.yaml").external_inputs == (ExternalInput("b", "b.yaml"),)
    assert registry.get("b").task("b.yaml").external_inputs == (ExternalInput("a", "a.yaml"),)


def test_cross_dag_reference_to_a_missing_task_of_a_loading_dag(tmp_path: Path) -> None:
    write_dag(tmp_path, "a", {"a.yaml": "inputs: ['b:b.yaml']\n"})
    write_dag(tmp_path, "b", {"b.yaml": "inputs: ['a:nope.yaml']\n"})
    for first, second in (("a", "b"), ("b", "a")):
        # The outcome must not depend on which DAG is loaded first.
        registry = dags.register_directory(tmp_path)
        registry.load(first)
        registry.load(second)
        assert "input 'a:nope.yaml': DAG 'a' has no task 'nope.yaml'" in str(registry.load("b"))
        assert isinstance(registry.load("a"), Dag)


def test_cross_dag_input_on_a_broken_dag_checks_the_file(tmp_path: Path) -> None:
    write_dag(tmp_path, "broken", {"x.yaml": "", "y.yaml": "retries: -1\n"})
    write_dag(tmp_path, "ok", {"a.yaml": "inputs: ['broken:x.yaml']\n"})
    write_dag(tmp_path, "bad", {"a.yaml": "inputs: ['broken:_x.py']\n"})
    registry = dags.register_directory(tmp_path)
    assert isinstance(registry.load("ok"), Dag)
    assert "DAG 'broken' has no task '_x.py'" in str(registry.load("bad"))


def test_cross_dag_input_naming_its_own_dag(tmp_path: Path) -> None:
    write_dag(tmp_path, "t", {"a.yaml": "", "b.yaml": "inputs: ['t:a.yaml']\n"})
    assert "names this DAG; write just 'a.yaml'" in load_error(tmp_path, "t")


def test_registry_is_lazy(tmp_path: Path) -> None:
    write_dag(tmp_path, "good", {"a.yaml": ""})
    write_dag(tmp_path, "broken", {"a.yaml": "type: [\n"})
    write_dag(tmp_path, "needed", {"n.yaml": ""})
    write_dag(tmp_path, "uses", {"u.yaml": "inputs: ['needed:n.yaml']\n"})
    registry = dags.register_directory(tmp_path)
    registry.get("good")
    assert set(registry._read) == {"good"}
    registry.get("uses")
    # The folder of the input's DAG is read to check the input, not loaded in full.
    assert set(registry._read) == {"good", "uses", "needed"}
    assert set(registry._loaded) == {"good", "uses"}
    with pytest.raises(UnknownDagError, match="known DAGs: broken, good, needed, uses"):
        registry.get("nope")


def test_empty_workflow_yaml_needs_a_description(tmp_path: Path) -> None:
    write_dag(tmp_path, "t", {}, workflow="")
    assert "workflow.yaml: key 'description': is required" in load_error(tmp_path, "t")


def test_header_that_is_prose_is_an_error(tmp_path: Path) -> None:
    write_dag(tmp_path, "t", {"t.py": '"""Just prose."""\n\ndef run(c):\n    pass\n'})
    assert "t.py: line 1: the docstring must be a YAML mapping" in load_error(tmp_path, "t")


def test_a_helper_module_with_a_syntax_error_is_not_a_task(tmp_path: Path) -> None:
    write_dag(tmp_path, "t", {"_broken_helper.py": "def (", "a.yaml": ""})
    assert list(load(tmp_path, "t").tasks) == ["a.yaml"]


# --- a UTF-8 byte order mark before the header ----------------------------------------------


def test_shell_header_after_a_bom_is_read(tmp_path: Path) -> None:
    path = tmp_path / "b.sh"
    path.write_text(f"{BOM}#!/bin/bash\n# inputs: [a.sh]\necho hi\n", encoding="utf-8")
    task = loader.load_task(path)
    assert task.inputs == ("a.sh",)


def test_sql_header_after_a_bom_is_read(tmp_path: Path) -> None:
    path = tmp_path / "a.sql"
    path.write_text(f"{BOM}{SQL}", encoding="utf-8")
    task = loader.load_task(path)
    assert task.type is TaskType.SQL
    assert task.parameters == ("DATABASE_URL",)


def test_python_header_after_a_bom_is_read(tmp_path: Path) -> None:
    path = tmp_path / "a.py"
    path.write_text(f'{BOM}"""description: x"""\ndef run(context):\n    pass\n', "utf-8")
    task = loader.load_task(path)
    assert task.description == "x"


# --- values named in errors ---------------------------------------------------------------


class _Counted:
    calls = 0

    def __repr__(self) -> str:
        _Counted.calls += 1
        return "x"


def test_an_error_names_a_huge_value_without_rendering_it_whole() -> None:
    # What a YAML alias bomb expands to: rendering it whole would take minutes.
    _Counted.calls = 0
    value = [_Counted() for _ in range(100_000)]
    text = loader._kind(value)
    assert text.startswith("a list")
    assert _Counted.calls < 1000


# --- durations: the loader's limits are ones the planner can use --------------------------------


def test_a_retry_delay_over_a_year_is_refused(tmp_path: Path) -> None:
    write_dag(tmp_path, "d", {"a.yaml": "retry_delay: 1000000000000\n"})
    assert load_error(tmp_path, "d") == (
        f"{tmp_path / 'd' / 'a.yaml'}: key 'retry_delay': 1e+12 seconds is over a year "
        "(the limit is 31536000)"
    )


def test_a_retry_delay_of_a_year_is_planned_a_year_later(tmp_path: Path) -> None:
    write_dag(tmp_path, "d", {"a.yaml": "retry_delay: 31536000\n"})
    failed = [TaskRunState("a.yaml", 1, TaskStatus.FAILED)]
    plan = plan_run(load(tmp_path, "d"), failed, datetime(2024, 1, 1, tzinfo=UTC))
    assert [(new.task_name, new.attempt, new.not_before) for new in plan.create] == [
        ("a.yaml", 2, datetime(2024, 12, 31, tzinfo=UTC))
    ]


def test_schedule_policy_keys_and_their_defaults(tmp_path: Path) -> None:
    write_dag(tmp_path, "plain", {"a.yaml": "description: a\n"})
    dag = load(tmp_path, "plain")
    assert (dag.overlap, dag.dst_gap, dag.dst_repeat, dag.input_timeout) == (
        Overlap.QUEUE,
        None,
        None,
        None,
    )
    workflow = (
        "description: d\noverlap: replace\ndst_gap: skip\ndst_repeat: both\ninput_timeout: 60\n"
    )
    write_dag(tmp_path, "full", {"a.yaml": "description: a\ninput_timeout: 5\n"}, workflow)
    dag = load(tmp_path, "full")
    assert (dag.overlap, dag.dst_gap, dag.dst_repeat, dag.input_timeout) == (
        Overlap.REPLACE,
        DstGap.SKIP,
        DstRepeat.BOTH,
        60.0,
    )
    assert dag.input_timeout_of(dag.task("a.yaml")) == 5.0


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "overlap: sometimes",
            "key 'overlap'.*unknown value 'sometimes'; expected one of queue, skip, replace",
        ),
        ("dst_gap: 3", "key 'dst_gap'.*expected one of run_late, skip, got an integer 3"),
        ("dst_repeat: twice", "key 'dst_repeat'.*expected one of once, both"),
        ("input_timeout: 0", "key 'input_timeout'.*expected a number of seconds > 0"),
    ],
)
def test_a_bad_schedule_policy_value_is_one_line_naming_the_key(
    tmp_path: Path, line: str, expected: str
) -> None:
    write_dag(tmp_path, "bad", {}, f"description: d\n{line}\n")
    message = load_error(tmp_path, "bad")
    assert "\n" not in message
    assert re.search(expected, message), message


def test_the_fingerprint_changes_with_what_the_scheduler_decides_with(tmp_path: Path) -> None:
    write_dag(tmp_path, "one", {"a.yaml": "description: a\n"})
    write_dag(tmp_path, "same", {"a.yaml": "description: other words\n"})
    write_dag(tmp_path, "more", {"a.yaml": "description: a\n", "b.yaml": "description: b\n"})
    write_dag(
        tmp_path, "daily", {"a.yaml": "description: a\n"}, "description: d\nschedule: '@daily'\n"
    )
    fingerprints = {n: load(tmp_path, n).fingerprint for n in ("one", "same", "more", "daily")}
    assert fingerprints["one"] == fingerprints["same"]
    assert len({fingerprints["one"], fingerprints["more"], fingerprints["daily"]}) == 3
