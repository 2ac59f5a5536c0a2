"""The :class:`TaskManager` extension point.

The tick pass owns the database; a manager only executes. Each pass the tick

1. calls :meth:`TaskManager.poll` with the task runs of this manager that the
   database says are running, and records what finished (and renews the lease of
   what is still alive);
2. claims up to :meth:`TaskManager.capacity` waiting task runs, records each as
   running with host :meth:`TaskManager.host_for`, commits;
3. calls :meth:`TaskManager.start` for each claim. A :class:`~workflows_tick.errors.LaunchError`
   (or any exception) marks that attempt failed, so it is retried.

Subclass it to run tasks elsewhere, and name the subclass on the command line
(``workflows CONFIG schedule package.module:ClassName``): the scheduler builds it
with :meth:`TaskManager.create`. See ``docs/managers.md`` for examples.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Self

from workflows_tick.model import Dag, Task

if TYPE_CHECKING:
    from workflows_tick.dags import DagRegistry


@dataclass(frozen=True)
class Launch:
    """Everything a manager needs to start one attempt of one task."""

    task_run_id: int
    dag_run_id: int
    attempt: int
    dag: Dag
    task: Task
    config: str
    """The ``<config>`` argument as given to the scheduler, for ``workflows <config> run``."""
    parameters: Mapping[str, str] = field(default_factory=dict)
    """The dag run's trigger parameters; they reach the task as environment variables."""
    worker_config: Mapping[str, Any] = field(default_factory=dict)
    """Registry ``worker_config`` < DAG ``worker_config`` < task ``worker_config``."""

    @property
    def timeout(self) -> float | None:
        return self.task.timeout


@dataclass(frozen=True)
class RunningTaskRun:
    """A task run the database records as running under this manager."""

    id: int
    dag_run_id: int
    dag_name: str
    task_name: str
    attempt: int
    host: str | None
    started_at: datetime | None
    lease_expires_at: datetime | None
    cancelled: bool = False
    """Its run was cancelled: the manager running it must stop it (and report it ended)."""


@dataclass(frozen=True)
class Outcome:
    """How one attempt ended."""

    task_run_id: int
    succeeded: bool
    exit_code: int | None = None
    error: str | None = None
    output_tail: str | None = None


@dataclass(frozen=True)
class PollResult:
    finished: Sequence[Outcome] = ()
    alive: Sequence[int] = ()
    """Task runs seen still running: their lease is renewed."""


@dataclass(frozen=True)
class ManagerSettings:
    """What the ``schedule`` command's options say to the manager it builds."""

    concurrency: int
    """``--concurrency``: attempts one scheduler process runs at once."""
    max_running: int
    """``--max-running``: attempts in flight across every scheduler."""
    fork_server: bool = True
    """``--fork-server/--no-fork-server``: the worker forks attempts from a warm server."""


class TaskManager(ABC):
    """Executes claimed task runs and reports how they end."""

    name: ClassVar[str]
    """Stored on each task run it starts: a scheduler polls only the rows of its manager's name."""
    global_limit: int | None = None
    """A cap on running task runs of this manager across every scheduler, or None."""
    wakes_on_exit: ClassVar[bool] = False
    """True when :meth:`wait` returns as soon as an attempt started here ends: the
    loop then sleeps right after a pass that started attempts, instead of passing
    again at once to look for outcomes."""
    needs_database_url: ClassVar[bool] = False
    """True when attempts run on other machines, which cannot reach an embedded
    PostgreSQL: the scheduler then refuses to start without a database URL."""

    @classmethod
    def create(cls, registry: DagRegistry, settings: ManagerSettings) -> Self:
        """The manager ``workflows CONFIG schedule`` runs. The default calls ``cls()``;
        override it to use the registry (its ``worker_config``) or the settings."""
        return cls()

    @abstractmethod
    def capacity(self) -> int:
        """How many more task runs this scheduler process may start now."""

    @abstractmethod
    def host_for(self, task_run_id: int, attempt: int, dag_name: str, task_name: str) -> str:
        """Where the attempt will run (hostname, pod name); recorded before launch."""

    def fixed_host(self) -> str | None:
        """The host every attempt records when it is the same for all of them (the
        claim then records it in the same statement), else None (the default):
        :meth:`host_for` is asked for each attempt."""
        return None

    @abstractmethod
    def start(self, launch: Launch) -> None:
        """Start the attempt without waiting for it; raise LaunchError when it cannot start."""

    @abstractmethod
    def poll(self, running: Sequence[RunningTaskRun]) -> PollResult:
        """Report which of ``running`` finished and which are still alive.

        Task runs this manager knows nothing about (another scheduler's
        subprocesses) are left out of both lists: their lease decides. A row
        marked ``cancelled`` is stopped (its process group killed, its pod
        deleted) and reported finished once it is gone; the tick records any
        attempt of a cancelled run that did not succeed as ``cancelled``.
        """

    def validate(self, dag: Dag, worker_config: Mapping[str, Any]) -> list[str]:
        """Problems that stop this manager from running ``dag`` (one line each)."""
        return []

    def in_flight(self) -> int:
        """Attempts started by this process that have not been reported finished."""
        return 0

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds, or less when an attempt finishes.

        Returns True when it returned early because an attempt finished (the loop
        then runs a pass at once, so downstream tasks start promptly).
        """
        if timeout > 0:
            time.sleep(timeout)
        return False

    def shutdown(self, kill: bool) -> Sequence[Outcome]:
        """Stop: with ``kill``, end running attempts and report them failed;
        otherwise wait for them and report how they ended."""
        return ()
