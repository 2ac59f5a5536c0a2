"""The few Kubernetes API calls the kubernetes manager makes, behind a Protocol.

:class:`ClientBackend` speaks to a cluster through the official ``kubernetes``
client (imported only when it is built); :class:`workflows_tick.testing.InMemoryBackend`
keeps pods in a dict for tests. Both raise the ``Kube*`` errors of
:mod:`workflows_tick.errors`, never the client's own, so the manager's decisions
do not depend on the client library.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from workflows_tick.errors import (
    KubeApiError,
    KubeConflict,
    KubeForbidden,
    KubeNotFound,
    KubernetesConfigError,
    KubeTransientError,
)

IN_CLUSTER_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
DEFAULT_REQUEST_TIMEOUT = (3.0, 10.0)
"""(connect, read) seconds for one API call; tenacity retries on top."""


Pod = dict[str, Any]
"""A pod as the API's JSON: ``metadata``, ``spec``, ``status``."""


class KubeBackend(Protocol):
    """The pod calls the kubernetes manager needs."""

    default_namespace: str

    def create_pod(self, namespace: str, body: Mapping[str, Any]) -> None: ...

    def list_pods(self, namespace: str, label_selector: str) -> list[Pod]: ...

    def delete_pod(self, namespace: str, name: str) -> None: ...

    def read_pod_log(self, namespace: str, name: str, tail_lines: int, limit_bytes: int) -> str: ...

    def close(self) -> None: ...


def classify(status: int | None, reason: str, message: str) -> KubeApiError:
    """The error class for an HTTP status (None: no answer at all)."""
    if status is None or status == 429 or status >= 500:
        return KubeTransientError(status, reason, message)
    if status in (401, 403):
        return KubeForbidden(status, reason, message)
    if status == 404:
        return KubeNotFound(status, reason, message)
    if status == 409:
        return KubeConflict(status, reason, message)
    return KubeApiError(status, reason, message)


POD_PATH = "/api/v1/namespaces/{namespace}/pods"


class ClientBackend:
    """:class:`KubeBackend` over the official client's ``ApiClient``.

    ``in_cluster``: the pod's service account and namespace; otherwise the
    kubeconfig (``KUBECONFIG`` or ``~/.kube/config``) and its context's namespace.

    The requests are those of ``CoreV1Api`` (paths, ``Accept``, the bearer token,
    raw responses), sent through the ``ApiClient`` it wraps: the generated
    ``CoreV1Api`` builds validating models for every endpoint of the core API when
    it is imported, about a second of a one-shot pass for four calls.
    """

    def __init__(
        self,
        in_cluster: bool = False,
        *,
        config_file: str | None = None,
        request_timeout: tuple[float, float] = DEFAULT_REQUEST_TIMEOUT,
    ) -> None:
        from kubernetes import client
        from kubernetes import config as kube_config

        config: Any = kube_config

        configuration = client.Configuration()
        try:
            if in_cluster:
                config.load_incluster_config(client_configuration=configuration)
                self.default_namespace = _in_cluster_namespace()
            else:
                path = config_file or os.environ.get("KUBECONFIG") or None
                config.load_kube_config(config_file=path, client_configuration=configuration)
                _, active = config.list_kube_config_contexts(path)
                context = (active or {}).get("context") or {}
                self.default_namespace = context.get("namespace") or "default"
        except config.ConfigException as exc:
            where = "in-cluster service account" if in_cluster else "kubeconfig"
            raise KubernetesConfigError(f"cannot load the {where}: {exc}") from None
        # Our own retries (tenacity, in the manager) replace urllib3's: a timed-out
        # GET retried three times by urllib3 would hold a pass for a minute.
        configuration.retries = False
        self._client: Any = client.ApiClient(configuration)
        self._timeout = request_timeout
        self._api_exception: Any = client.ApiException

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def _call(
        self,
        method: str,
        path: str,
        path_params: Mapping[str, str],
        query: list[tuple[str, Any]] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> Any:
        """Send one request; the raw urllib3 response of a 2xx answer, else a Kube* error."""
        import urllib3

        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            request = self._client.param_serialize(
                method=method,
                resource_path=path,
                path_params=dict(path_params),
                query_params=query or [],
                header_params=headers,
                body=dict(body) if body is not None else None,
                auth_settings=["BearerToken"],
            )
            response = self._client.call_api(*request, _request_timeout=self._timeout)
            if not 200 <= response.status <= 299:
                response.read()
                raise self._api_exception.from_response(http_resp=response, body=None, data=None)
            return response.response
        except self._api_exception as exc:
            status = getattr(exc, "status", None) or None
            reason = str(getattr(exc, "reason", "") or "")
            raise classify(status, reason, _status_message(getattr(exc, "body", None))) from None
        except urllib3.exceptions.HTTPError as exc:
            raise KubeTransientError(None, type(exc).__name__, str(exc)) from None
        except OSError as exc:
            raise KubeTransientError(None, type(exc).__name__, str(exc)) from None

    def create_pod(self, namespace: str, body: Mapping[str, Any]) -> None:
        self._call("POST", POD_PATH, {"namespace": namespace}, body=body).release_conn()

    def list_pods(self, namespace: str, label_selector: str) -> list[Pod]:
        response = self._call(
            "GET", POD_PATH, {"namespace": namespace}, [("labelSelector", label_selector)]
        )
        # Raw JSON: deserializing into client models costs ~1 ms per pod.
        items: list[Pod] = json.loads(response.data).get("items") or []
        return items

    def delete_pod(self, namespace: str, name: str) -> None:
        try:
            response = self._call(
                "DELETE", POD_PATH + "/{name}", {"namespace": namespace, "name": name}
            )
            response.release_conn()
        except KubeNotFound:
            pass

    def read_pod_log(self, namespace: str, name: str, tail_lines: int, limit_bytes: int) -> str:
        response = self._call(
            "GET",
            POD_PATH + "/{name}/log",
            {"namespace": namespace, "name": name},
            [("tailLines", tail_lines), ("limitBytes", limit_bytes)],
        )
        data: bytes = response.data
        return data.decode("utf-8", errors="replace")


def _status_message(body: Any) -> str:
    """The ``message`` of a Kubernetes Status body, else the body itself (shortened)."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    if not body:
        return ""
    try:
        parsed = json.loads(body)
    except (TypeError, ValueError):
        return str(body)[:500]
    if isinstance(parsed, dict) and parsed.get("message"):
        return str(parsed["message"])
    return str(body)[:500]


def _in_cluster_namespace() -> str:
    try:
        return Path(IN_CLUSTER_NAMESPACE_FILE).read_text().strip() or "default"
    except OSError:
        return "default"
