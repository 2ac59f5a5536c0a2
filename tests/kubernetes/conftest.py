"""Fixtures for the kubernetes manager tests: a DAG project on disk, a settable clock,
and the kmock emulator over HTTPS."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kubernetes.kube_emulator import EmulatorThread, tls_files
from tests.support import write_project
from workflows_tick.dags import DagRegistry
from workflows_tick.testing import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC))


@pytest.fixture
def project(tmp_path: Path) -> Callable[..., DagRegistry]:
    """``project(dags, **worker_config)``; ``dags``: name -> {"workflow": {...}, "tasks":
    {file name: spec}}, each spec written as YAML."""

    def make(dags: Mapping[str, Mapping[str, Any]], **worker_config: Any) -> DagRegistry:
        files = {
            name: {
                "workflow.yaml": yaml.safe_dump(
                    {"description": f"DAG {name}", **spec.get("workflow", {})}
                ),
                **{
                    task: yaml.safe_dump({"description": task, **task_spec})
                    for task, task_spec in spec.get("tasks", {}).items()
                },
            }
            for name, spec in dags.items()
        }
        registry = write_project(tmp_path / "dags", files)
        registry.worker_config.update(worker_config)
        return registry

    return make


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A certificate and key for 127.0.0.1, shared by the tests of a module."""
    return tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def emu(tls: tuple[Path, Path]) -> Iterator[EmulatorThread]:
    """The kmock emulator on a background thread, serving HTTPS."""
    with EmulatorThread(*tls) as emulator:
        yield emulator
