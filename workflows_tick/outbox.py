"""Delivering the events of the outbox to hooks and integrations.

Events are written by the database in the transaction of each state change
(exactly one row per change). Delivery is at least once: a scheduler locks a
batch of due events (``FOR UPDATE SKIP LOCKED``, so two schedulers never deliver
the same event at once), hands each to every sink that has not taken it yet,
and records the outcome in the same transaction. A sink that raises or runs past
its timeout is retried with exponential backoff, only that sink; after
:data:`DEFAULT_MAX_ATTEMPTS` tries the event is given up with a logged error. A
scheduler killed mid-batch leaves its events undelivered: the next scheduler
to look delivers them again (so a sink may see an event twice, never zero times).

Delivery runs in a thread of its own, off the pass's critical path: the loop
wakes it after each pass. Sinks run in daemon threads joined with their timeout,
so a hung hook delays the others by its timeout and never blocks exit.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence

from sqlalchemy import Connection, Engine

from workflows_tick import queries
from workflows_tick.counters import COUNTERS
from workflows_tick.events import Delivery, Sink, is_run_event
from workflows_tick.logs import redact
from workflows_tick.queries import EventRow, EventUpdate

log = logging.getLogger(__name__)

DEFAULT_BATCH = 50
DEFAULT_MAX_ATTEMPTS = 12
RETRY_FIRST_SECONDS = 5.0
RETRY_MAX_SECONDS = 900.0
DEFAULT_POLL_SECONDS = 5.0
"""How often an idle delivery thread looks for events due again or left by others."""
DEFAULT_DRAIN_SECONDS = 10.0
"""How long ``--once``, ``--until-idle`` and a stopping scheduler keep delivering."""


def retry_delay(attempts: int) -> float:
    """Seconds before the next try, after ``attempts`` failed tries (1, 2, ...)."""
    return min(RETRY_FIRST_SECONDS * 2.0 ** max(attempts - 1, 0), RETRY_MAX_SECONDS)


def call_with_timeout(fn: Callable[[], object], timeout: float) -> str | None:
    """Call ``fn`` in a daemon thread; None if it returned within ``timeout``, else why not.

    A call that overruns is abandoned, not stopped (Python cannot stop a thread):
    it runs on in the background and its result is ignored.
    """
    failure: list[str] = []

    def target() -> None:
        try:
            fn()
        except BaseException as exc:
            failure.append(f"{type(exc).__name__}: {exc}")

    thread = threading.Thread(target=target, name="workflows-sink", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return f"timed out after {timeout:g}s"
    return failure[0] if failure else None


class Outbox:
    """Delivers due events to ``sinks``; any number of schedulers may do so at once."""

    def __init__(
        self,
        engine: Engine,
        sinks: Sequence[Sink],
        batch: int = DEFAULT_BATCH,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> None:
        self.engine = engine
        self.sinks = list(sinks)
        if len({s.name for s in self.sinks}) != len(self.sinks):
            raise ValueError(f"sink names must differ: {[s.name for s in self.sinks]}")
        self.batch = batch
        self.max_attempts = max_attempts

    def deliver_due(self, deadline: float | None = None) -> int:
        """Deliver one batch of due events; how many were handled.

        Past ``deadline`` (a ``time.monotonic()`` value) the rest of the batch is
        left for later, untouched.
        """
        with self.engine.connect() as conn, conn.begin():
            events = queries.claim_events(conn, self.batch)
            if not events:
                return 0
            deliveries = self._deliveries(conn, events)
            updates = []
            for delivery in deliveries:
                if deadline is not None and time.monotonic() > deadline:
                    break
                updates.append(self._deliver(delivery))
            queries.update_events(conn, updates)
        return len(updates)

    def drain(self, seconds: float = DEFAULT_DRAIN_SECONDS) -> int:
        """Deliver what is due until nothing is, or ``seconds`` passed; how many."""
        deadline = time.monotonic() + seconds
        total = 0
        while time.monotonic() < deadline:
            handled = self.deliver_due(deadline)
            total += handled
            if handled == 0:
                break
        return total

    def _deliveries(self, conn: Connection, events: Sequence[EventRow]) -> list[Delivery]:
        """The events with the rows they are about; rows are read only for the events
        some sink still wants (none at all without hooks or integrations)."""
        wanted = [e for e in events if any(s.wants(e) for s in self.sinks if s.name not in e.done)]
        runs = queries.runs_by_id(conn, sorted({e.dag_run_id for e in wanted}))
        task_runs = queries.task_runs_by_id(
            conn, sorted({e.task_run_id for e in wanted if e.task_run_id is not None})
        )
        summaries = queries.run_summaries(
            conn,
            sorted({e.dag_run_id for e in wanted if is_run_event(e) and e.kind != "run_started"})
            if any(s.name.startswith("cronitor") for s in self.sinks)
            else [],
        )
        return [
            Delivery(
                event=e,
                dag_run=runs.get(e.dag_run_id),
                task_run=task_runs.get(e.task_run_id) if e.task_run_id is not None else None,
                summary=summaries.get(e.dag_run_id) if is_run_event(e) else None,
            )
            for e in events
        ]

    def _deliver(self, delivery: Delivery) -> EventUpdate:
        event = delivery.event
        done = list(event.done)
        errors = []
        for sink in self.sinks:
            if sink.name in done:
                continue
            if not sink.wants(event):
                done.append(sink.name)
                continue
            error = call_with_timeout(functools.partial(sink.send, delivery), sink.timeout)
            if error is None:
                done.append(sink.name)
                continue
            COUNTERS.add(
                "hook_failures" if sink.name.startswith("hook:") else "integration_failures"
            )
            error = redact(error)
            errors.append(f"{sink.name}: {error}")
            log.warning(
                "event %d (%s of %s): %s failed: %s",
                event.id,
                event.kind,
                event.dag_name,
                sink.name,
                error,
            )
        attempts = event.attempts + 1
        given_up = bool(errors) and attempts >= self.max_attempts
        if given_up:
            log.error(
                "event %d (%s of %s, run %d) given up after %d tries: %s",
                event.id,
                event.kind,
                event.dag_name,
                event.dag_run_id,
                attempts,
                "; ".join(errors),
            )
        return EventUpdate(
            id=event.id,
            done=tuple(done),
            delivered=not errors,
            given_up=given_up,
            retry_in=retry_delay(attempts) if errors else 0.0,
            error="; ".join(errors) or None,
        )


class DeliveryThread:
    """Runs :meth:`Outbox.deliver_due` in the background, woken after each pass."""

    def __init__(
        self,
        outbox: Outbox,
        poll_seconds: float = DEFAULT_POLL_SECONDS,
        housekeeping: Callable[[], None] = lambda: None,
    ) -> None:
        self.outbox = outbox
        self.housekeeping = housekeeping
        """Called before each round of deliveries (e.g. to sync Cronitor's monitors)."""
        self.poll_seconds = poll_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="workflows-events", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = DEFAULT_DRAIN_SECONDS) -> None:
        """Stop after the event being delivered (waiting up to ``timeout``)."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self.housekeeping()
                handled = self.outbox.deliver_due()
                failures = 0
            except Exception as exc:
                # The database went away, most likely: the events wait in the table.
                failures += 1
                handled = 0
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                log.warning("cannot deliver events: %s", redact(first))
            if handled and not self._stop.is_set():
                continue
            wait = self.poll_seconds if not failures else min(retry_delay(failures), 60.0)
            self._wake.wait(wait)
            self._wake.clear()
