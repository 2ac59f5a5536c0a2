"""Fixtures for the kubernetes manager tests: a DAG project on disk and a settable clock."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from workflows_tick.dags import DagRegistry, register_directory
from workflows_tick.testing import FakeClock


def write_project(root: Path, dags: Mapping[str, Mapping[str, Any]]) -> DagRegistry:
    """``dags``: name -> {"workflow": {...}, "tasks": {file name: spec dict}}."""
    for name, spec in dags.items():
        folder = root / name
        folder.mkdir(parents=True)
        workflow = {"description": f"DAG {name}", **spec.get("workflow", {})}
        (folder / "workflow.yaml").write_text(yaml.safe_dump(workflow))
        for task, task_spec in spec.get("tasks", {}).items():
            (folder / task).write_text(yaml.safe_dump({"description": task, **task_spec}))
    return register_directory(root)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC))


@pytest.fixture
def project(tmp_path: Path) -> Callable[..., DagRegistry]:
    def make(dags: Mapping[str, Mapping[str, Any]], **worker_config: Any) -> DagRegistry:
        registry = write_project(tmp_path / "dags", dags)
        registry.worker_config.update(worker_config)
        return registry

    return make
