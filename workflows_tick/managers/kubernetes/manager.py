"""The kubernetes task manager: one pod per attempt, reconciled by label each pass.

``start`` creates the pod of an attempt (a pod that already exists is adopted:
the tick commits the row before creating the pod, so a crash in between leaves a
row whose pod may or may not exist). ``poll`` lists the managed pods once per
namespace and reconciles both ways: a running row whose pod finished, failed,
stayed stuck or vanished is reported; a pod whose row is no longer running is
deleted. A finished pod is only deleted once the database no longer records its
attempt as running (on a later pass): another scheduler replica, holding an
older snapshot of the running rows, never sees the pod gone while its row is
still running.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar

import tenacity

from workflows_tick.errors import (
    KubeApiError,
    KubeConflict,
    KubeForbidden,
    KubernetesPermissionError,
    KubeTransientError,
    LaunchError,
    WorkflowsError,
)
from workflows_tick.logs import redact, register_secret
from workflows_tick.managers.base import (
    Launch,
    ManagerSettings,
    Outcome,
    PollResult,
    RunningTaskRun,
    TaskManager,
)
from workflows_tick.managers.kubernetes.backend import KubeBackend
from workflows_tick.managers.kubernetes.pods import (
    DEFAULT_PENDING_TIMEOUT,
    MANAGED_SELECTOR,
    PodState,
    failure_text,
    option_problems,
    pod_manifest,
    pod_name,
    pod_options,
    read_pod,
)
from workflows_tick.model import merge_worker_config
from workflows_tick.options import DEFAULT_MAX_RUNNING

if TYPE_CHECKING:
    from workflows_tick.dags import DagRegistry
    from workflows_tick.model import Dag

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_GRACE = 30.0
"""Seconds during which a missing pod or an unknown pod is left alone.

The tick commits a row as running before it creates the pod, and another
replica may list pods between the two; a pod may also be created after another
replica read its running rows."""
DEFAULT_CAPACITY = 1_000_000
"""Per-process capacity: unbounded; ``--max-running`` (``global_limit``) is the cap."""
LOG_TAIL_LINES = 200
LOG_TAIL_BYTES = 64 * 1024
RETRY_ATTEMPTS = 4
RETRY_WAIT = 0.2
"""First back-off in seconds (doubling, at most 1 s): a pass stays within seconds."""
RETRY_BUDGET = 10.0
"""No new try after this many seconds (a try in flight still ends at its read timeout)."""


class KubernetesTaskManager(TaskManager):
    """Runs each attempt as a pod; see ``docs/kubernetes.md``."""

    name: ClassVar[str] = "kubernetes"
    needs_database_url: ClassVar[bool] = True

    def __init__(
        self,
        registry: DagRegistry,
        max_running: int = DEFAULT_MAX_RUNNING,
        *,
        backend: KubeBackend | None = None,
        clock: Callable[[], datetime] | None = None,
        grace: float = DEFAULT_GRACE,
        retry_attempts: int = RETRY_ATTEMPTS,
        retry_wait: float = RETRY_WAIT,
    ) -> None:
        self.registry = registry
        self.global_limit = max_running
        self._backend = backend
        self._owns_backend = backend is None
        self._clock = clock or (lambda: datetime.now(UTC))
        self._grace = grace
        self._retry_attempts = retry_attempts
        self._retry_wait = retry_wait
        self._namespaces_in_use: set[str] = set()
        """Namespaces holding pods this process created or last saw: listed until empty."""
        self._configured: tuple[int, frozenset[str]] | None = None
        self._log_denied: set[str] = set()
        """Namespaces where reading a pod's log was refused (warned about once)."""
        _register_env_secrets(registry.worker_config.get("kube_env"))

    @classmethod
    def create(cls, registry: DagRegistry, settings: ManagerSettings) -> Self:
        """``max_running`` from ``--max-running``; the cluster is reached on first use."""
        return cls(registry, max_running=settings.max_running)

    @property
    def backend(self) -> KubeBackend:
        """The API, connected on first use (the client is imported only then)."""
        if self._backend is None:
            from workflows_tick.managers.kubernetes.backend import ClientBackend

            self._backend = ClientBackend(in_cluster(self.registry.worker_config, os.environ))
        return self._backend

    # -- the TaskManager contract ----------------------------------------------------

    def capacity(self) -> int:
        return DEFAULT_CAPACITY

    def host_for(self, task_run_id: int, attempt: int, dag_name: str, task_name: str) -> str:
        return pod_name(dag_name, task_name, task_run_id, attempt)

    def validate(self, dag: Dag, worker_config: Mapping[str, Any]) -> list[str]:
        """Problems of ``worker_config`` (a DAG's merged one), and its tasks lacking an image.

        A task's own ``worker_config`` is not checked here: ``validate --manager
        kubernetes`` checks it against the task's file, and a launch refuses it.
        """
        return self.config_problems(worker_config) + self.image_problems(dag, worker_config)

    def config_problems(self, worker_config: Mapping[str, Any]) -> list[str]:
        """One line per bad ``kube_*`` option of one ``worker_config`` layer (or merge)."""
        _register_env_secrets(worker_config.get("kube_env"))
        return option_problems(worker_config)

    def image_problems(self, dag: Dag, worker_config: Mapping[str, Any]) -> list[str]:
        """A line naming the tasks of ``dag`` whose merged config has no ``kube_image``."""
        lacking = [
            task.name
            for task in dag.tasks.values()
            if "kube_image" not in merge_worker_config(worker_config, task.worker_config)
        ]
        if not lacking:
            return []
        names = ", ".join(repr(n) for n in lacking)
        return [
            f"kube_image is not set for task{'s' if len(lacking) > 1 else ''} {names} "
            "(set it in the registry, DAG or task worker_config)"
        ]

    def start(self, launch: Launch) -> None:
        dag, task = launch.dag, launch.task
        try:
            options = pod_options(launch.worker_config)
        except ValueError as exc:
            raise LaunchError(redact(f"task {dag.name}/{task.name}: {exc}")) from None
        _register_env_secrets(options.env)
        backend = self.backend
        namespace = options.namespace or backend.default_namespace
        name = pod_name(dag.name, task.name, launch.task_run_id, launch.attempt)
        body = pod_manifest(
            name=name,
            namespace=namespace,
            dag=dag,
            task=task,
            task_run_id=launch.task_run_id,
            attempt=launch.attempt,
            config=launch.config,
            options=options,
            parameters=launch.parameters,
        )
        try:
            self._retry(backend.create_pod, namespace, body)
        except KubeConflict:
            # Created before a crash (or by a retried request): it is this attempt's pod.
            log.info("pod %s/%s already exists: adopted", namespace, name)
            self._namespaces_in_use.add(namespace)
            return
        except KubeForbidden as exc:
            raise _permission_error("create", "pods", namespace, exc) from None
        except KubeTransientError as exc:
            raise LaunchError(
                redact(f"cannot create pod {name} in namespace {namespace!r}: {exc}")
            ) from None
        except KubeApiError as exc:
            raise LaunchError(
                redact(f"the API refused pod {name} in namespace {namespace!r}: {exc.api_message}")
            ) from None
        self._namespaces_in_use.add(namespace)
        log.info("created pod %s/%s", namespace, name)

    def poll(self, running: Sequence[RunningTaskRun]) -> PollResult:
        now = self._clock()
        placement = {row.id: self._placement(row) for row in running}
        namespaces = (
            {ns for ns, _ in placement.values()}
            | {self.backend.default_namespace}
            | self._namespaces_in_use
            | self._configured_namespaces()
        )
        pods, unlisted = self._list_pods(namespaces)
        finished: list[Outcome] = []
        alive: list[int] = []
        for row in running:
            namespace, pending_timeout = placement[row.id]
            found = pods.get((row.id, row.attempt))
            if row.cancelled:
                if namespace in unlisted:
                    continue
                outcome = self._cancel(row, found)
                if outcome is None:
                    alive.append(row.id)  # the delete failed: try again next pass
                else:
                    finished.append(outcome)
                continue
            if found is None:
                if namespace not in unlisted and self._past_grace(_aware(row.started_at), now):
                    name = pod_name(row.dag_name, row.task_name, row.id, row.attempt)
                    error = f"pod {name} vanished (deleted or evicted)"
                    finished.append(Outcome(row.id, succeeded=False, error=error))
                continue
            outcome = self._judge(row, found, now, pending_timeout)
            if outcome is None:
                alive.append(row.id)
            else:
                finished.append(outcome)
        expected = {(row.id, row.attempt) for row in running}
        for key, state in pods.items():
            # A pod younger than the grace may belong to a row we have not seen yet.
            if key not in expected and self._past_grace(state.created_at, now):
                self._delete(state)
        return PollResult(finished=finished, alive=alive)

    def _list_pods(
        self, namespaces: set[str]
    ) -> tuple[dict[tuple[int | None, int | None], PodState], set[str]]:
        """The managed pods of ``namespaces`` by (task run, attempt), and the namespaces
        that could not be listed (their rows are left to their lease)."""
        pods: dict[tuple[int | None, int | None], PodState] = {}
        unlisted: set[str] = set()
        for namespace in sorted(namespaces):
            try:
                items = self._retry(self.backend.list_pods, namespace, MANAGED_SELECTOR)
            except KubeForbidden as exc:
                raise _permission_error("list", "pods", namespace, exc) from None
            except KubeApiError as exc:
                log.warning("cannot list pods in namespace %r: %s", namespace, redact(str(exc)))
                unlisted.add(namespace)
                continue
            if items:
                self._namespaces_in_use.add(namespace)
            else:
                self._namespaces_in_use.discard(namespace)
            for item in items:
                state = read_pod(item)
                pods[(state.task_run_id, state.attempt)] = state
        return pods, unlisted

    def _past_grace(self, since: datetime | None, now: datetime) -> bool:
        """Whether more than the grace has passed since ``since`` (True when it is unknown)."""
        return since is None or (now - since).total_seconds() > self._grace

    def shutdown(self, kill: bool) -> Sequence[Outcome]:
        """Pods keep running: the next scheduler pass (of any replica) reconciles them."""
        if self._backend is not None and self._owns_backend:
            self._backend.close()
            self._backend = None
        return ()

    # -- helpers -----------------------------------------------------------------------

    def _judge(
        self, row: RunningTaskRun, state: PodState, now: datetime, pending_timeout: float
    ) -> Outcome | None:
        """The outcome the pod shows for its row, or None while it is alive."""
        if state.phase == "Succeeded":
            return Outcome(
                row.id,
                succeeded=True,
                exit_code=state.exit_code or 0,
                output_tail=self._tail(state),
            )
        if state.phase == "Failed":
            return Outcome(
                row.id,
                succeeded=False,
                exit_code=state.exit_code,
                error=redact(failure_text(state)),
                output_tail=self._tail(state),
            )
        if state.phase == "Pending" and state.stuck:
            since = state.created_at or _aware(row.started_at)
            waited = (now - since).total_seconds() if since else 0.0
            if waited > pending_timeout:
                detail = f": {state.message.strip()}" if state.message else ""
                return Outcome(
                    row.id,
                    succeeded=False,
                    error=redact(
                        f"pod {state.name} stuck pending for {waited:.0f}s "
                        f"(limit {pending_timeout:g}s): {state.reason}{detail}"
                    ),
                )
        return None

    def _cancel(self, row: RunningTaskRun, state: PodState | None) -> Outcome | None:
        """Delete the pod of an attempt of a cancelled run, whatever its phase (Pending
        included); its outcome, or None when the pod could not be deleted.

        A pod that already succeeded keeps its success. A pod created after this
        pass (by a replica that claimed the row just before the cancel) is deleted
        by a later pass as one whose row is no longer running.
        """
        if state is not None and state.phase == "Succeeded":
            return self._judge(row, state, self._clock(), DEFAULT_PENDING_TIMEOUT)
        name = pod_name(row.dag_name, row.task_name, row.id, row.attempt)
        if state is not None:
            tail = self._tail(state) if state.phase in ("Running", "Failed") else None
            if not self._delete(state):
                return None
            return Outcome(
                row.id, succeeded=False, error=f"cancelled: pod {name} deleted", output_tail=tail
            )
        return Outcome(row.id, succeeded=False, error=f"cancelled: pod {name} was not running")

    def _tail(self, state: PodState) -> str | None:
        try:
            text = self._retry(
                self.backend.read_pod_log,
                state.namespace,
                state.name,
                LOG_TAIL_LINES,
                LOG_TAIL_BYTES,
            )
        except KubeForbidden as exc:
            # Only the log is lost: the outcome is still recorded, and says why.
            why = str(_permission_error("get", "pods/log", state.namespace, exc))
            if state.namespace not in self._log_denied:
                self._log_denied.add(state.namespace)
                log.warning("%s; task runs finish without their log until then", why)
            return f"[no log: {why}]\n"
        except KubeApiError as exc:
            log.info("no log for pod %s/%s: %s", state.namespace, state.name, redact(str(exc)))
            return None
        return redact(text)

    def _delete(self, state: PodState) -> bool:
        """Delete a pod (one already gone counts as deleted); False if the API refused."""
        try:
            self._retry(self.backend.delete_pod, state.namespace, state.name)
        except KubeForbidden as exc:
            raise _permission_error("delete", "pods", state.namespace, exc) from None
        except KubeApiError as exc:
            log.warning(
                "cannot delete pod %s/%s: %s", state.namespace, state.name, redact(str(exc))
            )
            return False
        log.info("deleted pod %s/%s (%s)", state.namespace, state.name, state.phase)
        return True

    def _configured_namespaces(self) -> frozenset[str]:
        """Every ``kube_namespace`` the loaded DAGs and tasks name.

        Listed every pass, so that a fresh process (a CronJob's ``--once``) still
        finds the finished pods of a run whose last task has ended.
        """
        if self._configured is None or self._configured[0] != self.registry.generation:
            names = set()
            for dag in self.registry.dags():
                for task in [None, *dag.tasks.values()]:
                    namespace = self.registry.worker_config_for(dag, task).get("kube_namespace")
                    if isinstance(namespace, str) and namespace:
                        names.add(namespace)
            self._configured = (self.registry.generation, frozenset(names))
        return self._configured[1]

    def _placement(self, row: RunningTaskRun) -> tuple[str, float]:
        """The namespace and pending timeout of a row's task, from the merged config."""
        default = self.backend.default_namespace
        try:
            dag = self.registry.get(row.dag_name)
        except WorkflowsError:
            return default, DEFAULT_PENDING_TIMEOUT
        config = self.registry.worker_config_for(dag, dag.tasks.get(row.task_name))
        namespace = config.get("kube_namespace")
        timeout = config.get("kube_pending_timeout")
        return (
            namespace if isinstance(namespace, str) and namespace else default,
            float(timeout)
            if isinstance(timeout, int | float) and not isinstance(timeout, bool) and timeout > 0
            else DEFAULT_PENDING_TIMEOUT,
        )

    def _retry(self, fn: Callable[..., T], *args: Any) -> T:
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(KubeTransientError),
            stop=(
                tenacity.stop_after_attempt(self._retry_attempts)
                | tenacity.stop_after_delay(RETRY_BUDGET)
            ),
            wait=tenacity.wait_exponential(multiplier=self._retry_wait, max=1.0),
            sleep=time.sleep,
            reraise=True,
            before_sleep=_log_retry,
        )
        return retrying(fn, *args)


MIN_ENV_SECRET_LENGTH = 8
"""``kube_env`` values at least this long are secrets: scrubbed from log messages and errors.

Shorter values (``INFO``, ``8080``, ``prod``) are not: masking them would mask every
word or pod name that contains them. See docs/kubernetes.md."""


def in_cluster(worker_config: Mapping[str, Any], environ: Mapping[str, str]) -> bool:
    """``kube_in_cluster`` when set; else whether this process runs in a pod (the
    kubelet sets ``KUBERNETES_SERVICE_HOST`` in every container), as dag-workflows
    defaulted to the in-cluster service account."""
    setting = worker_config.get("kube_in_cluster")
    if isinstance(setting, bool):
        return setting
    return bool(environ.get("KUBERNETES_SERVICE_HOST"))


def _register_env_secrets(env: object) -> None:
    """Register the ``kube_env`` values of ``env`` (a mapping) that are long enough."""
    if not isinstance(env, Mapping):
        return
    for value in env.values():
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            text = str(value)
            if len(text) >= MIN_ENV_SECRET_LENGTH:
                register_secret(text)


def _log_retry(state: tenacity.RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    log.info("Kubernetes API call failed (%s), retrying", redact(str(exc)))


def _aware(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _permission_error(
    verb: str, resource: str, namespace: str, exc: KubeApiError
) -> KubernetesPermissionError:
    if exc.status == 401:
        return KubernetesPermissionError(
            f'cannot {verb} {resource} in namespace "{namespace}": the API server rejected '
            "the credentials (401 Unauthorized)"
        )
    return KubernetesPermissionError(
        f'cannot {verb} {resource} in namespace "{namespace}": '
        f"grant the role verbs [{verb}] on {resource}"
    )
