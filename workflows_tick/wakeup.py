"""Waking a sleeping scheduler when work is created (PostgreSQL ``LISTEN``).

Commands that create or change work (``trigger``...) call
:func:`workflows_tick.queries.notify_work` in their transaction. A looping
scheduler runs a :class:`WorkListener`: one thread holding one connection that
``LISTEN``s, calling ``on_wake`` for each notification, so the loop passes at
once instead of at its next ``--interval``.

The interval stays the fallback: while the connection is down the thread
reconnects with a growing delay, and after every (re)connection it calls
``on_wake`` once, since notifications sent meanwhile were lost.
"""

from __future__ import annotations

import logging
import os
import select
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine

from workflows_tick import queries
from workflows_tick.logs import redact

log = logging.getLogger(__name__)

RECONNECT_MIN_SECONDS = 0.5
RECONNECT_MAX_SECONDS = 30.0
KEEPALIVE_SECONDS = 60.0
"""How often an idle listening connection is checked (a cheap round trip)."""


class WorkListener:
    """A daemon thread that calls ``on_wake`` whenever work is notified."""

    def __init__(self, engine: Engine, on_wake: Callable[[], None]) -> None:
        self.engine = engine
        self.on_wake = on_wake
        self._stopping = threading.Event()
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="workflows-listen", daemon=True)
        self.listening = threading.Event()
        """Set while subscribed (tests wait on it)."""

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and close its connection; safe to call more than once."""
        if not self._stopping.is_set():
            self._stopping.set()
            os.write(self._stop_w, b"x")
        if self._thread.is_alive():
            self._thread.join()
        if self._stop_r >= 0:
            os.close(self._stop_r)
            os.close(self._stop_w)
            self._stop_r = self._stop_w = -1

    def _run(self) -> None:
        delay = RECONNECT_MIN_SECONDS
        while not self._stopping.is_set():
            try:
                with self.engine.connect() as conn:
                    conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                    try:
                        self._listen(conn)
                    finally:
                        # Never hand a subscribed connection back to the pool.
                        conn.invalidate()
                        self.listening.clear()
                delay = RECONNECT_MIN_SECONDS
            except Exception as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                log.warning(
                    "cannot listen for new work (%s); passing every --interval, retrying in %.1fs",
                    redact(first),
                    delay,
                )
                self._stopping.wait(delay)
                delay = min(delay * 2, RECONNECT_MAX_SECONDS)

    def _listen(self, conn: Connection) -> None:
        queries.listen_for_work(conn)
        raw: Any = conn.connection.dbapi_connection  # psycopg2: fileno(), poll(), notifies
        self.listening.set()
        self.on_wake()  # whatever was notified while not listening
        while not self._stopping.is_set():
            ready, _, _ = select.select([raw.fileno(), self._stop_r], [], [], KEEPALIVE_SECONDS)
            if self._stop_r in ready:
                return
            if not ready:
                queries.ping(conn)  # a dead connection raises here
            raw.poll()
            notifies = raw.notifies
            if notifies:
                notifies.clear()
                self.on_wake()
