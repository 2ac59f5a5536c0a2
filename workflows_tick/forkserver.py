"""A warm fork server for the worker manager's attempts.

Starting ``python -m workflows_tick CONFIG run DAG -o TASK`` costs a fresh
interpreter and its imports (about 55 ms beyond an empty ``python``) for every
attempt. Instead the worker manager starts this module once
(``python -m workflows_tick.forkserver``): it imports what ``run`` needs, and
then forks one child per attempt, which runs exactly what that command runs
(:func:`workflows_tick.entry.main`) and ends as that interpreter would (non-daemon
threads waited for, ``atexit`` hooks, flushed output, the exit code of
``sys.exit``; an uncaught exception goes through the interpreter's own exit),
without tearing the interpreter down.

The child of the next attempt is forked ahead of its request (the *spare*): it
leads its session already and warms the loader and logging paths on a built-in
sample while it waits (:func:`_warm_up`), so that neither the fork nor the first
touch of the server's pages is paid between a request and the task's code. The
server hands it the request over its own socket pair, answers ``started`` at once,
and forks the next spare. A spare that dies while it waits is reaped and replaced;
a spare exits when its socket closes (its server stopped or died).

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
threads, file descriptors) dies with it: the next attempt (and its spare) is
forked from the untouched server.

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
import select
import selectors
import signal
import socket
import sys
from collections.abc import Callable
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


WARM_UP_FILES = {
    "workflow.yaml": "description: warm-up\nschedule: '0 3 * * *'\ntimezone: UTC\nretries: 1\n",
    "a.py": '"""\ndescription: warm-up\nparameters: [P]\n"""\n\n\ndef run(context):\n    pass\n',
    "b.yaml": "type: no_op\ninputs: [a.py]\ntimeout: 10\n",
    "c.sh": "# parameters: [P]\necho\n",
    "d.sql": "/* description: warm-up */\nSELECT 1;\n",
}
"""A sample DAG folder's files, parsed by each spare process while it waits."""


def _warm_up(requested: Callable[[], bool]) -> None:
    """In a spare, while it waits: run what an attempt runs first (reading and parsing
    a DAG's files, the logging set-up, importing a file by path) on the sample above.

    A forked process copies each page of the server's memory it writes to (reference
    counts included) on first write: about 10 ms for these paths, which the attempt
    then no longer pays. Each step starts only while no request is waiting
    (``requested``), so a request that comes early waits for one step at most.
    Nothing here reads user files nor runs user code; the attempt sets up its logging
    again; anything failing is ignored.
    """
    import importlib.util
    import logging
    import uuid

    import workflows_tick
    from workflows_tick import loader
    from workflows_tick.logs import setup_logging

    folder = Path("/warm-up")

    def import_by_path() -> None:
        spec = importlib.util.spec_from_file_location("workflows_warm_up", workflows_tick.__file__)
        if spec is not None and spec.loader is not None:
            spec.loader.exec_module(importlib.util.module_from_spec(spec))

    steps: list[Callable[[], object]] = [
        lambda: loader.workflow_from_text(
            folder / loader.WORKFLOW_FILE, WARM_UP_FILES[loader.WORKFLOW_FILE]
        ),
        *(
            (lambda name=name: loader.task_from_source(folder / name, WARM_UP_FILES[name]))
            for name in WARM_UP_FILES
            if name != loader.WORKFLOW_FILE
        ),
        lambda: loader.read_text(Path(loader.__file__)),
        lambda: setup_logging(),
        lambda: (
            logging.getLogger()
            .handlers[0]
            .format(logging.LogRecord("warm-up", logging.INFO, __file__, 1, "%s", ("x",), None))
        ),
        lambda: json.loads(json.dumps({"env": dict(os.environ), "args": sys.argv})),
        uuid.uuid4,
        import_by_path,
    ]
    for step in steps:
        if requested():
            return
        with contextlib.suppress(Exception):
            step()


def _returncode(result: os.waitid_result) -> int:
    """As :attr:`subprocess.Popen.returncode`: the exit code, or minus the signal."""
    if result.si_code == os.CLD_EXITED:
        return result.si_status
    return -result.si_status


@dataclass
class _Spare:
    """A process forked ahead of the next request, waiting on ``sock`` for it."""

    pid: int
    sock: socket.socket


class _Server:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.children: set[int] = set()
        """Attempts started and not reaped yet."""
        self.reported: set[int] = set()
        self.spare: _Spare | None = None
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.selector = selectors.DefaultSelector()

    def send(self, message: dict[str, Any]) -> None:
        self.sock.send(json.dumps(message).encode())

    def serve(self) -> dict[str, Any] | None:
        """Serve until the manager goes away (None); in a forked child, its request."""
        try:
            request = self._serve()
        except (BrokenPipeError, ConnectionError):
            request = None  # the manager went away while we answered it
        if request is None:
            self._retire_spare()
        return request

    def _serve(self) -> dict[str, Any] | None:
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        signal.set_wakeup_fd(self.wake_w)
        self.selector.register(self.sock, selectors.EVENT_READ)
        self.selector.register(self.wake_r, selectors.EVENT_READ)
        self.send({"ready": os.getpid()})
        request = self._fork_spare()
        if request is not None:
            return request  # the spare
        while True:
            for key, _ in self.selector.select():
                if key.fileobj is self.sock:
                    try:
                        data, fds, _, _ = socket.recv_fds(self.sock, MAX_MESSAGE, 1)
                    except ConnectionError:
                        data, fds = b"", []
                    if not data:
                        return None  # the manager closed its end: stop
                    request = self._handle(data, fds)
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

    def _handle(self, data: bytes, fds: list[int]) -> dict[str, Any] | None:
        message = json.loads(data)
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
        spare = self._hand_to_spare(data, fds[0])
        if spare is not None:
            pid = spare
        else:
            try:
                pid = self._fork_leader()
            except OSError as exc:
                os.close(fds[0])
                self.send({"refused": ident, "error": f"fork: {exc.strerror or exc}"})
                return None
            if pid == 0:
                self._leave_server()
                self._take_log(fds[0])
                return dict(message)
        os.close(fds[0])
        self.children.add(pid)
        self.send({"started": ident, "pid": pid})
        # The next attempt's process, forked now rather than on its request.
        return self._fork_spare()

    def _fork_leader(self) -> int:
        """Fork a child that leads its own session before this returns in the server:
        a signal the manager sends to its process group at once must find the group."""
        leading_r, leading_w = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            os.close(leading_r)
            os.close(leading_w)
            raise
        if pid == 0:
            os.setsid()
            os.close(leading_w)
            os.close(leading_r)
            return 0
        os.close(leading_w)
        os.read(leading_r, 1)  # end of file once the child called setsid (or died)
        os.close(leading_r)
        return pid

    def _fork_spare(self) -> dict[str, Any] | None:
        """Fork the process of the next attempt ahead of its request, so that the
        fork and the set-up of the process are not paid between a request and the
        task's code. None in the server (also when it cannot fork: the next request
        forks then); in the spare, the request it was handed.
        """
        if self.spare is not None:
            return None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            pid = self._fork_leader()
        except OSError:
            ours.close()
            theirs.close()
            return None
        if pid != 0:
            theirs.close()
            self.spare = _Spare(pid, ours)
            return None
        ours.close()
        self._leave_server()
        _warm_up(lambda: bool(select.select([theirs], [], [], 0)[0]))
        try:
            data, fds, _, _ = socket.recv_fds(theirs, MAX_MESSAGE, 1)
        except OSError:
            data, fds = b"", []
        theirs.close()
        if not data or len(fds) != 1:
            os._exit(0)  # retired (or its server is gone): nothing ran here
        self._take_log(fds[0])
        request: dict[str, Any] = json.loads(data)
        return request

    def _hand_to_spare(self, data: bytes, log_fd: int) -> int | None:
        """Give a start request to the spare; its pid, or None if there is none."""
        spare, self.spare = self.spare, None
        if spare is None:
            return None
        try:
            socket.send_fds(spare.sock, [data], [log_fd])
        except OSError:  # it died: reap it, and fork the attempt instead
            self._end_spare(spare)
            return None
        spare.sock.close()
        return spare.pid

    def _end_spare(self, spare: _Spare) -> None:
        spare.sock.close()  # it exits on the end of file, if it is still alive
        with contextlib.suppress(ChildProcessError):
            os.waitpid(spare.pid, 0)

    def _retire_spare(self) -> None:
        spare, self.spare = self.spare, None
        if spare is not None:
            self._end_spare(spare)

    def _report_exits(self) -> None:
        for pid in sorted(self.children - self.reported):
            result = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            if result is not None and result.si_pid == pid:
                self.reported.add(pid)
                self.send({"exited": pid, "returncode": _returncode(result)})
        spare = self.spare
        if spare is not None:  # killed while it waited: the next request forks one
            result = os.waitid(os.P_PID, spare.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            if result is not None and result.si_pid == spare.pid:
                self.spare = None
                self._end_spare(spare)

    def _leave_server(self) -> None:
        """In a forked child: drop every trace of the server but the log to come."""
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        self.selector.close()
        self.sock.close()
        os.close(self.wake_r)
        os.close(self.wake_w)

    @staticmethod
    def _take_log(log_fd: int) -> None:
        """In the child: stdin from /dev/null, stdout and stderr to the log, nothing else."""
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
