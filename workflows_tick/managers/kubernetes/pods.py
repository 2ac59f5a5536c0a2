"""Task pods: the ``kube_*`` options, pod names and labels, the pod manifest, and
what a pod's status means for its task run.

Pure logic: no Kubernetes client, no I/O. Manifests and pods are plain dicts in
the API's JSON shape (camelCase), as sent and as listed.
"""

from __future__ import annotations

import copy
import hashlib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from workflows_tick.model import Dag, Task

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "workflows-tick"
MANAGED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
DAG_LABEL = "workflows-tick/dag"
TASK_LABEL = "workflows-tick/task"
TASK_RUN_LABEL = "workflows-tick/task-run"
ATTEMPT_LABEL = "workflows-tick/attempt"
DAG_ANNOTATION = "workflows-tick/dag-name"
TASK_ANNOTATION = "workflows-tick/task-name"
CONTAINER_NAME = "task"

DEFAULT_PENDING_TIMEOUT = 300.0
"""Seconds a pod may stay stuck (image pull, config error, unschedulable) before its attempt fails."""

MAX_NAME = 63
HASH_LENGTH = 6

STUCK_WAITING_REASONS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "CreateContainerConfigError",
        "CreateContainerError",
        "InvalidImageName",
    }
)
UNSCHEDULABLE = "Unschedulable"
IMAGE_PULL_POLICIES = ("Always", "IfNotPresent", "Never")
TOLERATION_KEYS = frozenset({"key", "operator", "value", "effect", "tolerationSeconds"})

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_QUANTITY = re.compile(
    r"^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"
)


# -- options -------------------------------------------------------------------------


@dataclass(frozen=True)
class PodOptions:
    """The ``kube_*`` options of one task, from its merged ``worker_config``."""

    image: str
    namespace: str | None = None
    command: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    requests: Mapping[str, str] = field(default_factory=dict)
    limits: Mapping[str, str] = field(default_factory=dict)
    service_account_name: str | None = None
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    image_pull_policy: str | None = None
    image_pull_secrets: tuple[str, ...] = ()
    pending_timeout: float = DEFAULT_PENDING_TIMEOUT
    security_context: Mapping[str, Any] = field(default_factory=dict)
    """``kube_security_context``, keys in the API's camelCase (see :func:`security_contexts`)."""


def _is_str_map(value: Any) -> bool:
    return isinstance(value, Mapping) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


def _check_label_key(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return False
    return len(name) <= MAX_NAME and bool(_LABEL_NAME.match(name))


def _quantity(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        value = str(value)
    if isinstance(value, str) and _QUANTITY.match(value):
        return value
    return None


def _env_value(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


TOLERATION_OPERATORS = ("Equal", "Exists")
TOLERATION_EFFECTS = ("", "NoSchedule", "PreferNoSchedule", "NoExecute")


def _toleration_problem(toleration: Mapping[str, Any]) -> str | None:
    """Why a toleration's field values are wrong (the API would refuse the pod), or None."""
    for name in ("key", "value"):
        if name in toleration and not isinstance(toleration[name], str):
            return f"a toleration's {name} must be a string"
    if "operator" in toleration and toleration["operator"] not in TOLERATION_OPERATORS:
        return f"a toleration's operator must be one of {', '.join(TOLERATION_OPERATORS)}"
    if "effect" in toleration and toleration["effect"] not in TOLERATION_EFFECTS:
        effects = ", ".join(e for e in TOLERATION_EFFECTS if e)
        return f"a toleration's effect must be one of {effects} (or empty)"
    seconds = toleration.get("tolerationSeconds")
    if "tolerationSeconds" in toleration and (
        not isinstance(seconds, int) or isinstance(seconds, bool)
    ):
        return "a toleration's tolerationSeconds must be an integer"
    return None


def _check_bool(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _check_namespace(value: Any) -> str | None:
    if isinstance(value, str) and len(value) <= MAX_NAME and _DNS_LABEL.match(value):
        return None
    return "must be a namespace name (lowercase letters, digits and '-', at most 63)"


def _check_image(value: Any) -> str | None:
    return None if isinstance(value, str) and value.strip() else "must be a non-empty string"


def _check_command(value: Any) -> str | None:
    if isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
        return None
    return "must be a non-empty list of strings"


def _check_env(value: Any) -> str | None:
    if not isinstance(value, Mapping):
        return "must be a mapping of variable names to strings"
    for name, item in value.items():
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            return f"{name!r} is not a valid environment variable name"
        if _env_value(item) is None:
            return f"the value of {name} must be a string or a number"
    return None


def _check_quantity(value: Any) -> str | None:
    if _quantity(value) is not None:
        return None
    return "must be a Kubernetes quantity such as 500m, 2, 256Mi or 1Gi"


def _check_service_account(value: Any) -> str | None:
    if isinstance(value, str) and len(value) <= 253 and _DNS_SUBDOMAIN.match(value):
        return None
    return "must be a service account name"


def _check_labels(value: Any, *, check_values: bool = True) -> str | None:
    """A mapping of label keys to label values (any string values with ``check_values=False``)."""
    if not _is_str_map(value):
        return "must be a mapping of strings to strings"
    for name, item in value.items():
        if not _check_label_key(name):
            return f"{name!r} is not a valid key"
        if check_values and (len(item) > MAX_NAME or not _LABEL_VALUE.match(item)):
            return f"the value {item!r} of {name} is not a valid label value"
    return None


def _check_annotations(value: Any) -> str | None:
    return _check_labels(value, check_values=False)


def _check_tolerations(value: Any) -> str | None:
    if not isinstance(value, list | tuple) or not all(isinstance(t, Mapping) for t in value):
        return "must be a list of tolerations (mappings with key, operator, value, effect)"
    for toleration in value:
        unknown = sorted(set(toleration) - TOLERATION_KEYS)
        if unknown:
            return f"a toleration has unknown field(s) {', '.join(unknown)}"
        why = _toleration_problem(toleration)
        if why:
            return why
    return None


def _check_pull_policy(value: Any) -> str | None:
    if value in IMAGE_PULL_POLICIES:
        return None
    return f"must be one of {', '.join(IMAGE_PULL_POLICIES)}"


def _check_pull_secrets(value: Any) -> str | None:
    if isinstance(value, list | tuple) and all(isinstance(v, str) and v for v in value):
        return None
    return "must be a list of secret names"


def _check_positive_seconds(value: Any) -> str | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return None
    return "must be a positive number of seconds"


# -- security contexts ---------------------------------------------------------------

DEFAULT_POD_SECURITY_CONTEXT: Mapping[str, Any] = {
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}
DEFAULT_CONTAINER_SECURITY_CONTEXT: Mapping[str, Any] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
}
POD_ONLY_FIELDS = frozenset({"fsGroup", "fsGroupChangePolicy", "supplementalGroups", "sysctls"})
CONTAINER_ONLY_FIELDS = frozenset(
    {
        "allowPrivilegeEscalation",
        "capabilities",
        "privileged",
        "procMount",
        "readOnlyRootFilesystem",
    }
)
SHARED_FIELDS = frozenset(
    {
        "runAsUser",
        "runAsGroup",
        "runAsNonRoot",
        "seLinuxOptions",
        "seccompProfile",
        "windowsOptions",
        "appArmorProfile",
    }
)
_BOOL_FIELDS = ("runAsNonRoot", "allowPrivilegeEscalation", "privileged", "readOnlyRootFilesystem")
_ID_FIELDS = ("runAsUser", "runAsGroup", "fsGroup")
_MAPPING_FIELDS = ("seLinuxOptions", "seccompProfile", "windowsOptions", "appArmorProfile")


def camel_keys(value: Any) -> Any:
    """``value`` with every mapping key in camelCase (``run_as_user`` -> ``runAsUser``), as
    dag-workflows passed the mapping through the Python client, which took either."""
    if isinstance(value, Mapping):
        return {
            re.sub(r"_([a-z])", lambda m: m.group(1).upper(), str(k)): camel_keys(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [camel_keys(v) for v in value]
    return value


def _security_context_problem(value: Any) -> str | None:
    if not isinstance(value, Mapping):
        return "must be a mapping of security context fields (runAsUser, fsGroup, ...)"
    known = POD_ONLY_FIELDS | CONTAINER_ONLY_FIELDS | SHARED_FIELDS
    for key, item in camel_keys(value).items():
        if key not in known:
            return f"has unknown field {key!r} (known: {', '.join(sorted(known))})"
        if key in _BOOL_FIELDS and not isinstance(item, bool):
            return f"{key} must be true or false"
        if key in _ID_FIELDS and (not isinstance(item, int) or isinstance(item, bool) or item < 0):
            return f"{key} must be an integer >= 0"
        if key == "supplementalGroups" and not (
            isinstance(item, list) and all(isinstance(i, int) and i >= 0 for i in item)
        ):
            return "supplementalGroups must be a list of integers >= 0"
        if key in _MAPPING_FIELDS and not isinstance(item, Mapping):
            return f"{key} must be a mapping"
        if key == "capabilities" and not (
            isinstance(item, Mapping)
            and set(item) <= {"add", "drop"}
            and all(
                isinstance(v, list) and all(isinstance(c, str) for c in v) for v in item.values()
            )
        ):
            return "capabilities must be a mapping with 'add' and/or 'drop' lists of names"
        if key in ("fsGroupChangePolicy", "procMount") and not isinstance(item, str):
            return f"{key} must be a string"
        if key == "sysctls" and not (
            isinstance(item, list) and all(isinstance(i, Mapping) for i in item)
        ):
            return "sysctls must be a list of {name, value} mappings"
    return None


def security_contexts(custom: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The pod's and the container's security contexts: the hardened defaults, with
    ``kube_security_context`` on top (each field where Kubernetes takes it; fields
    valid at both levels go to both, so the container's defaults cannot undo them).
    ``runAsUser: 0`` alone also lifts the ``runAsNonRoot`` default."""
    if custom.get("runAsUser") == 0 and "runAsNonRoot" not in custom:
        custom = {**custom, "runAsNonRoot": False}
    pod = copy.deepcopy(dict(DEFAULT_POD_SECURITY_CONTEXT))
    container = copy.deepcopy(dict(DEFAULT_CONTAINER_SECURITY_CONTEXT))
    for key, value in custom.items():
        if key in POD_ONLY_FIELDS or key in SHARED_FIELDS:
            pod[key] = value
        if key in CONTAINER_ONLY_FIELDS or key in SHARED_FIELDS:
            container[key] = value
    return pod, container


def security_warning(worker_config: Mapping[str, Any]) -> str | None:
    """A warning when ``kube_security_context`` lifts the non-root defaults, or None."""
    custom = worker_config.get("kube_security_context")
    if not isinstance(custom, Mapping):
        return None
    fields = camel_keys(custom)
    lifted = [
        text
        for text, hit in (
            ("runAsNonRoot: false", fields.get("runAsNonRoot") is False),
            ("runAsUser: 0", fields.get("runAsUser") == 0),
            ("privileged: true", fields.get("privileged") is True),
            ("allowPrivilegeEscalation: true", fields.get("allowPrivilegeEscalation") is True),
        )
        if hit
    ]
    if not lifted:
        return None
    return f"kube_security_context lets task pods run as root or privileged ({', '.join(lifted)})"


OPTION_CHECKS: Mapping[str, Callable[[Any], str | None]] = {
    "kube_in_cluster": _check_bool,
    "kube_namespace": _check_namespace,
    "kube_image": _check_image,
    "kube_command": _check_command,
    "kube_env": _check_env,
    "kube_requests_cpu": _check_quantity,
    "kube_requests_memory": _check_quantity,
    "kube_limits_cpu": _check_quantity,
    "kube_limits_memory": _check_quantity,
    "kube_service_account_name": _check_service_account,
    "kube_node_selector": _check_labels,
    "kube_tolerations": _check_tolerations,
    "kube_labels": _check_labels,
    "kube_annotations": _check_annotations,
    "kube_image_pull_policy": _check_pull_policy,
    "kube_image_pull_secrets": _check_pull_secrets,
    "kube_pending_timeout": _check_positive_seconds,
    "kube_security_context": _security_context_problem,
}
"""Each ``kube_*`` option, and why a value is wrong for it (None when it is right)."""

KNOWN_OPTIONS = tuple(OPTION_CHECKS)


def option_problems(worker_config: Mapping[str, Any]) -> list[str]:
    """One line per bad ``kube_*`` option (unknown key, wrong type); other keys are ignored."""
    problems = []
    for key, value in worker_config.items():
        if not key.startswith("kube_"):
            continue
        if key not in KNOWN_OPTIONS:
            problems.append(f"unknown option {key} (known: {', '.join(KNOWN_OPTIONS)})")
            continue
        why = OPTION_CHECKS[key](value)
        if why:
            problems.append(f"{key} {why}")
    return problems


def pod_options(worker_config: Mapping[str, Any]) -> PodOptions:
    """The options of a task; raises ValueError with every problem when they are invalid."""
    problems = option_problems(worker_config)
    if "kube_image" not in worker_config:
        problems.append("kube_image is not set (set it in the registry, DAG or task worker_config)")
    if problems:
        raise ValueError("; ".join(problems))
    c = worker_config
    requests = {
        name: str(c[f"kube_requests_{name}"])
        for name in ("cpu", "memory")
        if f"kube_requests_{name}" in c
    }
    limits = {
        name: str(c[f"kube_limits_{name}"])
        for name in ("cpu", "memory")
        if f"kube_limits_{name}" in c
    }
    env = {name: _env_value(value) or "" for name, value in dict(c.get("kube_env") or {}).items()}
    return PodOptions(
        image=c["kube_image"],
        namespace=c.get("kube_namespace"),
        command=tuple(c.get("kube_command") or ()),
        env=env,
        requests=requests,
        limits=limits,
        service_account_name=c.get("kube_service_account_name"),
        node_selector=dict(c.get("kube_node_selector") or {}),
        tolerations=tuple(dict(t) for t in c.get("kube_tolerations") or ()),
        labels=dict(c.get("kube_labels") or {}),
        annotations=dict(c.get("kube_annotations") or {}),
        image_pull_policy=c.get("kube_image_pull_policy"),
        image_pull_secrets=tuple(c.get("kube_image_pull_secrets") or ()),
        pending_timeout=float(c.get("kube_pending_timeout", DEFAULT_PENDING_TIMEOUT)),
        security_context=camel_keys(c.get("kube_security_context") or {}),
    )


# -- names and labels ----------------------------------------------------------------


def slug(text: str, limit: int = MAX_NAME) -> str:
    """Lowercase letters, digits and single '-', no '-' at either end, at most ``limit``."""
    cleaned = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return cleaned[:limit].rstrip("-")


def dag_task_hash(dag: str, task: str) -> str:
    """A short hash of the exact names, so ``my_dag`` and ``mydag`` never share a pod name."""
    digest = hashlib.sha256(f"{dag}\0{task}".encode()).hexdigest()
    return digest[:HASH_LENGTH]


def pod_name(dag: str, task: str, task_run_id: int, attempt: int) -> str:
    """``<dag>-<task>-<hash>-<task run id>-<attempt>``, a DNS-1123 label of at most 63 characters.

    The slugs are shortened to fit; the hash, id and attempt are always whole.
    """
    tail = f"{dag_task_hash(dag, task)}-{task_run_id}-{attempt}"
    room = MAX_NAME - len(tail) - 2  # the '-' after each slug
    dag_slug, task_slug = slug(dag), slug(task)
    if len(dag_slug) + len(task_slug) > room:
        task_len = min(len(task_slug), max(room // 2, room - len(dag_slug)))
        dag_slug = dag_slug[: max(room - task_len, 0)].rstrip("-")
        task_slug = task_slug[: max(task_len, 0)].rstrip("-")
    return "-".join(p for p in (dag_slug, task_slug, tail) if p)[:MAX_NAME]


def label_value(text: str) -> str:
    return slug(text, MAX_NAME)


def pod_labels(dag: str, task: str, task_run_id: int, attempt: int) -> dict[str, str]:
    return {
        MANAGED_BY_LABEL: MANAGED_BY,
        DAG_LABEL: label_value(dag),
        TASK_LABEL: label_value(task),
        TASK_RUN_LABEL: str(task_run_id),
        ATTEMPT_LABEL: str(attempt),
    }


# -- the manifest --------------------------------------------------------------------


def task_args(config: str, dag: str, task: str) -> list[str]:
    return ["workflows", config, "run", dag, "-o", task]


def pod_manifest(
    *,
    name: str,
    namespace: str,
    dag: Dag,
    task: Task,
    task_run_id: int,
    attempt: int,
    config: str,
    options: PodOptions,
    parameters: Mapping[str, str],
) -> dict[str, Any]:
    """The pod of one attempt: one container running ``workflows <config> run <dag> -o <task>``.

    Trigger parameters and ``kube_env`` become environment variables (``kube_env``
    wins a clash, so a trigger cannot replace a configured variable).
    """
    labels = {**options.labels, **pod_labels(dag.name, task.name, task_run_id, attempt)}
    annotations = {**options.annotations, DAG_ANNOTATION: dag.name, TASK_ANNOTATION: task.name}
    env = {**parameters, **options.env}
    container = _container(task_args(config, dag.name, task.name), env, options)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": _pod_spec(container, task, options),
    }


def _container(args: list[str], env: Mapping[str, str], options: PodOptions) -> dict[str, Any]:
    """The task's one container: unprivileged, read-only root, a writable ``/tmp``."""
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": options.image,
        "args": args,
        "env": [{"name": k, "value": v} for k, v in env.items()],
        "securityContext": security_contexts(options.security_context)[1],
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    if options.command:
        container["command"] = list(options.command)
    if options.image_pull_policy:
        container["imagePullPolicy"] = options.image_pull_policy
    resources: dict[str, Any] = {}
    if options.requests:
        resources["requests"] = dict(options.requests)
    if options.limits:
        resources["limits"] = dict(options.limits)
    if resources:
        container["resources"] = resources
    return container


def _pod_spec(container: dict[str, Any], task: Task, options: PodOptions) -> dict[str, Any]:
    """Never restarted, stopped at the task's timeout, placed and credentialed as configured."""
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
        "enableServiceLinks": False,
        "automountServiceAccountToken": bool(options.service_account_name),
        "securityContext": security_contexts(options.security_context)[0],
    }
    if task.timeout is not None:
        spec["activeDeadlineSeconds"] = max(1, math.ceil(task.timeout))
    if options.service_account_name:
        spec["serviceAccountName"] = options.service_account_name
    if options.node_selector:
        spec["nodeSelector"] = dict(options.node_selector)
    if options.tolerations:
        spec["tolerations"] = [dict(t) for t in options.tolerations]
    if options.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": s} for s in options.image_pull_secrets]
    return spec


# -- reading a listed pod ------------------------------------------------------------


@dataclass(frozen=True)
class PodState:
    """What a listed pod says about its attempt."""

    name: str
    namespace: str
    task_run_id: int | None
    attempt: int | None
    phase: str
    created_at: datetime | None
    exit_code: int | None = None
    reason: str | None = None
    """Why it failed or is stuck: OOMKilled, DeadlineExceeded, ImagePullBackOff, Unschedulable..."""
    message: str | None = None
    stuck: bool = False
    """Pending for a reason that will not fix itself soon (image pull, config, scheduling)."""


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def read_pod(pod: Mapping[str, Any]) -> PodState:
    """Interpret a pod as listed by the API (JSON dict)."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    labels = meta.get("labels") or {}
    phase = status.get("phase") or "Pending"
    created = parse_time(meta.get("creationTimestamp")) or parse_time(status.get("startTime"))
    exit_code: int | None = None
    reason: str | None = status.get("reason")
    message: str | None = status.get("message")
    stuck = False
    for cs in status.get("containerStatuses") or ():
        state = cs.get("state") or {}
        terminated = state.get("terminated")
        waiting = state.get("waiting")
        if terminated:
            exit_code = _int(terminated.get("exitCode"))
            reason = reason or terminated.get("reason")
            message = message or terminated.get("message")
        elif waiting and waiting.get("reason") in STUCK_WAITING_REASONS:
            stuck = True
            reason = waiting.get("reason")
            message = waiting.get("message")
    if phase == "Pending" and not stuck:
        for condition in status.get("conditions") or ():
            if (
                condition.get("type") == "PodScheduled"
                and condition.get("status") == "False"
                and condition.get("reason") == UNSCHEDULABLE
            ):
                stuck = True
                reason = UNSCHEDULABLE
                message = condition.get("message")
    return PodState(
        name=meta.get("name", ""),
        namespace=meta.get("namespace", ""),
        task_run_id=_int(labels.get(TASK_RUN_LABEL)),
        attempt=_int(labels.get(ATTEMPT_LABEL)),
        phase=phase,
        created_at=created,
        exit_code=exit_code,
        reason=reason,
        message=message,
        stuck=stuck,
    )


def failure_text(state: PodState) -> str:
    """One line: why the pod failed."""
    parts = [f"pod {state.name} failed"]
    if state.reason:
        parts.append(f": {state.reason}")
    if state.exit_code is not None:
        parts.append(f" (exit code {state.exit_code})")
    if state.message:
        parts.append(f": {state.message.strip().splitlines()[0] if state.message.strip() else ''}")
    return "".join(parts)
