"""``workflows <config> validate`` and ``list``: load every DAG, report problems."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from workflows_tick.errors import DagLoadError
from workflows_tick.loader import WORKFLOW_FILE
from workflows_tick.model import Dag

if TYPE_CHECKING:
    from workflows_tick.dags import DagRegistry
    from workflows_tick.managers.kubernetes import KubernetesTaskManager


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    """One line per problem; empty when everything loads."""
    summary: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    """Allowed but worth a second look (e.g. pods that may run as root); not problems."""


def validate_registry(
    registry: DagRegistry,
    manager: str | None = None,
    now: datetime | None = None,
    config: str | None = None,
) -> Report:
    """Load every DAG; collect each load error (and the manager's objections) as a line.

    ``manager`` is a name as ``schedule`` takes it; ``config`` the config argument
    (a manager may live next to the config file).
    """
    report = Report()
    loaded = registry.load_all()
    dags = [d for d in loaded.values() if isinstance(d, Dag)]
    for result in loaded.values():
        if isinstance(result, DagLoadError):
            report.problems.append(str(result))
    if manager is not None:
        report.problems += _manager_problems(manager, registry, dags, config)
        if manager == "kubernetes":
            report.warnings += _kube_warnings(registry, dags)
    report.problems = list(dict.fromkeys(report.problems))
    tasks = sum(len(d.tasks) for d in dags)
    broken = len(loaded) - len(dags)
    head = f"{len(loaded)} DAG(s), {tasks} task(s)"
    if broken:
        head += f", {broken} broken"
    elif report.problems:
        head += f": {len(report.problems)} problem(s) for the {manager} manager"
    else:
        head += ": all valid"
    report.summary.append(head)
    for dag in dags:
        report.summary.append(f"  {dag_line(dag, now)}")
        report.summary += [f"    skipped {line}" for line in dag.skipped]
    return report


def list_lines(
    registry: DagRegistry, now: datetime | None = None, paused: Collection[str] = ()
) -> list[str]:
    """One line per DAG: schedule, time zone and task count, or why it does not load;
    ``, PAUSED`` for the DAGs in ``paused``."""
    lines = []
    for name in registry.names():
        result = registry.load(name)
        if isinstance(result, DagLoadError):
            lines.append(f"{name}: BROKEN: {result}")
        else:
            lines.append(dag_line(result, now) + (", PAUSED" if name in paused else ""))
    if not lines:
        lines.append(f"no DAGs in {registry.root}")
    return lines


def dag_line(dag: Dag, now: datetime | None = None) -> str:
    count = f"{len(dag.tasks)} task{'s' if len(dag.tasks) != 1 else ''}"
    if dag.schedule is None:
        return f"{dag.name}: {count}, no schedule ({dag.timezone})"
    when = next_fire_time(dag.schedule, dag.timezone, now, dag).isoformat(
        sep=" ", timespec="minutes"
    )
    return f"{dag.name}: {count}, schedule '{dag.schedule}' ({dag.timezone}), next {when}"


def next_fire_time(
    schedule: str, timezone: str, now: datetime | None = None, dag: Dag | None = None
) -> datetime:
    """The next time ``schedule`` fires after ``now``, in ``timezone``, under the DST
    policy of ``dag`` (when given)."""
    from zoneinfo import ZoneInfo

    from workflows_tick.cron import DEFAULT_DST, DstPolicy, next_fire

    dst = DEFAULT_DST if dag is None else DstPolicy.of(dag)
    fire = next_fire(schedule, timezone, now or datetime.now(UTC), dst)
    return fire.astimezone(ZoneInfo(timezone))


def _manager_problems(
    name: str, registry: DagRegistry, dags: list[Dag], config: str | None
) -> list[str]:
    """What the manager ``name`` objects to, one line each, blamed on the file at fault."""
    from workflows_tick.loop import build_manager
    from workflows_tick.managers.kubernetes import KubernetesTaskManager
    from workflows_tick.options import SchedulerOptions

    # Building a manager starts nothing and does not contact a cluster.
    checker = build_manager(name, registry, SchedulerOptions(config=config or "", manager=name))
    try:
        if isinstance(checker, KubernetesTaskManager):
            return _kube_problems(checker, registry, dags)
        return [
            f"{dag.path / WORKFLOW_FILE}: {line}"
            for dag in dags
            for line in checker.validate(dag, registry.worker_config_for(dag))
        ]
    finally:
        checker.shutdown(kill=False)


def _kube_problems(
    checker: KubernetesTaskManager, registry: DagRegistry, dags: list[Dag]
) -> list[str]:
    # Each layer is checked on its own and blamed on the file that sets it: the
    # registry's worker_config (the config module) once, then each DAG's
    # workflow.yaml, then each task's file. Only the image is checked merged.
    problems = [
        f"{registry.root}: DAGS.worker_config: {line}"
        for line in checker.config_problems(registry.worker_config)
    ]
    for dag in dags:
        lines = checker.config_problems(dag.worker_config)
        lines += checker.image_problems(dag, registry.worker_config_for(dag))
        problems += [f"{dag.path / WORKFLOW_FILE}: worker_config: {line}" for line in lines]
        for task in dag.tasks.values():
            problems += [
                f"{task.path}: worker_config of task {task.name!r}: {line}"
                for line in checker.config_problems(task.worker_config)
            ]
    return problems


def _kube_warnings(registry: DagRegistry, dags: list[Dag]) -> list[str]:
    """Each worker_config layer that lifts the pods' non-root defaults, blamed on its file."""
    from workflows_tick.managers.kubernetes.pods import security_warning

    layers: list[tuple[str, Mapping[str, Any]]] = [
        (f"{registry.root}: DAGS.worker_config", registry.worker_config)
    ]
    for dag in dags:
        layers.append((f"{dag.path / WORKFLOW_FILE}: worker_config", dag.worker_config))
        layers += [
            (f"{task.path}: worker_config of task {task.name!r}", task.worker_config)
            for task in dag.tasks.values()
        ]
    return [f"{where}: {line}" for where, config in layers if (line := security_warning(config))]
