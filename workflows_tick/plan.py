"""What should happen next in one dag run: pure decisions, no I/O.

Given a DAG and the task runs its run has so far, :func:`plan_run` says which task
runs to create (first attempts whose inputs all succeeded, and retries) and
whether the run is over.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from workflows_tick.dags import Dag
from workflows_tick.states import RunStatus, TaskStatus


@dataclass(frozen=True)
class TaskRunState:
    task_name: str
    attempt: int
    status: TaskStatus
    superseded: bool = False
    """Replaced by a rerun: history only, ignored by the plan (but never renumbered)."""


@dataclass(frozen=True)
class NewTaskRun:
    task_name: str
    attempt: int
    not_before: datetime


@dataclass(frozen=True)
class RunPlan:
    create: list[NewTaskRun] = field(default_factory=list)
    finish: RunStatus | None = None
    message: str | None = None


class _State(enum.Enum):
    DONE = "done"
    ACTIVE = "active"  # waiting or running, or about to be created
    PENDING = "pending"  # inputs not finished yet
    DEAD = "dead"  # failed with no attempts left
    BLOCKED = "blocked"  # an input is dead or blocked


def latest_attempts(task_runs: Iterable[TaskRunState]) -> dict[str, TaskRunState]:
    """The latest attempt of each task that a rerun has not superseded."""
    latest: dict[str, TaskRunState] = {}
    for run in task_runs:
        if run.superseded:
            continue
        seen = latest.get(run.task_name)
        if seen is None or run.attempt > seen.attempt:
            latest[run.task_name] = run
    return latest


def plan_run(dag: Dag, task_runs: Iterable[TaskRunState], now: datetime) -> RunPlan:
    """The next step of a run of ``dag`` whose task runs are ``task_runs``.

    A run succeeds when every task succeeded, and fails once nothing more can run:
    independent branches still finish first.
    """
    task_runs = list(task_runs)
    latest = latest_attempts(task_runs)
    # Attempt numbers go on across reruns; the retry budget counts the current ones.
    numbered: dict[str, int] = {}
    current: dict[str, int] = {}
    for run in task_runs:
        numbered[run.task_name] = max(numbered.get(run.task_name, 0), run.attempt)
        if not run.superseded:
            current[run.task_name] = current.get(run.task_name, 0) + 1
    states: dict[str, _State] = {}
    create: list[NewTaskRun] = []
    for task in dag.tasks.values():  # topological order: inputs are decided first
        inputs = [states[name] for name in task.inputs]
        last = latest.get(task.name)
        if last is None:
            if any(s in (_State.DEAD, _State.BLOCKED) for s in inputs):
                states[task.name] = _State.BLOCKED
            elif all(s is _State.DONE for s in inputs):
                create.append(NewTaskRun(task.name, numbered.get(task.name, 0) + 1, now))
                states[task.name] = _State.ACTIVE
            else:
                states[task.name] = _State.PENDING
        elif last.status is TaskStatus.SUCCEEDED:
            states[task.name] = _State.DONE
        elif last.status is TaskStatus.CANCELLED:
            states[task.name] = _State.DEAD  # never retried
        elif last.status is TaskStatus.FAILED:
            if current[task.name] < dag.max_attempts(task):
                delay = timedelta(seconds=dag.retry_delay_of(task))
                create.append(NewTaskRun(task.name, numbered[task.name] + 1, now + delay))
                states[task.name] = _State.ACTIVE
            else:
                states[task.name] = _State.DEAD
        else:
            states[task.name] = _State.ACTIVE

    if any(s in (_State.ACTIVE, _State.PENDING) for s in states.values()):
        return RunPlan(create=create)
    dead = sorted(name for name, s in states.items() if s is _State.DEAD)
    if not dead:
        return RunPlan(finish=RunStatus.SUCCEEDED)
    blocked = sorted(name for name, s in states.items() if s is _State.BLOCKED)
    message = "failed: " + ", ".join(
        f"{name} (after {current[name]} attempt{'s' if current[name] > 1 else ''})"
        if latest[name].status is TaskStatus.FAILED
        else f"{name} (cancelled)"
        for name in dead
    )
    if blocked:
        message += "; not run: " + ", ".join(blocked)
    return RunPlan(finish=RunStatus.FAILED, message=message)


def tasks_to_rerun(
    task_runs: Iterable[TaskRunState], dag: Dag | None, every_task: bool = False
) -> list[str]:
    """The tasks whose current attempts a rerun supersedes: with ``every_task``, all
    that ran; otherwise those that failed or were cancelled and, when ``dag`` is
    known, every task downstream of them that ran. Sorted by name."""
    latest = latest_attempts(task_runs)
    if every_task:
        return sorted(latest)
    chosen = {
        name
        for name, run in latest.items()
        if run.status in (TaskStatus.FAILED, TaskStatus.CANCELLED)
    }
    if dag is not None:
        for task in dag.tasks.values():  # topological order: inputs are decided first
            if any(name in chosen for name in task.inputs) and task.name in latest:
                chosen.add(task.name)
    return sorted(chosen)
