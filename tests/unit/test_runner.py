"""The in-process runner, for tasks that need no database."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.support import write_dag
from workflows_tick import model
from workflows_tick.errors import MissingParameterError, TaskFailed
from workflows_tick.runner import datatype_matches, run_tasks, task_environment


def run_all(dag: model.Dag, environ: dict[str, str] | None = None) -> None:
    run_tasks(dag, list(dag.tasks.values()), environ or {})


def test_python_task_sees_only_its_parameters(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    source = f'''"""
parameters: [WANTED]
"""
import os


def run(context):
    with open({str(out)!r}, "w") as f:
        f.write(repr((sorted(context), os.environ.get("WANTED"), os.environ.get("SECRET"))))
'''
    dag = write_dag(tmp_path, {"t.py": source})
    before = dict(os.environ)
    run_all(dag, {"WANTED": "yes", "SECRET": "no"})
    # "conn" is there too, None without DATABASE_URL (as in dag-workflows).
    assert out.read_text() == repr((["WANTED", "conn"], "yes", None))
    assert dict(os.environ) == before


def test_python_task_sees_its_parameters_when_given_os_environ_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `workflows run` hands the runner os.environ, which the task's run then cuts down.
    out = tmp_path / "out.txt"
    source = f'''"""
parameters: [WANTED]
"""
import os


def run(context):
    with open({str(out)!r}, "w") as f:
        f.write(repr((os.environ.get("WANTED"), os.environ.get("SECRET"))))
'''
    dag = write_dag(tmp_path, {"t.py": source})
    monkeypatch.setenv("WANTED", "yes")
    monkeypatch.setenv("SECRET", "no")
    before = dict(os.environ)
    run_tasks(dag, list(dag.tasks.values()), os.environ)
    assert out.read_text() == repr(("yes", None))
    assert dict(os.environ) == before


def test_python_task_imports_sibling_helpers(tmp_path: Path) -> None:
    dag = write_dag(
        tmp_path,
        {
            "_helper.py": "VALUE = 41\n",
            "t.py": "from _helper import VALUE\n\ndef run(context):\n    assert VALUE + 1 == 42\n",
        },
    )
    path_before = list(sys.path)
    run_all(dag)
    assert sys.path == path_before


def test_python_exception_becomes_task_failed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dag = write_dag(tmp_path, {"t.py": "def run(context):\n    raise ValueError('bad\\nvalue')\n"})
    with pytest.raises(TaskFailed, match=r"^task d/t.py failed: ValueError: bad value$"):
        run_all(dag)
    assert "Traceback" in capsys.readouterr().err


def test_python_import_error_and_exit_codes(tmp_path: Path) -> None:
    dag = write_dag(
        tmp_path,
        {
            "a.py": "import no_such_module_here\n\ndef run(context):\n    pass\n",
            "b.py": "import sys\n\ndef run(context):\n    sys.exit(0)\n",
            "c.py": "import sys\n\ndef run(context):\n    sys.exit(4)\n",
        },
    )
    with pytest.raises(TaskFailed, match="ModuleNotFoundError"):
        run_tasks(dag, [dag.task("a.py")], {})
    run_tasks(dag, [dag.task("b.py")], {})
    with pytest.raises(TaskFailed, match="SystemExit: 4"):
        run_tasks(dag, [dag.task("c.py")], {})


def test_a_python_task_past_its_timeout_fails(tmp_path: Path) -> None:
    source = '"""\ntimeout: 0.2\n"""\nimport time\n\ndef run(context):\n    time.sleep(5)\n'
    dag = write_dag(tmp_path, {"t.py": source})
    with pytest.raises(TaskFailed, match=r"timed out after 0.2s"):
        run_all(dag)


def test_shell_task_environment_and_exit_code(tmp_path: Path) -> None:
    out = tmp_path / "env.txt"
    dag = write_dag(
        tmp_path,
        {
            "a.sh": f"# parameters: [WANTED]\nenv > {out}\n",
            "b.sh": "# inputs: [a.sh]\nexit 7\n",
            "c.sh": "# inputs: [b.sh]\ntouch never\n",
        },
    )
    with pytest.raises(TaskFailed, match=r"^task d/b.sh failed: exit code 7$"):
        run_all(dag, {"WANTED": "a b; $(rm -rf /)", "SECRET": "s3cret", "PATH": "/usr/bin:/bin"})
    env = dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)
    assert env["WANTED"] == "a b; $(rm -rf /)"
    assert "SECRET" not in env
    assert not (dag.path / "never").exists()


def test_shell_timeout_kills_the_process_group(tmp_path: Path) -> None:
    dag = write_dag(tmp_path, {"t.sh": "# timeout: 0.3\nsleep 30 &\nsleep 30\n"})
    with pytest.raises(TaskFailed, match=r"timed out after 0.3s"):
        run_all(dag)


def test_missing_parameters_stop_before_anything_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    dag = write_dag(
        tmp_path,
        {"a.sh": f"touch {marker}\n", "b.sh": "# parameters: [NEEDED, ALSO]\n# inputs: [a.sh]\n"},
    )
    with pytest.raises(
        MissingParameterError, match=r"d/b\.sh needs environment variable\(s\) NEEDED,"
    ):
        run_all(dag, {"ALSO": "x"})
    assert not marker.exists()


def test_no_op_does_nothing(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    dag = write_dag(tmp_path, {"a.yaml": ""})
    assert dag.task("a.yaml").type is model.TaskType.NO_OP
    run_all(dag)
    assert capfd.readouterr().out == ""


def test_task_environment_is_minimal() -> None:
    dag_task = model.Task("t.sh", model.TaskType.SHELL, Path("t.sh"), parameters=("X",))
    env = task_environment(dag_task, {"X": "1", "Y": "2", "HOME": "/root"})
    assert env == {
        "X": "1",
        "HOME": "/root",
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
    }


@pytest.mark.parametrize(
    ("declared", "formatted", "typname", "ok"),
    [
        ("int", "integer", "int4", True),
        ("INTEGER", "integer", "int4", True),
        ("int4", "integer", "int4", True),
        ("bigint", "integer", "int4", False),
        ("varchar", "character varying(10)", "varchar", True),
        ("varchar(10)", "character varying(10)", "varchar", True),
        ("varchar(20)", "character varying(10)", "varchar", False),
        ("timestamptz", "timestamp with time zone", "timestamptz", True),
        ("timestamp", "timestamp with time zone", "timestamptz", False),
        ("numeric", "numeric(10,2)", "numeric", True),
        ("numeric(10, 2)", "numeric(10,2)", "numeric", True),
        ("text[]", "text[]", "_text", True),
        ("text", "text[]", "_text", False),
        ("bool", "boolean", "bool", True),
        ("double", "double precision", "float8", True),
    ],
)
def test_declared_datatypes_match_postgres_type_names(
    declared: str, formatted: str, typname: str, ok: bool
) -> None:
    assert datatype_matches(declared, formatted, typname) is ok


def test_python_timeout_is_not_swallowed_by_except_exception(tmp_path: Path) -> None:
    source = (
        '"""\ntimeout: 0.2\n"""\nimport time\n\n'
        "def run(context):\n    try:\n        time.sleep(5)\n    except Exception:\n        pass\n"
    )
    dag = write_dag(tmp_path, {"t.py": source})
    with pytest.raises(TaskFailed, match=r"timed out after 0.2s"):
        run_all(dag)
