"""The worker manager's side of the fork server (:mod:`workflows_tick.forkserver`).

:class:`ForkServer` starts the server, asks it for one attempt at a time
(:meth:`ForkServer.spawn`) and hears from one reader thread when attempts exit.
If the server goes away, every attempt it still ran is marked lost (the kernel
sends them SIGTERM with their server) and :attr:`ForkServer.alive` turns False:
the worker manager then starts attempts as new interpreters.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import socket
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from workflows_tick.forkserver import COMMAND_LINE_ROOM, MAX_MESSAGE
from workflows_tick.lifeline import SCHEDULER_PID

log = logging.getLogger(__name__)

READY_TIMEOUT = 30.0
"""Seconds the server may take to import what attempts need."""
ANSWER_TIMEOUT = 10.0
"""Seconds the server may take to fork one attempt."""


class ForkServerError(Exception):
    """The server cannot start attempts (it did not start, or it died)."""


@dataclass(eq=False)
class ForkedAttempt:
    """One attempt forked by the server; updated by the reader thread."""

    pid: int
    returncode: int | None = None
    exited: bool = False
    lost: bool = False
    """The server died first: no exit status, and the pid is no longer reserved."""


class ForkServer:
    """One running fork server and the thread that reads its messages.

    ``on_exit`` is called from the reader thread after an attempt's
    :attr:`ForkedAttempt.exited` is set (also when it is lost with the server).
    """

    def __init__(self, python: str, on_exit: Callable[[], None]) -> None:
        self.python = python
        self.on_exit = on_exit
        self.process: subprocess.Popen[bytes] | None = None
        self.alive = False
        self.stopped_reason: str | None = None
        self._sock: socket.socket | None = None
        self._answers: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._attempts: dict[int, ForkedAttempt] = {}
        self._lock = threading.Lock()
        self._reader: threading.Thread | None = None
        self._next_id = 0
        self._ready = False

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def start(self) -> None:
        """Start the server process without waiting for its imports (the first
        :meth:`spawn` waits); ForkServerError if the process cannot be started."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = dict(os.environ)
        env[SCHEDULER_PID] = str(os.getpid())  # the server dies with this process
        try:
            with theirs:
                self.process = subprocess.Popen(
                    [
                        self.python,
                        "-m",
                        "workflows_tick.forkserver",
                        str(theirs.fileno()),
                        " " * COMMAND_LINE_ROOM,  # room for each attempt's command line
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    env=env,
                    start_new_session=True,  # Ctrl-C at a terminal is the scheduler's to handle
                    pass_fds=(theirs.fileno(),),
                    close_fds=True,
                )
        except (OSError, ValueError) as exc:
            ours.close()
            raise ForkServerError(f"cannot start {self.python}: {exc}") from None
        self._sock = ours
        self._reader = threading.Thread(target=self._read, name="workflows-forkserver", daemon=True)
        self._reader.start()
        self.alive = True

    def wait_ready(self) -> None:
        """Wait until the server has its imports done; ForkServerError if it never will."""
        if self._ready:
            return
        answer = self._answer(READY_TIMEOUT)
        if answer is None or "ready" not in answer:
            self.alive = False
            raise ForkServerError(self.stopped_reason or "it did not say it was ready")
        self._ready = True

    def spawn(
        self, args: Sequence[str], env: Mapping[str, str], cwd: str, log_fd: int
    ) -> ForkedAttempt:
        """Fork one attempt running ``workflows ARGS``; ForkServerError if the server
        cannot (the attempt did not start: start it another way)."""
        if not self.alive or self._sock is None:
            raise ForkServerError(self.stopped_reason or "not running")
        self.wait_ready()
        self._next_id += 1
        env = dict(env)
        env[SCHEDULER_PID] = str(self.pid)  # the attempt dies with the server
        message = {"start": self._next_id, "args": list(args), "env": env, "cwd": cwd}
        data = json.dumps(message).encode()
        if len(data) > MAX_MESSAGE:
            raise ForkServerError(f"the request is too large ({len(data)} bytes)")
        try:
            socket.send_fds(self._sock, [data], [log_fd])
        except OSError as exc:
            raise ForkServerError(f"cannot reach it: {exc.strerror or exc}") from None
        answer = self._answer(ANSWER_TIMEOUT)
        if answer is None:
            raise ForkServerError(self.stopped_reason or "it did not answer")
        if "refused" in answer:
            raise ForkServerError(str(answer.get("error")))
        with self._lock:
            return self._attempts[int(answer["pid"])]

    def reap(self, attempt: ForkedAttempt) -> None:
        """Let the server reap an exited attempt (after its group's last signal)."""
        with self._lock:
            self._attempts.pop(attempt.pid, None)
        if attempt.lost or self._sock is None:
            return
        with contextlib.suppress(OSError):  # the server is gone; so are its zombies
            self._sock.send(json.dumps({"reap": attempt.pid}).encode())

    def close(self) -> None:
        """Stop the server (closing the socket ends it) and wait for it."""
        self.alive = False
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
        if self.process is not None:
            try:
                self.process.wait(timeout=READY_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._reader is not None:
            self._reader.join()
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    # -- the reader thread ---------------------------------------------------------

    def _answer(self, timeout: float) -> dict[str, Any] | None:
        try:
            return self._answers.get(timeout=timeout)
        except queue.Empty:
            self.stopped_reason = self.stopped_reason or f"no answer within {timeout:g}s"
            self.alive = False
            # An attempt it forks after all must not run unseen beside its retry: end the
            # server, and with it (their parent-death signal) everything it started.
            if self.process is not None:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
            return None

    def _read(self) -> None:
        assert self._sock is not None
        try:
            while True:
                data = self._sock.recv(MAX_MESSAGE)
                if not data:
                    break
                message = json.loads(data)
                if "exited" in message:
                    with self._lock:
                        attempt = self._attempts.get(int(message["exited"]))
                    if attempt is not None:
                        attempt.returncode = int(message["returncode"])
                        attempt.exited = True
                        self.on_exit()
                    continue
                if "started" in message:
                    with self._lock:
                        pid = int(message["pid"])
                        self._attempts[pid] = ForkedAttempt(pid)
                self._answers.put(message)
        except OSError as exc:
            self.stopped_reason = f"its socket failed: {exc.strerror or exc}"
        except Exception as exc:  # pragma: no cover - a malformed message: a bug
            self.stopped_reason = f"unreadable message: {exc}"
            log.exception("the fork server sent an unreadable message")
        self._lost()

    def _lost(self) -> None:
        """The server is gone: its attempts die with it (their parent-death signal)."""
        self.alive = False
        if self.stopped_reason is None:
            code = self.process.wait() if self.process is not None else None
            self.stopped_reason = f"it exited ({_describe(code)})"
        with self._lock:
            attempts = [a for a in self._attempts.values() if not a.exited]
        for attempt in attempts:
            attempt.lost = True
            attempt.exited = True
        self._answers.put(None)
        if attempts:
            self.on_exit()


def _describe(returncode: int | None) -> str:
    if returncode is None:
        return "unknown status"
    if returncode < 0:
        return f"killed by signal {-returncode}"
    return f"exit code {returncode}"
