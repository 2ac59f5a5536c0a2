"""A Kubernetes API emulator (kmock) on a background thread, for the real client.

kmock stores objects as sent and ignores label selectors; :class:`PodEmulator`
fills in what an API server would (uid, namespace, creationTimestamp,
``status.phase=Pending``), filters LISTs by equality label selectors, serves pod
logs as text, and can inject faults (an HTTP error status or a delay) before a
request is handled. :class:`FakeKubelet` moves pods through their phases with
status patches sent by the real client.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp.web
import attrs
import kmock
import yaml
from aiohttp.test_utils import RawTestServer
from kmock._internal.rendering import Request

PODS = kmock.resource("", "v1", "pods")
KUBELET_AGENT = "fake-kubelet"


@dataclass
class Fault:
    """Answer the next ``count`` matching requests with ``status`` (after ``delay`` seconds)."""

    action: str  # "LIST", "CREATE", "DELETE", "FETCH" (logs are FETCH of subresource "log")
    status: int | None = None
    delay: float = 0.0
    count: int = 1
    subresource: str | None = None


@attrs.define(kw_only=True)
class PodEmulator(kmock.KubernetesEmulator):
    faults: list[Fault] = attrs.field(factory=list)
    logs: dict[str, str] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.resources[PODS] = {}  # LIST works before any pod exists

    async def _handle(self, request: Request) -> aiohttp.web.StreamResponse:
        if request.headers.get("User-Agent") != KUBELET_AGENT:
            for fault in self.faults:
                if (
                    fault.count > 0
                    and request.action is not None
                    and request.action.value == fault.action
                    and request.subresource == fault.subresource
                ):
                    fault.count -= 1
                    if fault.delay:
                        await asyncio.sleep(fault.delay)
                    if fault.status is not None:
                        raise kmock.KubernetesError(
                            status=fault.status,
                            reason="Injected",
                            message=f"injected {fault.status}",
                        )
                    break
        if request.resource == PODS and request.subresource == "log":
            if (PODS, request.namespace, request.name) not in self.objects:
                raise kmock.KubernetesObjectNotFoundError()
            lines = self.logs.get(request.name or "", "").splitlines(keepends=True)
            tail = int(request.params.get("tailLines", len(lines)) or len(lines))
            return aiohttp.web.Response(text="".join(lines[-tail:]), content_type="text/plain")
        if request.resource == PODS and request.action == kmock.action.CREATE:
            meta = request.data.setdefault("metadata", {})
            meta.setdefault("namespace", request.namespace)
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("resourceVersion", "1")
            meta.setdefault("creationTimestamp", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
            request.data.setdefault("status", {"phase": "Pending"})
        return await super()._handle(request)

    async def _serve_list(self, request: Request) -> Any:
        payload = await super()._serve_list(request)
        selector = request.params.get("labelSelector") or ""
        wanted = dict(part.split("=", 1) for part in selector.split(",") if "=" in part)
        payload["items"] = [
            item
            for item in payload["items"]
            if all(
                (item.get("metadata", {}).get("labels") or {}).get(k) == v
                for k, v in wanted.items()
            )
        ]
        payload["kind"] = "PodList"
        payload["apiVersion"] = "v1"
        return payload

    def client_requests(self, action: str | None = None) -> list[Request]:
        """Requests not sent by the fake kubelet (optionally of one action)."""
        return [
            r
            for r in self
            if r.headers.get("User-Agent") != KUBELET_AGENT
            and (action is None or (r.action is not None and r.action.value == action))
        ]


def tls_files(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    cert, key = folder / "server.crt", folder / "server.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def _tls_server_cls(cert: Path, key: Path) -> type[RawTestServer]:
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    class TlsRawTestServer(RawTestServer):
        async def start_server(self, loop: Any = None, **kwargs: Any) -> None:
            kwargs.setdefault("ssl", context)
            await super().start_server(loop=loop, **kwargs)

    return TlsRawTestServer


class EmulatorThread:
    """The emulator served over HTTPS on 127.0.0.1 from its own event loop and thread."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.cert, self.key = cert, key
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.emulator = PodEmulator()
        self.server: kmock.Server | None = None

    def __enter__(self) -> EmulatorThread:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    async def _start(self) -> None:
        await self.emulator.__aenter__()
        self.server = kmock.Server(self.emulator, server_cls=_tls_server_cls(self.cert, self.key))
        await self.server.__aenter__()

    async def _stop(self) -> None:
        assert self.server is not None
        # Drop kept-alive client connections first: a TLS transport still open when
        # the loop stops is only closed by the garbage collector (ResourceWarning).
        runner = self.server.server.runner
        if runner is not None and runner.server is not None:
            for handler in list(runner.server.connections):
                if handler.transport is not None:
                    handler.transport.abort()
        await asyncio.sleep(0.05)
        await self.server.__aexit__(None, None, None)
        await self.emulator.__aexit__(None, None, None)

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"https://127.0.0.1:{self.server.port}"

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the emulator's loop (to read or change its objects safely)."""

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def write_kubeconfig(
        self, path: Path, namespace: str = "default", token: str = "t0ken"
    ) -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "emu",
                    "cluster": {"server": self.url, "certificate-authority": str(self.cert)},
                }
            ],
            "users": [{"name": "emu", "user": {"token": token}}],
            "contexts": [
                {
                    "name": "emu",
                    "context": {"cluster": "emu", "user": "emu", "namespace": namespace},
                }
            ],
            "current-context": "emu",
        }
        path.write_text(yaml.safe_dump(config))
        return path


class FakeKubelet:
    """Moves each new pod Pending → Running → Succeeded/Failed with status patches.

    ``outcome(pod)`` returns the exit code for a pod (0 succeeds).
    """

    def __init__(
        self, kubeconfig: Path, namespaces: list[str], outcome: Callable[[dict[str, Any]], int]
    ) -> None:
        from kubernetes import client, config

        configuration = client.Configuration()
        config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
        api_client = client.ApiClient(configuration)
        api_client.user_agent = KUBELET_AGENT
        self.api = client.CoreV1Api(api_client)
        self.namespaces = namespaces
        self.outcome = outcome
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> FakeKubelet:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)
        self.api.api_client.close()

    def _run(self) -> None:
        while not self.stop.is_set():
            self.sweep()
            time.sleep(0.02)

    def sweep(self) -> list[str]:
        """Move every pod one step along, once (without the thread: a step per call).

        Returns the names of the pods moved.
        """
        import json

        moved = []
        for namespace in self.namespaces:
            response = self.api.list_namespaced_pod(namespace, _preload_content=False)
            for pod in json.loads(response.data)["items"]:
                if self._step(namespace, pod):
                    moved.append(pod["metadata"]["name"])
        return moved

    def close(self) -> None:
        """Close the client (when used with :meth:`sweep` only, without the thread)."""
        self.api.api_client.close()

    def _step(self, namespace: str, pod: dict[str, Any]) -> bool:
        name = pod["metadata"]["name"]
        phase = (pod.get("status") or {}).get("phase")
        if phase == "Pending":
            status: dict[str, Any] = {
                "phase": "Running",
                "startTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "containerStatuses": [{"name": "task", "state": {"running": {}}}],
            }
        elif phase == "Running":
            code = self.outcome(pod)
            status = {
                "phase": "Succeeded" if code == 0 else "Failed",
                "containerStatuses": [
                    {
                        "name": "task",
                        "state": {
                            "terminated": {
                                "exitCode": code,
                                "reason": "Completed" if code == 0 else "Error",
                            }
                        },
                    }
                ],
            }
        else:
            return False
        with contextlib.suppress(Exception):  # deleted meanwhile
            self.api.patch_namespaced_pod_status(name, namespace, {"status": status})
        return True
