"""Test helpers shared by the suites: DAG projects on disk, a settable clock, an in-process manager."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import ClassVar

from workflows_tick.dags import DagRegistry, register_directory
from workflows_tick.managers.base import Launch, Outcome, PollResult, RunningTaskRun, TaskManager


def write_project(root: Path, dags: Mapping[str, Mapping[str, str]]) -> DagRegistry:
    """Write DAG folders (``{dag: {file: text}}``) under ``root`` and register them."""
    for dag, files in dags.items():
        folder = root / dag
        folder.mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            (folder / name).write_text(textwrap.dedent(content))
    (root / "config.py").write_text(
        "import os\nfrom workflows_tick import dags\n"
        "DAGS = dags.register_directory(os.path.dirname(__file__))\n"
    )
    return register_directory(root)


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float = 0, **kwargs: float) -> datetime:
        self.now += timedelta(seconds=seconds, **kwargs)
        return self.now


class InstantManager(TaskManager):
    """Runs nothing: every started attempt finishes at the next poll.

    ``outcome(launch)`` decides success (default: every attempt succeeds).
    """

    name: ClassVar[str] = "test"

    def __init__(
        self,
        outcome: Callable[[Launch], bool] = lambda launch: True,
        capacity: int = 1000,
        fail_launch: Callable[[Launch], bool] = lambda launch: False,
        finish: bool = True,
    ) -> None:
        self.outcome = outcome
        self._capacity = capacity
        self.fail_launch = fail_launch
        self.finish = finish
        self.started: list[Launch] = []
        self._pending: list[Launch] = []

    def capacity(self) -> int:
        return self._capacity - len(self._pending)

    def host_for(self, task_run_id: int, attempt: int, dag_name: str, task_name: str) -> str:
        return f"test-{task_run_id}-{attempt}"

    def start(self, launch: Launch) -> None:
        if self.fail_launch(launch):
            raise RuntimeError("no room at the inn")
        self.started.append(launch)
        self._pending.append(launch)

    def poll(self, running: Sequence[RunningTaskRun]) -> PollResult:
        if not self.finish:
            return PollResult(alive=[launch.task_run_id for launch in self._pending])
        done, self._pending = self._pending, []
        return PollResult(
            finished=[
                Outcome(
                    launch.task_run_id,
                    succeeded=self.outcome(launch),
                    exit_code=0 if self.outcome(launch) else 1,
                    error=None if self.outcome(launch) else "it failed",
                )
                for launch in done
            ]
        )

    def in_flight(self) -> int:
        return len(self._pending)

    def ran(self) -> list[tuple[str, str, int]]:
        return [(launch.dag.name, launch.task.name, launch.attempt) for launch in self.started]
