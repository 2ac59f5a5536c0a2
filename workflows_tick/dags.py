"""The DAG model: tasks, DAGs, and the registry of a project's DAG folders.

Pure logic: no database, no Kubernetes. Files are read by :mod:`workflows_tick.loader`.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workflows_tick.errors import DagLoadError, UnknownDagError, UnknownTaskError, UsageError
from workflows_tick.hooks import Hook

DEFAULT_RETRIES = 2
DEFAULT_RETRY_DELAY = 0.0
DEFAULT_TIMEZONE = "UTC"
WORKFLOW_FILE = "workflow.yaml"


class TaskType(enum.StrEnum):
    NO_OP = "no_op"
    SQL = "sql"
    PYTHON = "python"
    SHELL = "shell"


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
    skipped: tuple[str, ...] = ()
    """Files of the folder that look like tasks but are not, each with the reason."""
    registry: DagRegistry | None = field(default=None, compare=False, repr=False)
    """The registry that loaded this DAG (dag-workflows' ``dag.registry``)."""

    def __post_init__(self) -> None:
        table = self.tasks if isinstance(self.tasks, TaskTable) else TaskTable(self.tasks)
        object.__setattr__(self, "tasks", table)
        for task in table.values():
            object.__setattr__(task, "dag", self)

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


class DagRegistry:
    """The DAGs of one project folder (or several, with :meth:`update`), loaded lazily.

    A DAG that fails to load is kept as its :class:`DagLoadError`: other DAGs still
    load and run, and using the broken one raises the error. Iterating the registry
    yields the DAGs that load, as in dag-workflows; :meth:`names` lists them all.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        """The first folder registered (messages name it)."""
        self.roots = [root]
        self.worker_config: dict[str, Any] = {}
        self.hooks: list[Hook] = []
        """Called on events (see :mod:`workflows_tick.hooks`), in registration order."""
        self._folders = _scan_all(self.roots)
        self._loaded: dict[str, Dag | DagLoadError] = {}
        self.generation = 0
        """Incremented by every :meth:`reload`, for caches derived from the DAGs."""

    def names(self) -> list[str]:
        return list(self._folders)

    def folder(self, name: str) -> Path:
        """The folder of DAG ``name`` (the first one, if two folders claim the name)."""
        if name not in self._folders:
            raise UnknownDagError(name, self._folders)
        return self._folders[name][0]

    def register_hook(self, hook: Hook) -> None:
        """Call ``hook(event, **kwargs)`` on every event (dag-workflows' API)."""
        self.hooks.append(hook)

    def update(self, other: DagRegistry) -> None:
        """Add the DAGs of ``other`` (dag-workflows' API). Its ``worker_config`` and
        hooks are not taken: this registry's apply to every DAG it holds."""
        clash = sorted(set(self._folders) & set(other._folders))
        if clash:
            raise UsageError(
                f"DAGS.update: DAG {clash[0]!r} is in both {self.folder(clash[0])} "
                f"and {other.folder(clash[0])}"
            )
        self.roots += [r for r in other.roots if r not in self.roots]
        self._folders = _scan_all(self.roots)
        self.generation += 1

    def __contains__(self, name: object) -> bool:
        return name in self._folders

    def __iter__(self) -> Iterator[Dag]:
        return iter(self.dags())

    def __len__(self) -> int:
        return len(self._folders)

    def get(self, name: str) -> Dag:
        """The DAG named ``name``; raises its load error if it is broken."""
        result = self.load(name)
        if isinstance(result, DagLoadError):
            raise result
        return result

    __getitem__ = get

    def load(self, name: str) -> Dag | DagLoadError:
        """The DAG or the error that stops it from loading."""
        if name not in self._folders:
            raise UnknownDagError(name, self._folders)
        if name not in self._loaded:
            from workflows_tick.loader import load_dag

            folders = self._folders[name]
            if len(folders) > 1:
                others = ", ".join(str(f) for f in folders[1:])
                self._loaded[name] = DagLoadError(
                    str(folders[0]), f"DAG name {name!r} is also used by {others}"
                )
                return self._loaded[name]
            try:
                self._loaded[name] = load_dag(folders[0], name, self)
            except DagLoadError as exc:
                self._loaded[name] = exc
        return self._loaded[name]

    def load_all(self) -> dict[str, Dag | DagLoadError]:
        return {name: self.load(name) for name in self._folders}

    def dags(self) -> list[Dag]:
        """Every DAG that loads; broken ones are left out (see :meth:`errors`)."""
        return [d for d in self.load_all().values() if isinstance(d, Dag)]

    def errors(self) -> list[DagLoadError]:
        return [e for e in self.load_all().values() if isinstance(e, DagLoadError)]

    def worker_config_for(self, dag: Dag, task: Task | None = None) -> dict[str, Any]:
        """Manager options: registry ``worker_config`` < DAG's < task's.

        ``kube_env`` (and other mapping values) merge key by key, so a task can add
        one variable without repeating the others.
        """
        merged: dict[str, Any] = {}
        layers = [self.worker_config, dag.worker_config, task.worker_config if task else {}]
        for layer in layers:
            for key, value in layer.items():
                if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
                    merged[key] = {**merged[key], **value}
                else:
                    merged[key] = value
        return merged

    def fingerprint(self) -> tuple[tuple[str, int, int], ...]:
        """A cheap summary of the folders (each DAG folder's newest mtime and file
        count): it changes when a DAG is added, removed or edited."""
        summary = []
        for name, folders in _scan_all(self.roots).items():
            for folder in folders:
                newest, count = 0, 0
                try:
                    with os.scandir(folder) as entries:
                        for entry in entries:
                            count += 1
                            newest = max(newest, entry.stat(follow_symlinks=False).st_mtime_ns)
                except OSError:
                    pass
                summary.append((name, newest, count))
        return tuple(summary)

    def reload(self) -> None:
        """Forget what was loaded and scan the folders again."""
        self._folders = _scan_all(self.roots)
        self._loaded.clear()
        self.generation += 1


def _scan_all(roots: list[Path]) -> dict[str, list[Path]]:
    """Each DAG name, in name order, with the folder(s) holding it."""
    found: dict[str, list[Path]] = {}
    for root in roots:
        for name in _scan(root):
            found.setdefault(name, []).append(root / name)
    return dict(sorted(found.items()))


def _scan(root: Path) -> list[str]:
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as exc:
        raise DagLoadError(str(root), f"cannot read the DAG folder: {exc.strerror}") from None
    names = []
    for entry in entries:
        if entry.name.startswith(".") or entry.name == "__pycache__":
            continue
        try:
            if entry.is_dir() and (Path(entry.path) / WORKFLOW_FILE).is_file():
                names.append(entry.name)
        except OSError:
            continue
    return names


def register_directory(path: str | os.PathLike[str]) -> DagRegistry:
    """Register every sub-folder of ``path`` that holds a ``workflow.yaml`` as a DAG."""
    return DagRegistry(Path(path).resolve())
