"""A warm fork server for the worker manager's attempts.

Starting ``python -m workflows_tick CONFIG run DAG -o TASK`` costs a fresh
interpreter and its imports (about 55 ms beyond an empty ``python``) for every
attempt. Instead the worker manager starts this module once
(``python -m workflows_tick.forkserver``): it imports what ``run`` needs, and
then forks one child per attempt, which runs exactly what that command runs
(:func:`workflows_tick.entry.main`) at the top level of the child, so that the
interpreter exits the usual way (``atexit`` hooks, non-daemon threads, flushed
output, the exit code of ``sys.exit`` or 1 after a traceback).

What an attempt gets, as with its own interpreter:

- its own session and process group (``setsid``), stdin ``/dev/null``, stdout
  and stderr on the log file the manager opened and passed over the socket;
- exactly the environment the manager sent (the server's never leaks in) and the
  working directory it names; default signal handlers;
- a parent-death signal: the server dies with its scheduler
  (``WORKFLOWS_SCHEDULER_PID`` names the scheduler), each attempt with the server
  (its ``WORKFLOWS_SCHEDULER_PID`` names the server);
- nothing of user code: the server never imports a config or a DAG file and
  never connects to a database, so edits are picked up at once and every
  database connection is opened in the attempt.

Whatever an attempt does to its process (cwd, signal handlers, ``sys.modules``,
threads, file descriptors) dies with it: the next attempt is forked from the
untouched server.

Protocol: one ``AF_UNIX`` ``SOCK_SEQPACKET`` socket (its descriptor number is the
server's one argument), one
JSON object per message. Manager to server: ``{"start": id, "args": [...],
"env": {...}, "cwd": "..."}`` with the log file's descriptor attached, and
``{"reap": pid}``. Server to manager: ``{"ready": pid}`` once, then
``{"started": id, "pid": pid}`` or ``{"refused": id, "error": "..."}``, and
``{"exited": pid, "returncode": n}`` (negative: killed by that signal).

An exited attempt stays a zombie until the manager says ``reap`` (after it has
signalled the attempt's process group one last time), so its pid, and with it
the group id, cannot be reused while the manager may still signal it.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import selectors
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

COMMAND_LINE_ROOM = 2048
"""Bytes of padding on the server's command line: room to show each attempt's own."""
MAX_MESSAGE = 1 << 20
"""Largest message read from the manager (the environment of one attempt)."""
PRELOAD = (
    "workflows_tick.entry",
    "workflows_tick.config",
    "workflows_tick.dags",
    "workflows_tick.loader",
    "workflows_tick.runner",
    "workflows_tick.logs",
    "workflows_tick.lifeline",
    "workflows_tick.errors",
    "workflows_tick.taskfiles",
    "workflows_tick.validate",
    "workflows_tick.cron",
    "zoneinfo",
    "encodings.utf_8_sig",
    "importlib.util",
    "uuid",
    "ctypes",
    "subprocess",
    "traceback",
    "psycopg2",
)
"""Imported once by the server: what ``workflows ... run`` imports, no user code."""


WARM_TIME_ZONES = ("UTC",)
"""Time zones read once by the server (``ZoneInfo`` keeps them): the default one."""


def _preload() -> None:
    import importlib

    for name in PRELOAD:
        # psycopg2 is optional here: an attempt that needs it imports it (or fails).
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    from zoneinfo import ZoneInfo

    for zone in WARM_TIME_ZONES:
        with contextlib.suppress(Exception):  # no time zone database: each attempt says so
            ZoneInfo(zone)


def _returncode(result: os.waitid_result) -> int:
    """As :attr:`subprocess.Popen.returncode`: the exit code, or minus the signal."""
    if result.si_code == os.CLD_EXITED:
        return result.si_status
    return -result.si_status


class _Server:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.children: set[int] = set()
        """Attempts started and not reaped yet."""
        self.reported: set[int] = set()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.selector = selectors.DefaultSelector()

    def send(self, message: dict[str, Any]) -> None:
        self.sock.send(json.dumps(message).encode())

    def serve(self) -> dict[str, Any] | None:
        """Serve until the manager goes away (None); in a forked child, its request."""
        try:
            return self._serve()
        except (BrokenPipeError, ConnectionError):
            return None  # the manager went away while we answered it

    def _serve(self) -> dict[str, Any] | None:
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        signal.set_wakeup_fd(self.wake_w)
        self.selector.register(self.sock, selectors.EVENT_READ)
        self.selector.register(self.wake_r, selectors.EVENT_READ)
        self.send({"ready": os.getpid()})
        while True:
            for key, _ in self.selector.select():
                if key.fileobj is self.sock:
                    try:
                        data, fds, _, _ = socket.recv_fds(self.sock, MAX_MESSAGE, 1)
                    except ConnectionError:
                        data, fds = b"", []
                    if not data:
                        return None  # the manager closed its end: stop
                    request = self._handle(json.loads(data), fds)
                    if request is not None:
                        return request  # the child
                else:
                    while True:
                        try:
                            if not os.read(self.wake_r, 512):
                                break
                        except BlockingIOError:
                            break
                    self._report_exits()

    def _handle(self, message: dict[str, Any], fds: list[int]) -> dict[str, Any] | None:
        if "reap" in message:
            pid = int(message["reap"])
            if pid in self.children:
                os.waitpid(pid, 0)
                self.children.discard(pid)
                self.reported.discard(pid)
            return None
        ident = message["start"]
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            self.send({"refused": ident, "error": "no log file descriptor"})
            return None
        # The child leads its own session before the manager hears of it: a signal the
        # manager sends to its process group at once must find the group.
        leading_r, leading_w = os.pipe()
        try:
            pid = os.fork()
        except OSError as exc:
            for fd in (fds[0], leading_r, leading_w):
                os.close(fd)
            self.send({"refused": ident, "error": f"fork: {exc.strerror or exc}"})
            return None
        if pid == 0:
            os.setsid()
            os.close(leading_w)
            os.close(leading_r)
            self._become_child(fds[0])
            return message
        os.close(leading_w)
        os.read(leading_r, 1)  # end of file once the child called setsid (or died)
        os.close(leading_r)
        os.close(fds[0])
        self.children.add(pid)
        self.send({"started": ident, "pid": pid})
        return None

    def _report_exits(self) -> None:
        for pid in sorted(self.children - self.reported):
            result = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            if result is not None and result.si_pid == pid:
                self.reported.add(pid)
                self.send({"exited": pid, "returncode": _returncode(result)})

    def _become_child(self, log_fd: int) -> None:
        """In the forked child: drop every trace of the server."""
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        self.selector.close()
        self.sock.close()
        os.close(self.wake_r)
        os.close(self.wake_w)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.closerange(3, os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 65536)


@dataclass(frozen=True)
class _ArgumentArea:
    """Where the server's command line lives in its memory (and so in each attempt's)."""

    start: int
    size: int
    python: bytes


def _argument_area() -> _ArgumentArea | None:
    """The server's argument area (``/proc/self/stat`` fields 48 and 49), read once:
    a forked attempt has the same address space, so it only writes there. Linux only;
    None when anything is unexpected (attempts then keep the server's command line)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fields = Path("/proc/self/stat").read_text().rpartition(")")[2].split()
        start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end (fields 48, 49)
        python = Path("/proc/self/cmdline").read_bytes().split(b"\0")[0]
    except (OSError, IndexError, ValueError):
        return None
    if end - start <= 1:
        return None
    return _ArgumentArea(start, end - start, python)


def _show_command_line(area: _ArgumentArea | None, args: list[str]) -> None:
    """Make ``ps`` (``/proc/self/cmdline``) show ``python -m workflows_tick ARGS``.

    The server was started with a padding argument, so that its argument area (which
    the interpreter no longer reads) has room; it is rewritten in place.
    """
    if area is None:
        return
    title = b"\0".join([area.python, b"-m", b"workflows_tick", *(a.encode() for a in args)])
    title = title[: area.size - 1]
    import ctypes

    ctypes.memmove(area.start, title + b"\0" * (area.size - len(title)), area.size)


def _run_attempt(request: dict[str, Any], area: _ArgumentArea | None) -> NoReturn:
    """In the child: what ``python -m workflows_tick ARGS`` does, in this process."""
    _show_command_line(area, request["args"])
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    # The same sys.path[0] as ``python -m`` run from that folder.
    if sys.path and sys.path[0] != request["cwd"]:
        sys.path[0] = request["cwd"]
    sys.argv = [sys.argv[0], *request["args"]]
    from workflows_tick.entry import main

    try:
        main(request["args"])
    except SystemExit as exc:
        code = _exit_status(exc.code)
    else:
        code = 0
    _exit(code)
    # Anything else (an uncaught exception, KeyboardInterrupt) propagates: the
    # interpreter prints it and exits (1, or by the signal) as a new one would.


def _exit_status(code: object) -> int:
    """The exit status the interpreter gives ``sys.exit(code)``: the int, 0 for None,
    else 1 after printing the value to stderr."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    with contextlib.suppress(Exception):
        print(code, file=sys.stderr)
    return 1


def _exit(code: int) -> NoReturn:
    """End the attempt as the interpreter's exit would, without its teardown.

    Tearing down a forked interpreter (freeing every module the server imported,
    each page copied on write first) takes about 10 ms; nothing of it is seen
    outside the process. What is seen is kept, in the interpreter's order: wait for
    non-daemon threads, run ``atexit`` callbacks (``logging`` flushes its handlers
    there), flush stdout and stderr (120 if that fails, as the interpreter exits).
    """
    import atexit
    import threading

    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        with contextlib.suppress(Exception):
            shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            code = 120
    os._exit(code & 0xFF)  # what exit(3) keeps of it


def main() -> None:
    from workflows_tick.lifeline import die_with_scheduler

    die_with_scheduler(os.environ)  # the server dies with its scheduler
    sock = socket.socket(fileno=int(sys.argv[1]))
    _preload()
    area = _argument_area()
    # Keep the preloaded objects out of the collector's reach, so that a collection in
    # an attempt does not write to (and so copy) every page it shares with the server.
    gc.freeze()
    request = _Server(sock).serve()
    if request is None:
        return
    _run_attempt(request, area)


if __name__ == "__main__":
    main()
