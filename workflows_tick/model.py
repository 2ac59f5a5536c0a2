"""The DAG model: tasks, DAGs, their order and their manager options.

Plain values and pure functions: no files, no database, no Kubernetes. Folders are
read into these by :mod:`workflows_tick.loader`, on behalf of the registry in
:mod:`workflows_tick.dags`.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workflows_tick.errors import UnknownTaskError, UsageError

DEFAULT_RETRIES = 2
DEFAULT_RETRY_DELAY = 0.0
DEFAULT_TIMEZONE = "UTC"


class TaskType(enum.StrEnum):
    NO_OP = "no_op"
    SQL = "sql"
    PYTHON = "python"
    SHELL = "shell"


class Overlap(enum.StrEnum):
    """What a scheduled fire does while an earlier run of the DAG has not ended."""

    QUEUE = "queue"
    """Create the run; it starts when the earlier ones have ended (the default)."""
    SKIP = "skip"
    """Create no run; the fire is recorded as a ``skipped`` run."""
    REPLACE = "replace"
    """Cancel the earlier runs that have not ended, then create the run."""


class DstGap(enum.StrEnum):
    """A fire time that does not exist on the spring-forward day (unset: cron's rule)."""

    RUN_LATE = "run_late"
    """Fire at the first existing time after the gap."""
    SKIP = "skip"
    """Do not fire."""


class DstRepeat(enum.StrEnum):
    """A fire time that occurs twice on the fall-back day (unset: cron's rule)."""

    ONCE = "once"
    """Fire at its first occurrence only."""
    BOTH = "both"
    """Fire at both occurrences."""


@dataclass(frozen=True)
class OutputColumn:
    name: str
    datatype: str | None = None
    nullable: bool | None = None


@dataclass(frozen=True)
class TableOutput:
    """A table a task promises to produce, checked after it ran."""

    name: str
    columns: tuple[OutputColumn, ...] = ()
    validation_queries: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExternalInput:
    """An input on a task of another DAG (``other_dag:task.sql``)."""

    dag: str
    task: str


@dataclass(frozen=True)
class Task:
    """One task file. ``name`` is the file name, extension included (``load.sql``)."""

    name: str
    type: TaskType
    path: Path
    description: str = ""
    inputs: tuple[str, ...] = ()
    external_inputs: tuple[ExternalInput, ...] = ()
    parameters: tuple[str, ...] = ()
    outputs: tuple[TableOutput, ...] = ()
    worker_config: Mapping[str, Any] = field(default_factory=dict)
    retries: int | None = None
    retry_delay: float | None = None
    timeout: float | None = None
    input_timeout: float | None = None
    """Seconds a task run may wait for its inputs on other DAGs before it fails."""
    body: str = ""
    """The SQL of a ``sql`` task or the script of a ``shell`` task."""
    dag: Dag | None = field(default=None, compare=False, repr=False)
    """The DAG holding this task, set when the DAG is built (dag-workflows' ``task.dag``)."""

    @property
    def all_parameters(self) -> tuple[str, ...]:
        """Every environment variable the task receives (dag-workflows' name for it)."""
        return self.parameters


class TaskTable(Mapping[str, Task]):
    """A DAG's tasks by name, in topological order.

    Also callable as dag-workflows' ``dag.tasks(inputs_to=None, external=False)``: the
    task names (those upstream of ``inputs_to`` only, when given), plus the
    ``dag:task`` names of inputs on other DAGs when ``external`` is true.
    """

    def __init__(self, tasks: Mapping[str, Task]) -> None:
        self._tasks = dict(tasks)

    def __getitem__(self, name: str) -> Task:
        return self._tasks[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tasks)

    def __len__(self) -> int:
        return len(self._tasks)

    def __repr__(self) -> str:
        return f"TaskTable({list(self._tasks)!r})"

    def __call__(self, *, inputs_to: str | None = None, external: bool = False) -> list[str]:
        if inputs_to is None:
            chosen = list(self._tasks.values())
        else:
            parents = {t.name: list(t.inputs) for t in self._tasks.values()}
            upstream = _closure(inputs_to, parents) - {inputs_to}
            chosen = [t for t in self._tasks.values() if t.name in upstream]
        names = [t.name for t in chosen]
        if external:
            also = chosen if inputs_to is None else [*chosen, self._tasks[inputs_to]]
            refs = (f"{ref.dag}:{ref.task}" for t in also for ref in t.external_inputs)
            names += list(dict.fromkeys(refs))
        return names


@dataclass(frozen=True)
class Dag:
    """A loaded DAG. ``tasks`` is in a topological order (inputs first, then by name)."""

    name: str
    path: Path
    description: str
    tasks: Mapping[str, Task]
    schedule: str | None = None
    timezone: str = DEFAULT_TIMEZONE
    retries: int = DEFAULT_RETRIES
    retry_delay: float = DEFAULT_RETRY_DELAY
    worker_config: Mapping[str, Any] = field(default_factory=dict)
    overlap: Overlap = Overlap.QUEUE
    dst_gap: DstGap | None = None
    dst_repeat: DstRepeat | None = None
    input_timeout: float | None = None
    """The default of the tasks' ``input_timeout`` (None: wait as long as it takes)."""
    skipped: tuple[str, ...] = ()
    """Files of the folder that look like tasks but are not, each with the reason."""
    registry: Any = field(default=None, compare=False, repr=False)
    """The :class:`~workflows_tick.dags.DagRegistry` that loaded this DAG
    (dag-workflows' ``dag.registry``); typed loosely so the model imports no I/O."""
    fingerprint: str = field(init=False, compare=False, repr=False)
    """A short hash of what the scheduler decides with (see :func:`fingerprint_of`)."""

    def __post_init__(self) -> None:
        table = self.tasks if isinstance(self.tasks, TaskTable) else TaskTable(self.tasks)
        object.__setattr__(self, "tasks", table)
        for task in table.values():
            object.__setattr__(task, "dag", self)
        object.__setattr__(self, "fingerprint", fingerprint_of(self))

    @property
    def folder(self) -> str:
        """The DAG's folder (dag-workflows' name for :attr:`path`)."""
        return str(self.path)

    def task(self, name: str) -> Task:
        try:
            return self.tasks[name]
        except KeyError:
            raise UnknownTaskError(self.name, name, self.tasks) from None

    get_task = task

    def max_attempts(self, task: Task) -> int:
        retries = self.retries if task.retries is None else task.retries
        return retries + 1

    def retry_delay_of(self, task: Task) -> float:
        return self.retry_delay if task.retry_delay is None else task.retry_delay

    def input_timeout_of(self, task: Task) -> float | None:
        return self.input_timeout if task.input_timeout is None else task.input_timeout

    def downstream(self, name: str) -> set[str]:
        """``name`` and every task that depends on it, directly or not."""
        children: dict[str, list[str]] = {t: [] for t in self.tasks}
        for task in self.tasks.values():
            for parent in task.inputs:
                children[parent].append(task.name)
        return _closure(name, children)

    def upstream(self, name: str) -> set[str]:
        """``name`` and every task it depends on, directly or not."""
        parents = {t.name: list(t.inputs) for t in self.tasks.values()}
        return _closure(name, parents)

    def select(
        self, only: str | None = None, begin: str | None = None, end: str | None = None
    ) -> list[Task]:
        """The tasks picked by ``-o``/``-b``/``-e``, in topological order."""
        for name in (only, begin, end):
            if name is not None:
                self.task(name)
        if only is not None:
            chosen = {only}
        else:
            chosen = set(self.tasks)
            if begin is not None:
                chosen &= self.downstream(begin)
            if end is not None:
                chosen &= self.upstream(end)
            if not chosen:
                raise UsageError(
                    f"no task of DAG {self.name!r} is both downstream of {begin!r} "
                    f"and upstream of {end!r}"
                )
        return [t for t in self.tasks.values() if t.name in chosen]


def fingerprint_of(dag: Dag) -> str:
    """A short hash of everything the scheduler decides a DAG's runs with: its tasks
    (names, types, inputs here and on other DAGs, retries, delays and timeouts) and
    its schedule keys. Task code, descriptions, parameters and manager options are
    left out: they change what an attempt does, not what the scheduler decides.

    Two schedulers with the same fingerprint for a DAG plan its runs the same way.
    """
    tasks = [
        [
            t.name,
            t.type.value,
            list(t.inputs),
            [f"{ref.dag}:{ref.task}" for ref in t.external_inputs],
            t.retries,
            t.retry_delay,
            t.timeout,
            t.input_timeout,
        ]
        for t in sorted(dag.tasks.values(), key=lambda t: t.name)
    ]
    keys = [
        dag.schedule,
        dag.timezone,
        dag.retries,
        dag.retry_delay,
        dag.overlap.value,
        dag.dst_gap and dag.dst_gap.value,
        dag.dst_repeat and dag.dst_repeat.value,
        dag.input_timeout,
    ]
    text = json.dumps([tasks, keys], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _closure(start: str, edges: Mapping[str, list[str]]) -> set[str]:
    seen = {start}
    stack = [start]
    while stack:
        for nxt in edges[stack.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen


def topological_order(edges: Mapping[str, tuple[str, ...]]) -> list[str] | list[list[str]]:
    """Order nodes so inputs come first (ties by name).

    ``edges`` maps each node to its inputs. Returns the order, or, when there is a
    cycle, a list holding one cycle as a list of nodes (first node repeated last).
    """
    pending = {n: set(ins) for n, ins in edges.items()}
    order: list[str] = []
    ready = sorted(n for n, ins in pending.items() if not ins)
    while ready:
        node = ready.pop(0)
        order.append(node)
        del pending[node]
        freed = [n for n, ins in pending.items() if node in ins]
        for n in freed:
            pending[n].discard(node)
        ready = sorted(set(ready) | {n for n in freed if not pending[n]})
    if not pending:
        return order
    return [_find_cycle(pending)]


def _find_cycle(pending: Mapping[str, set[str]]) -> list[str]:
    node = min(pending)
    path: list[str] = []
    while node not in path:
        path.append(node)
        node = min(pending[node])
    cycle = path[path.index(node) :]
    return [*cycle, node]


def merge_worker_config(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Manager options, later layers over earlier ones (registry < DAG < task).

    Mapping values (``kube_env``, ``kube_labels``...) merge key by key, so a task
    can add one variable without repeating the others.
    """
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            current = merged.get(key)
            if isinstance(value, Mapping) and isinstance(current, Mapping):
                merged[key] = {**current, **value}
            else:
                merged[key] = value
    return merged
