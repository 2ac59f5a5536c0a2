"""Driving the tick: a loop, ``--once``, or ``--until-idle``; signals; reconnects."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from types import FrameType
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from tenacity import (
    RetryCallState,
    retry,
    retry_if_exception,
    stop_never,
    wait_exponential,
)

from workflows_tick.counters import COUNTERS
from workflows_tick.cronitor_monitoring import CronitorSettings, CronitorSink, sync_monitors
from workflows_tick.dags import DagRegistry
from workflows_tick.errors import TaskManagerError, UsageError, WorkflowsError
from workflows_tick.events import Sink, hook_sinks
from workflows_tick.logs import redact
from workflows_tick.managers.base import ManagerSettings, TaskManager
from workflows_tick.managers.lookup import find_manager
from workflows_tick.options import SchedulerOptions
from workflows_tick.outbox import DeliveryThread, Outbox
from workflows_tick.tick import Clock, PassResult, Ticker, utc_now
from workflows_tick.wakeup import WorkListener

if TYPE_CHECKING:
    from workflows_tick.metrics_server import MetricsServer

log = logging.getLogger(__name__)

__all__ = ["Loop", "SchedulerOptions", "build_manager", "run_scheduler"]


CRONITOR_SYNC_RETRY_SECONDS = 60.0
"""After a failed Cronitor monitor sync (or one left to another replica), when to try again."""


RETRY_CHECK_SECONDS = 1.0
"""A loop about to sleep longer than this first asks when the next retry is due."""


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)


def build_manager(name: str, registry: DagRegistry, options: SchedulerOptions) -> TaskManager:
    """The manager ``name`` (``worker``, ``kubernetes`` or ``package.module:ClassName``)."""
    manager_class = find_manager(name, options.config)
    settings = ManagerSettings(
        concurrency=options.concurrency,
        max_running=options.max_running,
        fork_server=options.fork_server,
    )
    try:
        manager = manager_class.create(registry, settings)
    except TypeError as exc:  # a subclass whose __init__ wants other arguments
        raise TaskManagerError(name, f"cannot be built: {exc} (override create())") from None
    return manager


def build_sinks(
    registry: DagRegistry,
    ticker: Ticker,
    options: SchedulerOptions,
    cronitor: CronitorSettings | None,
) -> list[Sink]:
    """Where this scheduler delivers events: the registry's hooks in registration
    order, then Cronitor when ``CRONITOR_API_KEY`` is set."""
    sinks: list[Sink] = [*hook_sinks(registry.hooks, lambda: ticker.dags, options.hook_timeout)]
    if cronitor is not None:
        sinks.append(CronitorSink(cronitor))
    return sinks


def run_scheduler(registry: DagRegistry, options: SchedulerOptions) -> None:
    """Migrate, then drive passes as the options say, until done or signalled."""
    from workflows_tick.database import connect
    from workflows_tick.migrate import upgrade

    manager_class = find_manager(options.manager, options.config)
    with connect(purpose="scheduler", require_url=manager_class.needs_database_url) as db:
        if db.embedded:
            # Tasks that declare DATABASE_URL reach the same embedded server.
            url = db.engine.url.set(drivername="postgresql")
            os.environ.setdefault("DATABASE_URL", url.render_as_string(hide_password=False))
        _with_reconnect(lambda: upgrade(db.engine))
        manager = build_manager(options.manager, registry, options)
        for dag in registry.dags():
            for problem in manager.validate(dag, registry.worker_config_for(dag)):
                # Its launches will fail with the same reason; say it once, up front.
                log.error(
                    "DAG %s cannot run under the %s manager: %s", dag.name, manager.name, problem
                )
        failed = Loop(registry, manager, db.engine, options).run()
    if failed and (options.once or options.until_idle):
        raise WorkflowsError(f"{failed} pass(es) failed (see the log above)")


def _is_connection_error(exc: BaseException) -> bool:
    return isinstance(exc, OperationalError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0
    first = str(exc).strip().splitlines()[0] if exc else ""
    log.warning("database unavailable (%s); retrying in %.1fs", redact(first), wait)


def _sleeper(stopping: threading.Event | None) -> Callable[[float], None]:
    def sleep(seconds: float) -> None:
        if stopping is None:
            time.sleep(seconds)
        else:
            stopping.wait(seconds)

    return sleep


def _with_reconnect(fn: Callable[[], Any], stopping: threading.Event | None = None) -> Any:
    """Call ``fn``, retrying with backoff while the database is unreachable.

    With ``stopping``, give up (re-raising the last error) as soon as it is set:
    SIGTERM must stop a scheduler even while its database is away.
    """
    retrying = retry(
        retry=retry_if_exception(_is_connection_error),
        wait=wait_exponential(multiplier=0.2, max=2.0),
        stop=stop_never if stopping is None else (lambda state: stopping.is_set()),
        sleep=_sleeper(stopping),
        before_sleep=_log_retry,
        reraise=True,
    )
    return retrying(fn)()


class Loop:
    """Pass after pass, sleeping only when there is nothing to do.

    SIGINT: stop starting tasks, let running ones finish, exit. SIGTERM: stop
    running tasks, record them failed, exit.
    """

    def __init__(
        self,
        registry: DagRegistry,
        manager: TaskManager,
        engine: Engine,
        options: SchedulerOptions,
        clock: Clock = utc_now,
    ) -> None:
        self.manager = manager
        self.options = options
        self.clock = clock
        self.ticker = Ticker(
            registry,
            manager,
            engine,
            options.config,
            clock=clock,
            lease_seconds=options.lease_seconds,
            removed_grace_seconds=options.removed_grace,
        )
        self.stop_signal: int | None = None
        self.failed_passes = 0
        self._terminating = threading.Event()
        """Set on SIGTERM (or a second SIGINT): even waiting for the database stops."""
        self.registry = registry
        self._fingerprint = registry.fingerprint()
        self._checked_at = time.monotonic()
        self._woken = threading.Event()
        self.engine = engine
        self.listener: WorkListener | None = None
        """Set while looping: wakes the loop when work is notified."""
        self.cronitor = CronitorSettings.from_environment()
        self._cronitor_synced: int | None = None
        """The registry generation whose monitors were last synced."""
        self._cronitor_retry_at = 0.0
        self.outbox = Outbox(engine, build_sinks(registry, self.ticker, options, self.cronitor))
        self.delivery = DeliveryThread(self.outbox, housekeeping=self._sync_cronitor)
        self.last_pass_at: float | None = None
        """``time.monotonic()`` when the last pass completed (for health checks)."""

    def run(self) -> int:
        """Drive passes until done or signalled; the number of passes that failed."""
        server = self._metrics_server()
        if not self.options.once:
            self.delivery.start()
        try:
            with self._signals():
                if self.options.once:
                    self._once()
                else:
                    self.listener = WorkListener(self.engine, self._woken.set)
                    self.listener.start()
                    try:
                        self._loop()
                    finally:
                        self.listener.stop()
            self._shutdown()
        finally:
            if server is not None:
                server.stop()
        return self.failed_passes

    def _metrics_server(self) -> MetricsServer | None:
        if self.options.metrics_port is None:
            return None
        from workflows_tick.health import LoopHealth
        from workflows_tick.metrics_server import MetricsServer

        health = LoopHealth(self.engine, self.options.interval, lambda: self.last_pass_at)
        try:
            server = MetricsServer(self.engine, health, self.options.metrics_port)
        except OSError as exc:
            raise UsageError(
                f"--metrics-port {self.options.metrics_port}: {exc.strerror or exc}"
            ) from None
        server.start()
        return server

    def _sync_cronitor(self) -> None:
        """Sync Cronitor's monitors when the loaded DAGs changed since the last sync
        (a cheap comparison with the ``cronitor_monitor`` table otherwise)."""
        if self.cronitor is None:
            return
        generation = self.registry.generation
        if generation == self._cronitor_synced or time.monotonic() < self._cronitor_retry_at:
            return
        try:
            plan = sync_monitors(
                self.engine,
                list(self.ticker.dags.values()),
                self.cronitor,
                self.options.interval,
                keep=self.ticker.broken,
            )
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            log.warning("Cronitor: cannot sync monitors: %s", redact(first))
            plan = None
        if plan is None:  # failed, or another scheduler is syncing: look again later
            self._cronitor_retry_at = time.monotonic() + CRONITOR_SYNC_RETRY_SECONDS
        else:
            self._cronitor_synced = generation

    def _pass(self) -> PassResult:
        """One pass; a lost database is waited for, and any other error is logged
        and the loop goes on (the next pass starts from the database again)."""
        try:
            result: PassResult = _with_reconnect(self.ticker.run_pass, self._terminating)
        except Exception:
            self.failed_passes += 1
            COUNTERS.add("failed_passes")
            if self._terminating.is_set():
                log.warning("stopping while the database is unreachable")
            else:
                log.exception("the pass failed; the next one starts afresh from the database")
            return PassResult(failed=True)
        self.last_pass_at = time.monotonic()
        COUNTERS.add("passes")
        COUNTERS.add("launch_failures", result.failed_launches)
        COUNTERS.add("expired_leases", result.expired)
        if result.did_work:
            self.delivery.wake()
        return result

    def _once(self) -> None:
        self._pass()
        # Wait for what this pass started, keeping its leases, and record how it ended.
        self.ticker.starting = False
        while self.manager.in_flight() and not self._terminating.is_set():
            self.manager.wait(1.0)
            try:
                _with_reconnect(self.ticker.tend, self._terminating)
            except Exception:
                self.failed_passes += 1
                log.exception("cannot record how the started tasks ended")

    def _loop(self) -> None:
        unknown: set[str] = set()
        while True:
            if self.stop_signal == signal.SIGTERM:
                return
            if self.stop_signal == signal.SIGINT and not self.manager.in_flight():
                return
            self._reload_if_changed(unknown)
            result = self._pass()
            unknown = result.unknown_dags
            if self.options.until_idle and self._idle(result):
                return
            if result.left_work or unknown or (result.did_work and not self.manager.wakes_on_exit):
                # Pass again at once. After a pass that did work only if the manager
                # cannot wake the loop when an attempt ends (it may have outcomes now).
                continue
            # Wake for the next fire time and the next input_timeout to enforce.
            wake_at = _earliest(result.next_fire_at, result.next_input_deadline)
            timeout = self._sleep_time(wake_at)
            if timeout > RETRY_CHECK_SECONDS:
                timeout = self._sleep_time(_earliest(wake_at, self._next_retry_at()))
            self._sleep(timeout)

    def _reload_if_changed(self, unknown_dags: set[str]) -> None:
        """Pick up DAG edits without a restart (a schedule edit applies from now on).

        The folder is read again every ``reload_seconds`` when it changed, and at
        once when the last pass met runs of DAGs it does not know (added and
        triggered since the last read): the pass fails those only once the folder
        has been read again. Never inside a pass, which holds row locks.
        """
        now = time.monotonic()
        if unknown_dags:
            log.info(
                "runs of DAG(s) not loaded (%s): reloading the DAG folder",
                ", ".join(sorted(unknown_dags)),
            )
        elif now - self._checked_at < self.options.reload_seconds:
            return
        self._checked_at = now
        fingerprint = self.registry.fingerprint()
        if fingerprint != self._fingerprint or unknown_dags:
            if not unknown_dags:
                log.info("the DAG folder changed: reloading it")
            self._fingerprint = fingerprint
            self.ticker.reload_dags()

    def _idle(self, result: PassResult) -> bool:
        """Nothing running: no run of a loaded DAG (even one another scheduler holds
        this pass) and no task this process started. A failed pass proves nothing."""
        if result.failed or result.running_runs or result.unknown_dags or self.manager.in_flight():
            return False
        try:
            return not _with_reconnect(self.ticker.has_running_runs, self._terminating)
        except Exception:
            log.exception("cannot tell whether runs are still running")
            return False

    def _next_retry_at(self) -> datetime | None:
        """When a retry waiting out its delay is due (None if unknown: the interval decides)."""
        try:
            return self.ticker.next_retry_at()
        except Exception:
            return None

    def _sleep_time(self, next_fire_at: datetime | None) -> float:
        timeout = self.options.interval
        if self.manager.in_flight():
            # Renew our leases well before they run out, however long the interval.
            timeout = min(timeout, self.options.lease_seconds / 3)
        if next_fire_at is not None:
            timeout = min(timeout, max(0.0, (next_fire_at - self.clock()).total_seconds()))
        return timeout

    def _sleep(self, timeout: float) -> None:
        """Sleep up to ``timeout``; wake when a task finishes, work is notified
        (:mod:`workflows_tick.wakeup`) or a signal arrives."""
        deadline = time.monotonic() + timeout
        while not self._woken.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if not self.manager.in_flight():
                self._woken.wait(min(remaining, 0.25))  # nothing of ours can finish
            elif self.manager.wait(min(remaining, 0.25)):
                return
        self._woken.clear()

    def _shutdown(self) -> None:
        self._shutdown_tasks()
        # Deliver what this scheduler's last passes produced, within a bound; what is
        # left waits in the outbox for the next scheduler.
        self.delivery.stop()
        self._sync_cronitor()
        try:
            self.outbox.drain()
        except Exception as exc:
            log.warning("cannot deliver the last events: %s", redact(str(exc).split("\n")[0]))

    def _shutdown_tasks(self) -> None:
        kill = self.stop_signal == signal.SIGTERM
        if self.manager.in_flight():
            log.info(
                "stopping: %s %d running task(s)",
                "killing" if kill else "waiting for",
                self.manager.in_flight(),
            )
        outcomes = self.manager.shutdown(kill=kill)
        if outcomes:
            try:
                _with_reconnect(lambda: self.ticker.record(outcomes), self._terminating)
            except Exception:
                log.warning(
                    "cannot record how %d task run(s) ended; their leases will expire "
                    "and they will be retried",
                    len(outcomes),
                )
        try:
            self.ticker.mark_stopped()
        except Exception:  # the database may be away: the row just ages out
            log.debug("cannot record the heartbeat's stop", exc_info=True)

    @contextmanager
    def _signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handle(signum: int, frame: FrameType | None) -> None:
            self.stop(signum)

        previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    def stop(self, signum: int = signal.SIGINT) -> None:
        """What SIGINT (finish running tasks) or SIGTERM (stop them) does, from any thread."""
        if self.stop_signal is None:
            log.info(
                "received %s: %s",
                signal.Signals(signum).name,
                "finishing running tasks, then exiting"
                if signum == signal.SIGINT
                else "stopping running tasks, then exiting",
            )
        # A second SIGINT after the first escalates to SIGTERM's behaviour.
        if self.stop_signal == signal.SIGINT and signum == signal.SIGINT:
            signum = signal.SIGTERM
        self.stop_signal = signum
        self.ticker.starting = False
        if signum == signal.SIGTERM:
            self._terminating.set()
        self._woken.set()
