"""A user's TaskManager subclass named on the command line: the examples of docs/managers.md."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support import query, workflows, write_project

DOC = Path(__file__).resolve().parents[2] / "docs" / "managers.md"

PROJECT = {
    "hello": {
        "workflow.yaml": "description: two shell tasks\n",
        "first.sh": "# description: prints its CPU priority\nnice\n",
        "second.sh": "# description: runs after the first\n# inputs: [first.sh]\nnice\n",
    }
}


def doc_example(heading: str) -> str:
    """The first Python block of docs/managers.md after ``heading``."""
    text = DOC.read_text()
    after = text[text.index(f"\n{heading}\n") :]
    start = after.index("```python\n") + len("```python\n")
    return after[start : after.index("\n```", start)] + "\n"


@pytest.mark.parametrize(
    ("heading", "module", "spec", "niceness"),
    [
        ("### Example: the worker manager at low priority", "mymodule", "mymodule:MyManager", 10),
        ("## Example: a thread-pool manager", "threads", "threads:ThreadPoolTaskManager", 0),
    ],
)
def test_schedule_runs_a_dag_with_the_documented_manager_next_to_the_config(
    tmp_path: Path,
    subprocess_env: dict[str, str],
    database_url: str,
    heading: str,
    module: str,
    spec: str,
    niceness: int,
) -> None:
    write_project(tmp_path, PROJECT)
    (tmp_path / f"{module}.py").write_text(doc_example(heading))
    config = str(tmp_path / "config.py")
    run_id = workflows(config, "trigger", "hello", env=subprocess_env).stdout.strip()

    # The command runs from the repository, not tmp_path: the module is found next to the config.
    scheduled = workflows(
        config, "schedule", spec, "--until-idle", "--interval", "0.2", env=subprocess_env
    )

    assert scheduled.returncode == 0, scheduled.stderr
    assert query(database_url, f"SELECT status FROM dag_run WHERE id = {int(run_id)}") == [
        ("succeeded",)
    ]
    tails = query(database_url, "SELECT task_name, status, output_tail FROM task_run ORDER BY id")
    expected = [str(os.nice(0) + niceness)]  # what `nice` printed, among the log lines
    assert [(name, status, _numbers(tail)) for name, status, tail in tails] == [
        ("first.sh", "succeeded", expected),
        ("second.sh", "succeeded", expected),
    ]


def _numbers(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip().isdigit()]


def test_validate_asks_the_named_manager(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    write_project(tmp_path, PROJECT)
    (tmp_path / "picky.py").write_text(
        "from workflows_tick.managers.worker import WorkerTaskManager\n\n\n"
        "class Picky(WorkerTaskManager):\n"
        "    def validate(self, dag, worker_config):\n"
        "        return [f'{dag.name} needs a queue'] if 'queue' not in worker_config else []\n"
    )

    checked = workflows(
        str(tmp_path / "config.py"), "validate", "--manager", "picky:Picky", env=subprocess_env
    )

    assert checked.returncode == 1
    assert checked.stderr.strip() == f"{tmp_path / 'hello' / 'workflow.yaml'}: hello needs a queue"


@pytest.mark.parametrize("command", ["schedule", "validate --manager"])
def test_a_name_that_is_no_task_manager_is_one_line_and_exit_2(
    tmp_path: Path, command: str
) -> None:
    write_project(tmp_path, PROJECT)
    (tmp_path / "mine.py").write_text("class Helper:\n    pass\n")

    # No database: the name is checked before the scheduler connects.
    result = workflows(
        str(tmp_path / "config.py"), *command.split(), "mine:Helper", env=dict(os.environ)
    )

    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        "workflows: task manager 'mine:Helper': "
        "is not a subclass of workflows_tick.managers.base.TaskManager\n"
    )
