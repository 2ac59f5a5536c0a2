"""``/metrics`` and ``/healthz`` over HTTP, from the standard library's server.

Each request runs in its own thread: a slow scrape never delays a health probe,
and nothing here runs inside a pass.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sqlalchemy import Engine

from workflows_tick import metrics

log = logging.getLogger(__name__)

DEFAULT_HOST = "0.0.0.0"

Health = Callable[[], tuple[bool, str]]


class MetricsServer:
    """Serves ``/metrics`` (the database's gauges and this process's counters) and
    ``/healthz`` (200 ``ok``, or 503 and the reason) until :meth:`stop`."""

    def __init__(self, engine: Engine, health: Health, port: int, host: str = DEFAULT_HOST) -> None:
        handler = _handler(engine, health)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="workflows-metrics", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()
        log.info("serving /metrics and /healthz on port %d", self.port)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(engine: Engine, health: Health) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._reply(200, metrics.render(engine), metrics.CONTENT_TYPE)
            elif path == "/healthz":
                ok, reason = health()
                self._reply(200 if ok else 503, f"{reason}\n".encode(), "text/plain; charset=utf-8")
            else:
                self._reply(404, b"not found: try /metrics or /healthz\n", "text/plain")

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s %s", self.address_string(), format % args)

    return Handler
