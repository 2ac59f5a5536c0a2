"""Serving the page: the exposure check, the database, the socket, uvicorn."""

from __future__ import annotations

import logging
import os
import secrets
import socket
import sys
from collections.abc import Mapping

from workflows_tick.dags import DagRegistry
from workflows_tick.errors import UsageError
from workflows_tick.ui import DEFAULT_HOST, DEFAULT_PORT
from workflows_tick.ui.security import TOKEN_VARIABLE, Guard, check_exposure, is_loopback

log = logging.getLogger(__name__)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port`` (0: any free port); one line if it cannot."""
    try:
        family, _, _, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        return socket.create_server(address[:2], family=family, backlog=128)
    except OSError as exc:
        # create_server appends the address to strerror; gaierror codes are not errnos.
        if isinstance(exc, socket.gaierror) or not exc.errno:
            reason = exc.strerror or str(exc)
        else:
            reason = os.strerror(exc.errno)
        raise UsageError(f"ui: cannot listen on {host}:{port}: {reason}") from None


def serve(
    registry: DagRegistry,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    allow_actions: bool = False,
    insecure: bool = False,
    environ: Mapping[str, str] = os.environ,
) -> None:
    """Serve the page until SIGINT or SIGTERM."""
    from workflows_tick.logs import register_secret

    token = environ.get(TOKEN_VARIABLE, "").strip() or None
    check_exposure(host, token, insecure)
    register_secret(token)
    listener = bind(host, port)

    import uvicorn

    from workflows_tick.database import connect, install_sigterm_exit
    from workflows_tick.migrate import upgrade
    from workflows_tick.ui.app import create_app

    undo_sigterm = install_sigterm_exit()
    try:
        with connect(purpose="ui", environ=environ) as db:
            upgrade(db.engine)
            guard = Guard(
                token=token,
                secret=secrets.token_bytes(32),
                loopback_only=is_loopback(host) and not token,
                allow_actions=allow_actions,
            )
            app = create_app(db.engine, registry, guard)
            bound_host, bound_port = listener.getsockname()[:2]
            shown = f"[{bound_host}]" if ":" in bound_host else bound_host
            mode = "actions enabled" if allow_actions else "read-only"
            auth = "token required" if token else "no token"
            # The one line a script (or a test) waits for; the port is the real one.
            print(f"serving http://{shown}:{bound_port}/ ({mode}, {auth})", flush=True)
            config = uvicorn.Config(
                app,
                log_config=None,
                lifespan="off",
                server_header=False,
                timeout_graceful_shutdown=5,
            )
            uvicorn.Server(config).run(sockets=[listener])
    finally:
        listener.close()
        undo_sigterm()
        sys.stdout.flush()
