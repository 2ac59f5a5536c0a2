"""The registry of a project's DAG folders: ``DAGS = dags.register_directory(...)``.

The registry finds the DAG folders, has :mod:`workflows_tick.loader` read each one
(lazily, by name) and then checks the inputs one DAG takes from another over what
it read. The DAGs themselves are plain values of :mod:`workflows_tick.model`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from workflows_tick.errors import DagLoadError, UnknownDagError, UsageError
from workflows_tick.hooks import Hook
from workflows_tick.loader import WORKFLOW_FILE, is_task_file, load_dag, load_task_alone
from workflows_tick.model import Dag, ExternalInput, Task, merge_worker_config

__all__ = ["DagRegistry", "register_directory"]


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
        self.scanned_at = datetime.now(UTC)
        """When the folders were last listed (taken just before listing them)."""
        self._folders = _scan_all(self.roots)
        self._read: dict[str, Dag | DagLoadError] = {}
        """Each folder as the loader read it, before cross-DAG inputs are checked."""
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
            result = self._read_folder(name)
            if isinstance(result, Dag):
                try:
                    self._check_external_inputs(result)
                except DagLoadError as exc:
                    result = exc
            self._loaded[name] = result
        return self._loaded[name]

    def task_alone(self, name: str, task: str) -> Dag | None:
        """DAG ``name`` holding only ``task``, read from its ``workflow.yaml`` and that
        task's file alone (see :func:`~workflows_tick.loader.load_task_alone`); None
        when that is not enough (no such task file, a problem in either file, two
        folders of that name): :meth:`get` then says what is wrong with the DAG."""
        folders = self._folders.get(name)
        if folders is None or len(folders) != 1:
            return None
        try:
            dag = load_task_alone(folders[0], name, task)
        except DagLoadError:
            return None
        return replace(dag, registry=self)

    def _read_folder(self, name: str) -> Dag | DagLoadError:
        if name not in self._read:
            folders = self._folders[name]
            if len(folders) > 1:
                others = ", ".join(str(f) for f in folders[1:])
                self._read[name] = DagLoadError(
                    str(folders[0]), f"DAG name {name!r} is also used by {others}"
                )
            else:
                try:
                    self._read[name] = replace(load_dag(folders[0], name), registry=self)
                except DagLoadError as exc:
                    self._read[name] = exc
        return self._read[name]

    def _check_external_inputs(self, dag: Dag) -> None:
        """Raise DagLoadError for the first ``other_dag:task`` input that names
        nothing: checked over the other DAG as read (its own cross-DAG inputs
        unchecked), so two DAGs may name each other's tasks."""
        for task in dag.tasks.values():
            for ref in task.external_inputs:
                problem = self._external_input_problem(dag.name, ref)
                if problem is not None:
                    raise DagLoadError(
                        str(task.path), f"input '{ref.dag}:{ref.task}': {problem}", "key 'inputs'"
                    )

    def _external_input_problem(self, name: str, ref: ExternalInput) -> str | None:
        if ref.dag == name:
            return f"names this DAG; write just {ref.task!r}"
        if ref.dag not in self._folders:
            others = [n for n in self._folders if n != name]
            known = ", ".join(others[:10]) + (", ..." if len(others) > 10 else "") or "none"
            return f"no DAG {ref.dag!r} (other DAGs: {known})"
        other = self._read_folder(ref.dag)
        if isinstance(other, Dag):
            if ref.task in other.tasks:
                return None
            tasks = ", ".join(other.tasks) or "none"
            return f"DAG {ref.dag!r} has no task {ref.task!r}; its tasks: {tasks}"
        # The other DAG is broken: its own load reports why. Here, check only that
        # the task file is there, so this DAG does not fail for the other's mistake.
        if "/" in ref.task or not is_task_file(self.folder(ref.dag) / ref.task):
            return f"DAG {ref.dag!r} has no task {ref.task!r}"
        return None

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
        return merge_worker_config(
            self.worker_config, dag.worker_config, task.worker_config if task else {}
        )

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
        self.scanned_at = datetime.now(UTC)
        self._folders = _scan_all(self.roots)
        self._read.clear()
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
