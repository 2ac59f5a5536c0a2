"""The exceptions of workflows-tick.

One root, :class:`WorkflowsError`. Each subclass carries its data and renders
itself as one line; the CLI prints that line and exits with ``exit_code``.
"""

from __future__ import annotations

from collections.abc import Iterable


class WorkflowsError(Exception):
    """Root of every error workflows-tick raises on purpose."""

    exit_code = 1

    def __init__(self, message: str = "workflows-tick failed") -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(WorkflowsError):
    """A mistake on the command line or in the config module (exit code 2)."""

    exit_code = 2


class ConfigError(UsageError):
    """The config module cannot be found, imported, or has no ``DAGS``."""


class UnknownDagError(UsageError, KeyError):
    """A DAG name that the registry does not hold (a KeyError too, as ``DAGS[name]``
    raises in dag-workflows)."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        names = ", ".join(sorted(known)) or "none"
        super().__init__(f"unknown DAG {name!r}; known DAGs: {names}")
        self.name = name


class UnknownTaskError(UsageError, KeyError):
    """A task name that the DAG does not hold (a KeyError too, as ``dag.get_task``
    raises in dag-workflows)."""

    def __init__(self, dag: str, name: str, known: Iterable[str]) -> None:
        names = ", ".join(sorted(known)) or "none"
        super().__init__(f"DAG {dag!r} has no task {name!r}; its tasks: {names}")
        self.dag = dag
        self.name = name


class UnknownRunError(UsageError):
    """A run id that the database does not hold."""

    def __init__(self, run_id: int) -> None:
        super().__init__(f"no run {run_id}")
        self.run_id = run_id


class RunStateError(WorkflowsError):
    """A run is not in a state that allows the command (cancel a finished run...)."""


class RunWaitTimeout(WorkflowsError):
    """A run did not end within the time given to wait for it (exit code 124, like timeout(1))."""

    exit_code = 124


class DagLoadError(WorkflowsError):
    """A DAG folder or task file that cannot be loaded.

    ``path`` is the file at fault; ``where`` the key or line within it.
    """

    def __init__(self, path: str, problem: str, where: str | None = None) -> None:
        location = f"{path}: {where}" if where else path
        super().__init__(f"{location}: {problem}")
        self.path = path
        self.where = where
        self.problem = problem


class TaskFailed(WorkflowsError):
    """A task ran and failed (bad SQL, a non-zero exit, a failed output check...)."""

    def __init__(self, dag: str, task: str, reason: str) -> None:
        super().__init__(f"task {dag}/{task} failed: {reason}")
        self.dag = dag
        self.task = task
        self.reason = reason


class MissingParameterError(UsageError):
    """A task declares a parameter that is not in the environment."""

    def __init__(self, dag: str, task: str, names: Iterable[str]) -> None:
        missing = ", ".join(names)
        super().__init__(
            f"task {dag}/{task} needs environment variable(s) {missing}, which are not set"
        )


class DatabaseConfigError(UsageError):
    """No usable database URL (or one that the chosen manager cannot use)."""


class TaskManagerError(UsageError):
    """A task manager name that does not lead to a usable :class:`TaskManager` subclass."""

    def __init__(self, spec: str, problem: str) -> None:
        super().__init__(f"task manager {spec!r}: {problem}")
        self.spec = spec
        self.problem = problem


class LaunchError(WorkflowsError):
    """A task manager could not start a task run."""


class KubernetesPermissionError(WorkflowsError):
    """The Kubernetes API refused a call for lack of permission (401/403)."""


class KubeApiError(WorkflowsError):
    """The API answered with an error (or did not answer)."""

    def __init__(self, status: int | None, reason: str, message: str) -> None:
        super().__init__(f"{status or 'no answer'} {reason}: {message}".strip())
        self.status = status
        self.reason = reason
        self.api_message = message


class KubeTransientError(KubeApiError):
    """A timeout, a lost connection, 429 or a 5xx: worth retrying."""


class KubeNotFound(KubeApiError):
    """404."""


class KubeConflict(KubeApiError):
    """409: the object already exists."""


class KubeForbidden(KubeApiError):
    """401 or 403."""


class KubernetesConfigError(WorkflowsError):
    """No usable kubeconfig or in-cluster service account."""
