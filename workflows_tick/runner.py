"""Running a DAG's tasks in this process: ``workflows <config> run <dag>``.

The scheduler starts this once per task, so it stays light: psycopg2 is imported
only when a task needs a database, and nothing else heavy is imported at all.

A task sees only the environment variables it lists in ``parameters`` (plus a
minimal ``PATH``/``HOME``/``LANG`` so programs work). See ``docs/dag-format.md``.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from workflows_tick.errors import MissingParameterError, TaskFailed
from workflows_tick.hooks import Event, Hook, call_hooks
from workflows_tick.logs import redact, register_secret
from workflows_tick.model import Dag, TableOutput, Task, TaskType

if TYPE_CHECKING:
    from psycopg2.extensions import connection as Connection

log = logging.getLogger(__name__)

DATABASE_URL = "DATABASE_URL"
BASE_ENVIRONMENT = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")
"""Passed to every task when set, whether declared or not, so that programs work."""
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
MAX_REPORTED_ROWS = 5
MAX_REASON_CHARS = 1000

Connector = Callable[[Dag, Task, Mapping[str, str]], "Connection"]
"""Opens the connection a task runs on, given its DAG, itself and its parameters."""


def run_tasks(
    dag: Dag,
    tasks: list[Task],
    environ: Mapping[str, str],
    hooks: Sequence[Hook] = (),
    connect: Connector | None = None,
) -> None:
    """Run ``tasks`` (already in topological order) one by one; stop at the first failure.

    Raises MissingParameterError before anything runs when a task's declared
    parameter is not in ``environ``, and TaskFailed for the first task that fails.
    ``hooks`` get ``TASK_START`` before each task and ``TASK_FINISH`` after it, with
    the TaskFailed as ``exception`` when it failed.
    """
    for task in tasks:
        missing = [p for p in task.parameters if p not in environ]
        if missing:
            raise MissingParameterError(dag.name, task.name, missing)
    for task in tasks:
        started = time.monotonic()
        log.info("task %s/%s: starting (%s)", dag.name, task.name, task.type.value)
        call_hooks(hooks, Event.TASK_START, dag=dag, task=task)
        try:
            run_task(dag, task, environ, connect)
        except Exception as exc:
            call_hooks(hooks, Event.TASK_FINISH, dag=dag, task=task, exception=exc)
            raise
        call_hooks(hooks, Event.TASK_FINISH, dag=dag, task=task)
        log.info("task %s/%s: succeeded in %.3fs", dag.name, task.name, time.monotonic() - started)


def run_task(
    dag: Dag, task: Task, environ: Mapping[str, str], connect: Connector | None = None
) -> None:
    """Run one task; raise TaskFailed when it fails. ``connect`` opens its database
    connection (default: psycopg2 to its ``DATABASE_URL``)."""
    params = {name: environ[name] for name in task.parameters if name in environ}
    connect = connect or _connect
    if task.type is TaskType.NO_OP:
        if task.outputs:
            _check_outputs_fresh(dag, task, params, connect)
    elif task.type is TaskType.SQL:
        _run_sql(dag, task, params, connect)
    elif task.type is TaskType.PYTHON:
        _run_python(dag, task, params, environ, connect)
    elif task.type is TaskType.SHELL:
        _run_shell(dag, task, params, environ, connect)
    else:  # pragma: no cover - the loader refuses other types
        raise TaskFailed(dag.name, task.name, f"unknown task type {task.type!r}")


def task_environment(task: Task, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment a task's process gets: its parameters and a minimal base."""
    env = {name: environ[name] for name in BASE_ENVIRONMENT if name in environ}
    env.setdefault("PATH", DEFAULT_PATH)
    env.setdefault("LANG", "C.UTF-8")
    env.update({name: environ[name] for name in task.parameters if name in environ})
    return env


# --- sql ----------------------------------------------------------------------------


def _run_sql(dag: Dag, task: Task, params: Mapping[str, str], connect: Connector) -> None:
    conn = connect(dag, task, params)
    try:
        with _transaction(dag, task, conn):
            with conn.cursor() as cur:
                cur.execute(task.body)
            check_outputs(dag, task, conn)
    finally:
        conn.close()


# --- python -------------------------------------------------------------------------


class _TaskTimeout(BaseException):
    """Raised by SIGALRM; not an Exception, so user code catching Exception keeps it."""


def _run_python(
    dag: Dag,
    task: Task,
    params: Mapping[str, str],
    environ: Mapping[str, str],
    connect: Connector,
) -> None:
    import importlib.util
    import uuid

    context: dict[str, Any] = dict(params)
    conn = connect(dag, task, params) if DATABASE_URL in params else None
    context["conn"] = conn
    module_name = f"workflows_task_{uuid.uuid4().hex}"
    try:
        try:
            with _task_process_state(dag, task, environ), _alarm(task.timeout):
                spec = importlib.util.spec_from_file_location(module_name, task.path)
                if spec is None or spec.loader is None:
                    raise TaskFailed(dag.name, task.name, "cannot be imported as a module")
                module = importlib.util.module_from_spec(spec)
                sys.modules[module_name] = module
                try:
                    spec.loader.exec_module(module)
                    run = getattr(module, "run", None)
                    if not callable(run):
                        raise TaskFailed(dag.name, task.name, "the module defines no callable run")
                    run(context)
                except SystemExit as exc:
                    if exc.code not in (None, 0):
                        raise
        except TaskFailed:
            _rollback(conn)
            raise
        except _TaskTimeout:
            _rollback(conn)
            raise TaskFailed(dag.name, task.name, f"timed out after {task.timeout:g}s") from None
        except (Exception, SystemExit) as exc:
            _rollback(conn)
            print(redact(traceback.format_exc()), end="", file=sys.stderr)
            raise TaskFailed(dag.name, task.name, _describe(exc)) from None
        if conn is not None:
            with _transaction(dag, task, conn):
                check_outputs(dag, task, conn)
    finally:
        sys.modules.pop(module_name, None)
        if conn is not None:
            conn.close()


@contextmanager
def _task_process_state(dag: Dag, task: Task, environ: Mapping[str, str]) -> Iterator[None]:
    """The DAG folder first on sys.path (sibling helpers import) and os.environ cut
    down to what the task declared, for the duration of the task."""
    folder = str(dag.path)
    saved_env = dict(os.environ)
    # Taken before os.environ is cleared: ``environ`` is os.environ itself for `run`.
    task_env = task_environment(task, environ)
    saved_cwd = Path.cwd()
    sys.path.insert(0, folder)
    os.environ.clear()
    os.environ.update(task_env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        with suppress(ValueError):
            sys.path.remove(folder)
        if Path.cwd() != saved_cwd:
            os.chdir(saved_cwd)


@contextmanager
def _alarm(timeout: float | None) -> Iterator[None]:
    """Interrupt pure-Python code after ``timeout`` seconds (main thread only)."""
    if not timeout or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: FrameType | None) -> None:
        raise _TaskTimeout

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return _truncate(redact(" ".join(text.split())))


# --- shell --------------------------------------------------------------------------


def _run_shell(
    dag: Dag,
    task: Task,
    params: Mapping[str, str],
    environ: Mapping[str, str],
    connect: Connector,
) -> None:
    import subprocess

    sys.stdout.flush()
    sys.stderr.flush()
    proc: subprocess.Popen[bytes] | None = None
    pending: list[int] = []

    def stop(signum: int, frame: FrameType | None) -> None:
        if proc is None:  # bash is being started: stop as soon as it is
            pending.append(signum)
            return
        raise TaskFailed(dag.name, task.name, f"stopped by {signal.Signals(signum).name}")

    # bash runs in its own process group (so a timeout can end all of it): pass a
    # SIGTERM for this process on to that group instead of leaving it behind. The
    # handler is in place before bash starts, so no SIGTERM falls in between.
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, stop) if main else None
    try:
        try:
            proc = subprocess.Popen(
                ["bash", str(task.path)],
                env=task_environment(task, environ),
                cwd=str(dag.path),
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            raise TaskFailed(dag.name, task.name, f"cannot start bash: {exc.strerror}") from None
        if pending:
            stop(pending[0], None)
        code = proc.wait(timeout=task.timeout)
    except subprocess.TimeoutExpired:
        assert proc is not None
        _kill_group(proc.pid)
        proc.wait()
        raise TaskFailed(dag.name, task.name, f"timed out after {task.timeout:g}s") from None
    except BaseException:
        if proc is not None:
            _kill_group(proc.pid)
            proc.wait()
        raise
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        raise TaskFailed(dag.name, task.name, f"killed by signal {name}")
    if code != 0:
        raise TaskFailed(dag.name, task.name, f"exit code {code}")
    if task.outputs:
        _check_outputs_fresh(dag, task, params, connect)


def _kill_group(pid: int) -> None:
    with suppress(OSError):
        os.killpg(pid, signal.SIGKILL)


# --- database -----------------------------------------------------------------------


def _connect(dag: Dag, task: Task, params: Mapping[str, str]) -> Connection:
    url = params.get(DATABASE_URL)
    if not url:
        raise TaskFailed(dag.name, task.name, "DATABASE_URL is empty")
    # A malformed URL comes back whole in the driver's error: never print it.
    register_secret(url)
    import psycopg2

    try:
        conn = psycopg2.connect(url, application_name=f"workflows {dag.name}/{task.name}"[:63])
    except psycopg2.Error as exc:
        raise TaskFailed(dag.name, task.name, f"cannot connect: {_pg_message(exc)}") from None
    except Exception as exc:  # e.g. a malformed URL
        raise TaskFailed(dag.name, task.name, f"cannot connect: {_describe(exc)}") from None
    if task.timeout:
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT set_config('statement_timeout', %s, false)",
                    # PostgreSQL's limit; the loader caps timeouts at a year anyway.
                    (str(min(2_147_483_647, max(1, int(task.timeout * 1000)))),),
                )
            conn.commit()
        except psycopg2.Error as exc:
            conn.close()
            raise TaskFailed(dag.name, task.name, _pg_message(exc)) from None
    return conn


@contextmanager
def _transaction(dag: Dag, task: Task, conn: Connection) -> Iterator[None]:
    """Commit when the block ends; roll back and raise TaskFailed on a database error."""
    import psycopg2

    try:
        yield
    except psycopg2.Error as exc:
        _rollback(conn)
        raise TaskFailed(dag.name, task.name, _pg_message(exc)) from None
    except BaseException:
        _rollback(conn)
        raise
    try:
        conn.commit()
    except psycopg2.Error as exc:
        _rollback(conn)
        raise TaskFailed(dag.name, task.name, f"commit failed: {_pg_message(exc)}") from None


def _rollback(conn: Connection | None) -> None:
    if conn is None or conn.closed:
        return
    try:
        conn.rollback()
    except Exception:
        log.debug("rollback failed", exc_info=True)


def _pg_message(exc: Exception) -> str:
    text = getattr(exc, "pgerror", None) or str(exc) or type(exc).__name__
    first = next((line for line in str(text).splitlines() if line.strip()), str(text))
    return _truncate(redact(f"{type(exc).__name__}: {first.strip()}"))


def _truncate(text: str, limit: int = MAX_REASON_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_outputs_fresh(
    dag: Dag, task: Task, params: Mapping[str, str], connect: Connector
) -> None:
    conn = connect(dag, task, params)
    try:
        with _transaction(dag, task, conn):
            check_outputs(dag, task, conn)
    finally:
        conn.close()


_COLUMNS_SQL = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), t.typname, NOT a.attnotnull
FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped
"""


def check_outputs(dag: Dag, task: Task, conn: Connection) -> None:
    """Check each declared table output on ``conn`` (inside the caller's transaction)."""
    for output in task.outputs:
        _check_table(dag, task, conn, output)


def _check_table(dag: Dag, task: Task, conn: Connection, output: TableOutput) -> None:
    def fail(reason: str) -> TaskFailed:
        return TaskFailed(dag.name, task.name, f"output table {output.name!r}: {reason}")

    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s) IS NOT NULL", (output.name,))
        row = cur.fetchone()
        if row is None or not row[0]:
            raise fail("does not exist")
        cur.execute(_COLUMNS_SQL, (output.name,))
        actual = {
            name: (formatted, typname, nullable) for name, formatted, typname, nullable in cur
        }
    for column in output.columns:
        if column.name not in actual:
            raise fail(f"has no column {column.name!r}")
        formatted, typname, nullable = actual[column.name]
        if column.datatype and not datatype_matches(column.datatype, formatted, typname):
            raise fail(f"column {column.name!r} is {formatted}, not {column.datatype}")
        if column.nullable is not None and column.nullable != nullable:
            expected = "nullable" if column.nullable else "NOT NULL"
            actual_text = "nullable" if nullable else "NOT NULL"
            raise fail(f"column {column.name!r} is {actual_text}, expected {expected}")
    for query in output.validation_queries:
        with conn.cursor() as cur:
            cur.execute(query)
            if cur.description is None:
                raise fail(f"validation query returned no result set: {_short(query)}")
            rows = cur.fetchmany(MAX_REPORTED_ROWS + 1)
        if rows:
            shown = "; ".join(repr(tuple(r)) for r in rows[:MAX_REPORTED_ROWS])
            more = ", and more" if len(rows) > MAX_REPORTED_ROWS else ""
            raise fail(
                f"validation query {_short(query)} returned rows: {_truncate(shown, 400)}{more}"
            )


def _short(query: str) -> str:
    text = " ".join(query.split())
    return repr(text if len(text) <= 80 else text[:77] + "...")


_ALIASES = {
    "int": "integer",
    "int4": "integer",
    "serial": "integer",
    "serial4": "integer",
    "int8": "bigint",
    "bigserial": "bigint",
    "serial8": "bigint",
    "int2": "smallint",
    "smallserial": "smallint",
    "varchar": "character varying",
    "char": "character",
    "bpchar": "character",
    "bool": "boolean",
    "float8": "double precision",
    "double": "double precision",
    "float": "double precision",
    "float4": "real",
    "decimal": "numeric",
    "timestamptz": "timestamp with time zone",
    "timestamp": "timestamp without time zone",
    "timetz": "time with time zone",
    "time": "time without time zone",
}


def _canonical(datatype: str) -> tuple[str, str | None, bool]:
    """(base type, modifier or None, is array) with aliases resolved."""
    text = " ".join(datatype.lower().split())
    array = False
    while text.endswith("[]"):
        array = True
        text = text[:-2].strip()
    if text.startswith("_"):  # pg_type's name for an array type
        array = True
        text = text[1:]
    modifier = None
    if "(" in text and ")" in text:
        start, end = text.index("("), text.rindex(")")
        modifier = text[start + 1 : end].replace(" ", "")
        text = (text[:start] + text[end + 1 :]).strip()
        text = " ".join(text.split())
    return _ALIASES.get(text, text), modifier, array


def datatype_matches(declared: str, formatted: str, typname: str) -> bool:
    """Whether a declared datatype names the column's type, loosely.

    Case and common aliases are ignored (int = integer = int4, varchar = character
    varying, timestamptz = timestamp with time zone); a declared modifier such as
    ``(10)`` must match, an omitted one matches any.
    """
    want_base, want_mod, want_array = _canonical(declared)
    for candidate in (formatted, typname):
        base, mod, array = _canonical(candidate)
        if base == want_base and array == want_array and (want_mod is None or want_mod == mod):
            return True
    return False
