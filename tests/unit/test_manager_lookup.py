"""Which TaskManager a command-line name means, and one clear line when it means none."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from workflows_tick.dags import register_directory
from workflows_tick.errors import TaskManagerError, UsageError
from workflows_tick.loop import SchedulerOptions, build_manager
from workflows_tick.managers.kubernetes import KubernetesTaskManager
from workflows_tick.managers.lookup import find_manager
from workflows_tick.managers.worker import WorkerTaskManager

MODULE = """
from workflows_tick.managers.base import TaskManager
from workflows_tick.managers.worker import WorkerTaskManager


class Nice(WorkerTaskManager):
    pass


class Helper:
    pass


class Unfinished(TaskManager):
    name = "unfinished"

    def capacity(self):
        return 1

    def host_for(self, task_run_id, attempt, dag_name, task_name):
        return "here"


class Nameless(WorkerTaskManager):
    name = ""


class NeedsArgs(WorkerTaskManager):
    def __init__(self, endpoint):
        super().__init__()

not_a_class = 42
"""


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A config file with user modules beside it; sys.path and sys.modules restored after."""
    (tmp_path / "usermgr.py").write_text(textwrap.dedent(MODULE))
    (tmp_path / "badimport.py").write_text("1 / 0\n")
    (tmp_path / "badsyntax.py").write_text("class (:\n")
    (tmp_path / "needsdep.py").write_text("import no_such_dependency_here\n")
    (tmp_path / "config.py").write_text("DAGS = None\n")
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(tmp_path.parent)
    yield str(tmp_path / "config.py")
    for name in ("usermgr", "badimport", "badsyntax", "needsdep"):
        sys.modules.pop(name, None)


def test_worker_and_kubernetes_name_the_managers_that_ship() -> None:
    assert find_manager("worker") is WorkerTaskManager
    assert find_manager("kubernetes") is KubernetesTaskManager


def test_a_module_and_class_name_load_a_subclass_next_to_the_config(config: str) -> None:
    loaded = find_manager("usermgr:Nice", config)
    assert issubclass(loaded, WorkerTaskManager)
    assert loaded.__name__ == "Nice"


def test_an_installed_module_path_loads_too() -> None:
    assert find_manager("workflows_tick.managers.worker:WorkerTaskManager") is WorkerTaskManager


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        (
            "nomad",
            "unknown task manager; use worker, kubernetes, or package.module:ClassName "
            "for a TaskManager subclass of your own",
        ),
        ("usermgr:", "unknown task manager; use worker, kubernetes, or"),
        (":Nice", "unknown task manager; use worker, kubernetes, or"),
        ("nomad:Manager", "no module named 'nomad' (not installed, and not in "),
        ("usermgr:Missing", "module 'usermgr' has no attribute 'Missing'"),
        ("usermgr:Helper", "is not a subclass of workflows_tick.managers.base.TaskManager"),
        ("usermgr:not_a_class", "is not a subclass of workflows_tick.managers.base.TaskManager"),
        (
            "usermgr:Unfinished",
            "does not implement poll, start (abstract in workflows_tick.managers.base.TaskManager)",
        ),
        ("usermgr:Nameless", "has no name: set the class attribute name = '...'"),
        ("badimport:X", "importing badimport failed: ZeroDivisionError: division by zero"),
        ("badsyntax:X", "badsyntax.py:1: syntax error: invalid syntax"),
        (
            "needsdep:X",
            "importing needsdep failed: ModuleNotFoundError: No module named 'no_such_dependency_here'",
        ),
    ],
)
def test_a_name_that_leads_to_no_usable_manager_is_one_usage_error(
    config: str, spec: str, problem: str
) -> None:
    with pytest.raises(TaskManagerError) as info:
        find_manager(spec, config)

    message = str(info.value)
    assert message.startswith(f"task manager {spec!r}: ")
    assert problem in message
    assert "\n" not in message
    assert isinstance(info.value, UsageError)
    assert info.value.exit_code == 2


def test_a_manager_that_cannot_be_built_from_the_settings_is_one_usage_error(
    config: str, tmp_path: Path
) -> None:
    options = SchedulerOptions(config=config, manager="usermgr:NeedsArgs")

    with pytest.raises(TaskManagerError) as info:
        build_manager("usermgr:NeedsArgs", register_directory(tmp_path), options)

    assert str(info.value) == (
        "task manager 'usermgr:NeedsArgs': cannot be built: NeedsArgs.__init__() got an "
        "unexpected keyword argument 'concurrency' (override create())"
    )
