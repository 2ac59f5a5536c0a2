"""The ``worker`` task manager: each attempt runs as a local subprocess.

An attempt runs ``workflows <config> run <dag> -o <task>``, in its own session (so
it is the leader of its own process group) with stdin closed and stdout and
stderr written to a temporary file, so a chatty task can never block on a full
pipe. By default it is forked from a warm fork server
(:mod:`workflows_tick.forkserver`, a few milliseconds); when the server cannot
start or dies, the manager says so once and from then on starts each attempt as
``python -m workflows_tick ...`` (a new interpreter, about 65 ms). Each exit wakes
:meth:`WorkerTaskManager.wait` (a small thread per exec'd child; the server's
reader thread for forked ones), so the next task starts as soon as one ends.

Only the loop thread starts, signals and reaps children; the waiting threads use
``waitid(WNOWAIT)``, which leaves the child a zombie until the loop thread reaps
it. Until then its pid, and so its process group id, cannot be reused, so
signalling the group is never aimed at an unrelated process. The fork server
keeps the same rule: it reaps an attempt only when this manager says so.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Self

from workflows_tick.entry import TASK_RUN_VARIABLE
from workflows_tick.errors import LaunchError
from workflows_tick.lifeline import SCHEDULER_PID
from workflows_tick.managers.base import (
    Launch,
    ManagerSettings,
    Outcome,
    PollResult,
    RunningTaskRun,
    TaskManager,
)
from workflows_tick.managers.forking import ForkedAttempt, ForkServer, ForkServerError
from workflows_tick.options import DEFAULT_CONCURRENCY

if TYPE_CHECKING:
    from workflows_tick.dags import DagRegistry

log = logging.getLogger(__name__)

DEFAULT_OUTPUT_TAIL_BYTES = 16384
DEFAULT_KILL_GRACE = 5.0
"""Seconds between SIGTERM and SIGKILL for an attempt that ran past its timeout."""
DEFAULT_SHUTDOWN_GRACE = 10.0
"""Seconds between SIGTERM and SIGKILL when the scheduler is stopped with SIGTERM."""
MAX_ERROR_CHARS = 500
SHUTDOWN_ERROR = "stopped by scheduler shutdown (SIGTERM)"
LOST_ERROR = "stopped: its task run is no longer running (its lease expired)"
SERVER_LOST_ERROR = "stopped: the fork server that started it died"
CANCELLED_ERROR = "cancelled: its run was cancelled; the attempt was stopped"

CommandFactory = Callable[[Launch], Sequence[str]]
"""Builds the argument list of one attempt (no shell is involved)."""


@dataclass(eq=False)
class _Child:
    launch: Launch
    pid: int
    log_path: Path
    started: float
    """``time.monotonic()`` at spawn."""
    process: subprocess.Popen[bytes] | None = None
    """An exec'd child (else ``forked``)."""
    forked: ForkedAttempt | None = None
    """A child of the fork server."""
    waiter: threading.Thread | None = None
    exit_seen: bool = False
    """Set by the waiting thread; the child is a zombie until the loop thread reaps it."""
    kill_at: float | None = None
    """Set when SIGTERM is sent: when SIGKILL follows if the child is still alive."""
    kill_sent: bool = False
    stop_reason: str | None = None
    """Why this manager signalled the child ("timed out after 5s", shutdown), if it did."""
    reaped_elsewhere: bool = False

    @property
    def exited(self) -> bool:
        if self.forked is not None:
            return self.forked.exited
        return self.exit_seen

    @property
    def pid_reserved(self) -> bool:
        """Whether the pid (and group id) still names this child: safe to signal."""
        if self.forked is not None:
            return not self.forked.lost
        return not self.reaped_elsewhere

    @property
    def deadline(self) -> float | None:
        timeout = self.launch.timeout
        return None if timeout is None else self.started + timeout


class WorkerTaskManager(TaskManager):
    """Runs each attempt as a subprocess of this scheduler, ``concurrency`` at a time.

    ``log_dir`` is where the output files live while an attempt runs (the system
    temporary folder by default); each is deleted once its outcome is reported,
    the last ``output_tail_bytes`` of it being kept in :attr:`Outcome.output_tail`.
    ``command`` replaces the ``workflows ... run`` command line (tests, wrappers)
    and turns the fork server off; so do ``fork_server=False`` and a subclass that
    overrides :meth:`command_for`.
    """

    name: ClassVar[str] = "worker"
    wakes_on_exit: ClassVar[bool] = True

    def __init__(
        self,
        concurrency: int = DEFAULT_CONCURRENCY,
        python: str = sys.executable,
        output_tail_bytes: int = DEFAULT_OUTPUT_TAIL_BYTES,
        log_dir: Path | None = None,
        *,
        command: CommandFactory | None = None,
        kill_grace: float = DEFAULT_KILL_GRACE,
        shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE,
        fork_server: bool = True,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.concurrency = concurrency
        self.python = python
        self.output_tail_bytes = max(0, output_tail_bytes)
        self.log_dir = log_dir
        self.kill_grace = kill_grace
        self.shutdown_grace = shutdown_grace
        self._command = command
        self._children: dict[int, _Child] = {}
        # Set by a waiting thread when a child exits; cleared only by the loop thread,
        # and only right before it scans the children, so no exit is ever missed.
        self._exited = threading.Event()
        self._host = f"{socket.gethostname()}:{os.getpid()}"
        # A subclass that changes the command line (``nice``, a wrapper) needs a new
        # process per attempt; one that changes only the environment does not.
        self._use_server = (
            fork_server
            and command is None
            and type(self).command_for is WorkerTaskManager.command_for
            and sys.platform.startswith("linux")
        )
        self._server: ForkServer | None = None
        self._polls = 0

    # -- the fork server ----------------------------------------------------------

    @property
    def fork_server(self) -> ForkServer | None:
        """The running fork server, if attempts start from one."""
        return self._server if self._server is not None and self._server.alive else None

    def start_fork_server(self) -> None:
        """Start the fork server now (else the second :meth:`poll`, after the first
        pass, or the first :meth:`start` does), without waiting for its imports; on
        failure say so once and use a new interpreter per attempt from then on.

        Call it from the thread that runs the loop: the server's parent-death signal
        fires when the thread that started it ends.
        """
        if not self._use_server or self._server is not None:
            return
        self._server = ForkServer(self.python, self._exited.set)
        try:
            self._server.start()
        except ForkServerError as exc:
            self._fall_back(str(exc))
            return
        log.info("fork server starting as pid %s", self._server.pid)

    def _fall_back(self, reason: str) -> None:
        """Use the exec path from now on; the server's attempts were already marked lost."""
        if not self._use_server:
            return
        self._use_server = False
        log.warning(
            "the fork server cannot start tasks (%s); starting each task as a new "
            "interpreter from now on",
            reason,
        )
        if self._server is not None and not any(
            child.forked is not None for child in self._children.values()
        ):
            self._server.close()

    @classmethod
    def create(cls, registry: DagRegistry, settings: ManagerSettings) -> Self:
        """``concurrency`` from ``--concurrency``; a subclass with other arguments overrides this."""
        return cls(concurrency=settings.concurrency, fork_server=settings.fork_server)

    # -- the TaskManager contract -------------------------------------------------

    def capacity(self) -> int:
        """How many more attempts may start now: ``concurrency`` minus those in flight."""
        return max(0, self.concurrency - len(self._children))

    def in_flight(self) -> int:
        """Attempts started here whose outcome :meth:`poll` has not returned yet."""
        return len(self._children)

    def host_for(self, task_run_id: int, attempt: int, dag_name: str, task_name: str) -> str:
        """``<hostname>:<scheduler pid>``: every attempt runs on this machine."""
        return self._host

    def fixed_host(self) -> str | None:
        """``<hostname>:<scheduler pid>``, unless a subclass places attempts itself."""
        return self._host if type(self).host_for is WorkerTaskManager.host_for else None

    def command_for(self, launch: Launch) -> list[str]:
        """The argument list that runs ``launch``: ``python -m workflows_tick <config> run <dag> -o <task>``."""
        if self._command is not None:
            return list(self._command(launch))
        return [self.python, "-m", "workflows_tick", *_run_arguments(launch)]

    def environment_for(self, launch: Launch) -> dict[str, str]:
        """This process's environment, plus the trigger parameters and the run's ids.

        Parameters travel only in the environment, never on the command line (which
        any user of the machine can read in ``ps``).
        """
        env = dict(os.environ)
        env.update({str(k): str(v) for k, v in launch.parameters.items()})
        env[TASK_RUN_VARIABLE] = str(launch.task_run_id)
        env["WORKFLOWS_DAG_RUN_ID"] = str(launch.dag_run_id)
        env["WORKFLOWS_ATTEMPT"] = str(launch.attempt)
        env[SCHEDULER_PID] = str(os.getpid())  # the attempt dies with this process
        return env

    def start(self, launch: Launch) -> None:
        """Spawn the attempt and return at once; raise LaunchError if it cannot be spawned."""
        what = f"task {launch.dag.name}/{launch.task.name} (task run {launch.task_run_id})"
        if launch.task_run_id in self._children:
            raise LaunchError(f"cannot start {what}: it is already running in this scheduler")
        argv = self.command_for(launch)
        try:
            fd, name = tempfile.mkstemp(
                prefix=f"workflows-{launch.task_run_id}-{launch.attempt}-",
                suffix=".log",
                dir=self.log_dir,
            )
        except OSError as exc:
            folder = self.log_dir or tempfile.gettempdir()
            raise LaunchError(
                f"cannot start {what}: cannot create its log file in {folder}: {exc.strerror or exc}"
            ) from None
        log_path = Path(name)
        try:
            child = self._fork(launch, fd, log_path)
            if child is None:
                child = self._exec(launch, argv, fd, log_path, what)
        finally:
            os.close(fd)
        if child.process is None:
            self._children[launch.task_run_id] = child
            log.info("started %s as pid %d (forked)", what, child.pid)
            return
        process = child.process
        child.waiter = threading.Thread(
            target=self._wait_for_exit,
            args=(child,),
            name=f"workflows-worker-{launch.task_run_id}",
            daemon=True,
        )
        try:
            child.waiter.start()
        except RuntimeError as exc:  # no thread to watch it: do not leave it running
            self._signal(child, signal.SIGKILL)
            process.wait()
            log_path.unlink(missing_ok=True)
            raise LaunchError(f"cannot start {what}: cannot watch its process: {exc}") from None
        self._children[launch.task_run_id] = child
        log.info("started %s as pid %d", what, process.pid)

    def _fork(self, launch: Launch, fd: int, log_path: Path) -> _Child | None:
        """Start the attempt from the fork server; None if there is none (any more)."""
        if not self._use_server:
            return None
        self.start_fork_server()
        server = self.fork_server
        if server is None:
            return None
        try:
            forked = server.spawn(
                _run_arguments(launch), self.environment_for(launch), str(Path.cwd()), fd
            )
        except ForkServerError as exc:
            self._fall_back(str(exc))
            return None
        return _Child(
            launch=launch,
            pid=forked.pid,
            log_path=log_path,
            started=time.monotonic(),
            forked=forked,
        )

    def _exec(self, launch: Launch, argv: list[str], fd: int, log_path: Path, what: str) -> _Child:
        """Start the attempt as a new process running ``argv``."""
        try:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=fd,
                stderr=subprocess.STDOUT,
                env=self.environment_for(launch),
                start_new_session=True,
                close_fds=True,
            )
        except (OSError, ValueError) as exc:
            log_path.unlink(missing_ok=True)
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            program = argv[0] if argv else "<empty command>"
            raise LaunchError(f"cannot start {what}: {program}: {reason}") from None
        return _Child(
            launch=launch,
            pid=process.pid,
            log_path=log_path,
            started=time.monotonic(),
            process=process,
        )

    def poll(self, running: Sequence[RunningTaskRun]) -> PollResult:
        """Outcomes of every child of this process that exited, and which are alive.

        Every finished child is reported, even one whose row is no longer in
        ``running`` (so no child is ever forgotten). ``alive`` holds only ids that are
        in ``running``: rows of other schedulers are left out. A child whose row is no
        longer running (its lease expired) is stopped, since a retry may be running
        elsewhere; so is a child past its timeout.
        """
        wanted = {row.id for row in running}
        self._polls += 1
        if self._polls == 2:
            # Warm the fork server once the first pass is done: that pass (which fails
            # the leases a killed predecessor left) must not compete with its imports.
            self.start_fork_server()
        self._stop_cancelled([row.id for row in running if row.cancelled], time.monotonic())
        self._stop_lost(wanted, time.monotonic())
        self._enforce_timeouts(time.monotonic())
        finished = self._collect()
        alive = [tid for tid, child in self._children.items() if tid in wanted and not child.exited]
        return PollResult(finished=finished, alive=alive)

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds; return True as soon as :meth:`poll` has work.

        That is: a child exited (also one that exited before this call), or a
        child's timeout or kill grace ran out. False means the whole timeout passed.
        """
        if self._poll_due():
            return True
        deadline = self._next_deadline()
        if deadline is not None:
            timeout = min(timeout, deadline - time.monotonic())
        if timeout > 0:
            self._exited.wait(timeout)
        return self._poll_due()

    def wait_all(self, timeout: float | None = None) -> bool:
        """Block until every child has exited (timeouts still enforced); True if they all did.

        The outcomes are not consumed: call :meth:`poll` afterwards.
        """
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            self._exited.clear()
            now = time.monotonic()
            self._enforce_timeouts(now)
            if all(child.exited for child in self._children.values()):
                if self._children:
                    self._exited.set()  # keep wait() prompt for the unreported outcomes
                return True
            step = 3600.0 if end is None else end - now
            if step <= 0:
                return False
            deadline = self._next_deadline()
            if deadline is not None:
                step = min(step, max(0.0, deadline - now))
            self._exited.wait(step)

    def shutdown(self, kill: bool) -> Sequence[Outcome]:
        """Stop and return the outcome of every child not reported yet.

        Without ``kill`` (SIGINT), wait for the children to finish (their timeouts
        still apply). With ``kill`` (SIGTERM), send SIGTERM to each child's process
        group, SIGKILL after ``shutdown_grace`` seconds, and report every child that
        was still running as failed: ``stopped by scheduler shutdown (SIGTERM)``.
        """
        if kill:
            now = time.monotonic()
            for child in self._children.values():
                if not child.exited and child.kill_at is None:
                    child.stop_reason = SHUTDOWN_ERROR
                    self._signal(child, signal.SIGTERM)
                    child.kill_at = now + self.shutdown_grace
                # One already stopping for its timeout keeps that reason and its SIGKILL time.
        self.wait_all()  # sends the SIGKILLs as they fall due
        outcomes = self._collect()
        if self._server is not None:
            self._server.close()
        return outcomes

    # -- internals ------------------------------------------------------------

    def _wait_for_exit(self, child: _Child) -> None:
        """Waiting thread: block until the child exits, without reaping it, then wake the loop."""
        assert child.process is not None
        try:
            if hasattr(os, "waitid"):
                os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
            else:  # pragma: no cover - platforms without waitid
                child.process.wait()
        except ChildProcessError:
            child.reaped_elsewhere = True  # its pid may be reused: never signal it again
        except Exception:  # pragma: no cover - never let the thread die silently
            log.exception("waiting for pid %d failed", child.pid)
        finally:
            child.exit_seen = True
            self._exited.set()

    def _signal(self, child: _Child, signum: signal.Signals) -> None:
        """Signal the child's whole process group (it leads one: its own session)."""
        if not child.pid_reserved:
            return
        try:
            os.killpg(child.pid, signum)
        except ProcessLookupError:
            pass
        except PermissionError as exc:
            log.warning("cannot send %s to process group %d: %s", signum.name, child.pid, exc)

    def _stop_cancelled(self, task_run_ids: Sequence[int], now: float) -> None:
        """SIGTERM the process groups of our attempts whose run was cancelled.

        SIGKILL follows after ``kill_grace`` seconds (:meth:`_enforce_timeouts`);
        one already being stopped (timeout) keeps its SIGKILL time.
        """
        for task_run_id in task_run_ids:
            child = self._children.get(task_run_id)
            if child is None or child.exited:
                continue
            if child.stop_reason != CANCELLED_ERROR:
                child.stop_reason = CANCELLED_ERROR
                log.info(
                    "task %s/%s (task run %d): its run was cancelled; stopping it",
                    child.launch.dag.name,
                    child.launch.task.name,
                    task_run_id,
                )
            if child.kill_at is None:
                self._signal(child, signal.SIGTERM)
                child.kill_at = now + self.kill_grace

    def _stop_lost(self, running: set[int], now: float) -> None:
        """Stop children whose task run the database no longer records as running.

        That happens when this scheduler stopped renewing leases for too long (a
        stall, a partition): another scheduler failed the attempt and retries it,
        so this copy must not run on beside the retry.
        """
        for task_run_id, child in self._children.items():
            if child.exited or child.kill_at is not None or task_run_id in running:
                continue
            child.stop_reason = LOST_ERROR
            log.warning(
                "task %s/%s (task run %d) is no longer ours (%s); stopping it",
                child.launch.dag.name,
                child.launch.task.name,
                task_run_id,
                LOST_ERROR,
            )
            self._signal(child, signal.SIGTERM)
            child.kill_at = now + self.kill_grace

    def _enforce_timeouts(self, now: float) -> None:
        """SIGTERM children past their timeout; SIGKILL those still alive after the grace."""
        for child in self._children.values():
            if child.exited:
                continue
            deadline = child.deadline
            if child.kill_at is None:
                if deadline is not None and now >= deadline:
                    child.stop_reason = f"timed out after {child.launch.timeout:g}s"
                    log.warning(
                        "task %s/%s (task run %d) %s; stopping it",
                        child.launch.dag.name,
                        child.launch.task.name,
                        child.launch.task_run_id,
                        child.stop_reason,
                    )
                    self._signal(child, signal.SIGTERM)
                    child.kill_at = now + self.kill_grace
            elif not child.kill_sent and now >= child.kill_at:
                self._signal(child, signal.SIGKILL)
                child.kill_sent = True

    def _poll_due(self) -> bool:
        if any(child.exited for child in self._children.values()):
            return True
        deadline = self._next_deadline()
        return deadline is not None and time.monotonic() >= deadline

    def _next_deadline(self) -> float | None:
        """The earliest moment :meth:`_enforce_timeouts` has something to do."""
        moments: list[float] = []
        for child in self._children.values():
            if child.exited:
                continue
            if child.kill_at is None:
                if child.deadline is not None:
                    moments.append(child.deadline)
            elif not child.kill_sent:
                moments.append(child.kill_at)
        return min(moments, default=None)

    def _collect(self) -> list[Outcome]:
        """Reap every exited child, forget it, delete its log, and return its outcome."""
        self._exited.clear()
        outcomes: list[Outcome] = []
        for task_run_id, child in list(self._children.items()):
            if not child.exited:
                continue
            # The leader is a zombie, so its group id is still reserved: end anything
            # it left behind (a backgrounded grandchild) before reaping it.
            self._signal(child, signal.SIGKILL)
            returncode: int | None
            if child.process is not None:
                returncode = child.process.wait()
            else:
                assert child.forked is not None and self._server is not None
                returncode = child.forked.returncode
                self._server.reap(child.forked)
                if child.forked.lost and child.stop_reason is None:
                    child.stop_reason = SERVER_LOST_ERROR
            if child.waiter is not None:
                child.waiter.join()
            outcomes.append(self._outcome(child, returncode))
            del self._children[task_run_id]
            child.log_path.unlink(missing_ok=True)
        if self._server is not None and self._server.stopped_reason and outcomes:
            self._fall_back(self._server.stopped_reason)
        return outcomes

    def _outcome(self, child: _Child, returncode: int | None) -> Outcome:
        tail = self._read_tail(child.log_path)
        error: str | None
        if child.stop_reason == CANCELLED_ERROR and returncode == 0:
            # It finished (or exited cleanly) as the stop arrived: a success stands.
            succeeded = True
            error = None
        elif child.stop_reason is not None:
            succeeded = False
            error = child.stop_reason
        elif returncode == 0:
            succeeded = True
            error = None
        else:
            succeeded = False
            if returncode is None:
                error = "exit status unknown"
            elif returncode < 0:
                error = f"killed by signal {-returncode}{_signal_name(-returncode)}"
            else:
                error = f"exit code {returncode}"
            line = _last_error_line(tail)
            if line:
                error = f"{error}: {line}"
            if len(error) > MAX_ERROR_CHARS:
                error = error[: MAX_ERROR_CHARS - 3] + "..."
        if error is not None:
            error = error.replace("\x00", "\ufffd")
        launch = child.launch
        log.info(
            "task %s/%s (task run %d) %s after %.1fs",
            launch.dag.name,
            launch.task.name,
            launch.task_run_id,
            "succeeded" if succeeded else f"failed: {error}",
            time.monotonic() - child.started,
        )
        return Outcome(
            task_run_id=launch.task_run_id,
            succeeded=succeeded,
            exit_code=returncode,
            error=error,
            output_tail=tail,
        )

    def _read_tail(self, path: Path) -> str:
        """The last ``output_tail_bytes`` of the log, decoded without a broken first character."""
        if self.output_tail_bytes == 0:
            return ""
        try:
            with path.open("rb") as f:
                size = f.seek(0, os.SEEK_END)
                start = max(0, size - self.output_tail_bytes)
                f.seek(start)
                data = f.read(self.output_tail_bytes)
        except OSError as exc:
            return f"<output unavailable: {exc.strerror or exc}>"
        if start > 0:
            # Skip UTF-8 continuation bytes of a character cut in half by the window.
            skip = 0
            while skip < min(3, len(data)) and data[skip] & 0xC0 == 0x80:
                skip += 1
            data = data[skip:]
        # PostgreSQL text cannot hold NUL characters.
        return data.decode("utf-8", errors="replace").replace("\x00", "\ufffd")


def _run_arguments(launch: Launch) -> list[str]:
    """``<config> run <dag> -o <task>``: the arguments of ``workflows`` for one attempt."""
    return [launch.config, "run", launch.dag.name, "-o", launch.task.name]


def _signal_name(signum: int) -> str:
    try:
        return f" ({signal.Signals(signum).name})"
    except ValueError:
        return ""


def _last_error_line(output: str) -> str | None:
    """The line that best says why a task failed.

    ``workflows ... run`` ends a failure with ``workflows: <reason>`` on stderr:
    prefer the last such line, else the last non-empty line of the output.
    """
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("workflows: "):
            return line
    return lines[-1] if lines else None
