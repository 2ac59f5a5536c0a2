"""A local HTTP server standing in for Cronitor's ping and monitor APIs."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    auth: str | None


@dataclass
class FakeCronitor:
    """Records every request; ``status`` and ``delay`` make it fail or stall."""

    status: int = 200
    delay: float = 0.0
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def pings(self) -> list[dict[str, Any]]:
        """Ping query parameters, with the monitor key and the API key from the path."""
        found = []
        for r in list(self.requests):
            if r.method == "GET" and r.path.startswith("/p/"):
                _, _, api_key, key = r.path.split("/", 3)
                params: dict[str, Any] = {k: v[0] if len(v) == 1 else v for k, v in r.query.items()}
                found.append({"api_key": api_key, "key": key, **params})
        return found

    def puts(self) -> list[list[dict[str, Any]]]:
        return [r.body["monitors"] for r in list(self.requests) if r.method == "PUT"]

    def deletes(self) -> list[str]:
        return [r.path.rsplit("/", 1)[1] for r in list(self.requests) if r.method == "DELETE"]


def _handler(fake: FakeCronitor) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            fake.record(
                Request(
                    self.command,
                    url.path,
                    urllib.parse.parse_qs(url.query),
                    body,
                    self.headers.get("Authorization"),
                )
            )
            if fake.delay:
                time.sleep(fake.delay)
            if fake.status != 200:
                self._reply(fake.status, b"unavailable")
            elif self.command == "PUT":
                self._reply(200, json.dumps({"monitors": body["monitors"]}).encode())
            elif self.command == "DELETE":
                self._reply(204, b"")
            else:
                self._reply(200, b"")

        do_GET = do_PUT = do_DELETE = _handle

        def _reply(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
