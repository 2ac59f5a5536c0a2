"""Reading one DAG folder into a :class:`~workflows_tick.model.Dag`.

Nothing here imports or runs user code: ``.py`` tasks are parsed with :mod:`ast`.
Every problem becomes one :class:`~workflows_tick.errors.DagLoadError` naming the
file, the key or line, and what is wrong; no other exception leaves
:func:`load_dag`. Inputs from other DAGs (``other_dag:task``) are checked by the
registry (:mod:`workflows_tick.dags`) once it has read the other folder. See
``docs/dag-format.md`` for the format.
"""

from __future__ import annotations

import enum
import math
import os
import re
import reprlib
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import yaml

from workflows_tick.errors import DagLoadError
from workflows_tick.model import (
    DEFAULT_RETRIES,
    DEFAULT_RETRY_DELAY,
    DEFAULT_TIMEZONE,
    Dag,
    DstGap,
    DstRepeat,
    ExternalInput,
    OutputColumn,
    Overlap,
    TableOutput,
    Task,
    TaskType,
    topological_order,
)
from workflows_tick.taskfiles import TASK_EXTENSIONS, HeaderError, extract_header

WORKFLOW_FILE = "workflow.yaml"
"""The file that makes a folder a DAG and holds its DAG-level keys."""

MAX_SECONDS = 365 * 24 * 3600
"""The longest ``timeout`` or ``retry_delay`` accepted."""

MAX_FILE_BYTES = 10 * 1024 * 1024
"""Task files and ``workflow.yaml`` larger than this are refused."""

DATABASE_URL = "DATABASE_URL"

WORKFLOW_KEYS = (
    "description",
    "schedule",
    "timezone",
    "worker_config",
    "retries",
    "retry_delay",
    "overlap",
    "dst_gap",
    "dst_repeat",
    "input_timeout",
)
TASK_KEYS = (
    "type",
    "description",
    "inputs",
    "parameters",
    "outputs",
    "worker_config",
    "retries",
    "retry_delay",
    "timeout",
    "input_timeout",
    "sql",
)
OUTPUT_KEYS = ("type", "name", "columns", "validation_queries")
COLUMN_KEYS = ("name", "datatype", "nullable")

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_Loader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_dag(folder: Path, name: str) -> Dag:
    """Load the DAG in ``folder``; raise DagLoadError with one line on any problem."""
    try:
        return _load(folder, name)
    except DagLoadError:
        raise
    except RecursionError:
        raise DagLoadError(str(folder), "nesting too deep to load") from None
    except Exception as exc:  # a loader bug must not take the scheduler down
        raise DagLoadError(
            str(folder), f"unexpected error while loading: {type(exc).__name__}: {exc}"
        ) from None


def _load(folder: Path, name: str) -> Dag:
    workflow_path = folder / WORKFLOW_FILE
    fields = workflow_from_text(workflow_path, read_text(workflow_path))
    found, skipped = _load_tasks(folder)
    tasks = _check_inputs(name, {t.name: t for t in found})
    return Dag(name=name, path=folder, tasks=tasks, skipped=tuple(skipped), **fields)


def load_task_alone(folder: Path, name: str, task_name: str) -> Dag:
    """DAG ``name`` in ``folder`` holding only its task ``task_name``, read from
    ``workflow.yaml`` and that one file: what an attempt needs to run the task.

    The other files, the inputs and cross-DAG inputs are not read nor checked (the
    scheduler that started the attempt loaded the whole DAG). DagLoadError on any
    problem with the two files; a caller that wants the whole DAG's message then
    uses :func:`load_dag`.
    """
    if not is_task_name(task_name) or task_name.startswith(PRIVATE_PREFIX) or "/" in task_name:
        _fail(folder / task_name, "is not a task file name")
    workflow_path = folder / WORKFLOW_FILE
    fields = workflow_from_text(workflow_path, read_text(workflow_path))
    task = load_task(folder / task_name)
    return Dag(name=name, path=folder, tasks={task.name: task}, **fields)


def workflow_from_text(path: Path, text: str) -> dict[str, Any]:
    """The DAG-level fields of a ``workflow.yaml`` (keyword arguments of Dag)."""
    spec = parse_yaml(text, str(path), first_line=1)
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        _fail(path, f"expected a YAML mapping of keys, got {_kind(spec)}")
    _unknown_keys(path, spec, WORKFLOW_KEYS)
    if "description" not in spec:
        _fail(path, "is required (a short text saying what the DAG does)", "key 'description'")
    retries = _retries(path, spec)
    retry_delay = _retry_delay(path, spec)
    return {
        "description": _string(path, spec, "description", required=True),
        "schedule": _schedule(path, spec.get("schedule")),
        "timezone": _timezone(path, spec.get("timezone", DEFAULT_TIMEZONE)),
        "retries": DEFAULT_RETRIES if retries is None else retries,
        "retry_delay": DEFAULT_RETRY_DELAY if retry_delay is None else retry_delay,
        "worker_config": _mapping(path, spec, "worker_config"),
        "overlap": _choice(path, spec, "overlap", Overlap) or Overlap.QUEUE,
        "dst_gap": _choice(path, spec, "dst_gap", DstGap),
        "dst_repeat": _choice(path, spec, "dst_repeat", DstRepeat),
        "input_timeout": _number(path, spec, "input_timeout", minimum=0.0, strict=True),
    }


# --- files -------------------------------------------------------------------------


def read_text(path: Path) -> str:
    """The file's text, refusing what is not a readable, regular, UTF-8 text file."""
    try:
        st = path.stat()
    except OSError as exc:
        if path.is_symlink():
            _fail(path, f"is a symlink that cannot be followed ({_reason(exc)})")
        _fail(path, f"cannot be read: {_reason(exc)}")
    if stat.S_ISDIR(st.st_mode):
        _fail(path, "is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        _fail(path, "is not a regular file (a FIFO, socket or device?)")
    if st.st_size > MAX_FILE_BYTES:
        _fail(path, f"is too large ({st.st_size} bytes; the limit is {MAX_FILE_BYTES})")
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        _fail(path, f"cannot be read: {_reason(exc)}")
    if len(data) > MAX_FILE_BYTES:
        _fail(path, f"is too large (over {MAX_FILE_BYTES} bytes)")
    if b"\x00" in data:
        line = data.count(b"\n", 0, data.index(b"\x00")) + 1
        _fail(path, "holds NUL bytes: binary data, not a text file", f"line {line}")
    try:
        # utf-8-sig: a byte order mark (as some editors write) is not part of the text.
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        _fail(path, f"is not valid UTF-8 (byte 0x{data[exc.start]:02x})", f"line {line}")


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def parse_yaml(text: str, path: str, first_line: int) -> Any:
    """``yaml.safe_load`` of ``text``; errors name the file line (header offset added)."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(str(exc.problem or exc.context or "invalid YAML").split())
        where = f"line {first_line + mark.line}" if mark is not None else None
        context = exc.context_mark
        if exc.problem and exc.context and context and mark and context.line != mark.line:
            opened = " ".join(exc.context.split())
            problem += f" ({opened} started on line {first_line + context.line})"
        raise DagLoadError(path, f"YAML syntax error: {problem}", where) from None
    except yaml.YAMLError as exc:
        raise DagLoadError(path, f"YAML error: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise DagLoadError(path, "YAML nested too deeply") from None
    except (ValueError, TypeError, OverflowError) as exc:
        raise DagLoadError(path, f"YAML error: {type(exc).__name__}: {exc}") from None


PRIVATE_PREFIX = "_"
"""Files named ``_x`` are helpers (``_helpers.py``), unless their header declares a type."""


def _task_files(folder: Path) -> list[os.DirEntry[str]]:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        _fail(folder, f"cannot list the DAG folder: {_reason(exc)}")
    return [entry for entry in entries if is_task_name(entry.name)]


def is_task_name(name: str) -> bool:
    """Whether a file of this name in a DAG folder may be a task (a ``_`` file is
    one only when its header declares a type)."""
    if name.startswith(".") or name in (WORKFLOW_FILE, "__init__.py"):
        return False
    return os.path.splitext(name)[1] in TASK_EXTENSIONS  # noqa: PTH122 - str in, str out


def is_task_file(path: Path) -> bool:
    """Whether ``path`` may be a task file of the DAG folder it sits in."""
    return is_task_name(path.name) and path.is_file()


def _load_tasks(folder: Path) -> tuple[list[Task], list[str]]:
    """The folder's tasks, and the ``_`` files skipped as helpers (with the reason)."""
    tasks = []
    skipped = []
    seen: dict[str, str] = {}
    for entry in _task_files(folder):
        path = folder / entry.name
        if entry.name.startswith(PRIVATE_PREFIX) and not _declares_type(path):
            skipped.append(
                f"{entry.name}: not a task: the name starts with '_' and the header "
                "declares no 'type' (a helper file)"
            )
            continue
        folded = entry.name.casefold()
        if folded in seen:
            _fail(
                path,
                f"duplicate task name: {seen[folded]!r} and {entry.name!r} differ only in case",
            )
        seen[folded] = entry.name
        tasks.append(load_task(path))
    return tasks, skipped


def _declares_type(path: Path) -> bool:
    """Whether the file's header is a YAML mapping with a ``type`` key.

    Every dag-workflows task declares its type, so its ``_`` files stay tasks here.
    """
    try:
        header = extract_header(path.suffix, read_text(path), str(path))
        spec = parse_yaml(header.text, str(path), header.first_line) if header.text else None
    except (DagLoadError, HeaderError):
        return False
    return isinstance(spec, dict) and "type" in spec


def load_task(path: Path) -> Task:
    """One task file (inputs are not checked against other tasks here)."""
    return task_from_source(path, read_text(path))


def task_from_source(path: Path, source: str) -> Task:
    """The task a file named ``path`` holding ``source`` defines."""
    extension = path.suffix
    implied = TASK_EXTENSIONS[extension]
    try:
        header = extract_header(extension, source, str(path))
    except HeaderError as exc:
        _fail(path, exc.message, f"line {exc.line}" if exc.line else None)
    spec: Any = {}
    if header.text is not None:
        spec = parse_yaml(header.text, str(path), header.first_line)
        if spec is None:
            spec = {}
        if not isinstance(spec, dict):
            what = {".py": "docstring", ".yaml": "file", ".yml": "file"}.get(extension, "header")
            _fail(
                path,
                f"the {what} must be a YAML mapping of task keys (type, inputs, ...), "
                f"got {_kind(spec)}",
                f"line {header.first_line}",
            )
    return task_from_spec(path, spec, implied, header.body, header.has_run, header.async_run)


def task_from_spec(
    path: Path,
    spec: Mapping[Any, Any],
    implied: TaskType,
    body: str = "",
    has_run: bool = True,
    async_run: bool = False,
) -> Task:
    """Check a task's spec mapping and build the Task."""
    _unknown_keys(path, spec, TASK_KEYS)
    task_type = _task_type(path, spec, implied)
    parameters = _names(path, spec, "parameters")
    for param in parameters:
        if not _ENV_NAME.match(param):
            _fail(path, f"{param!r} is not an environment variable name", "key 'parameters'")
    inputs: list[str] = []
    external: list[ExternalInput] = []
    for item in _names(path, spec, "inputs"):
        if ":" in item:
            dag, _, task = item.partition(":")
            if not dag or not task:
                _fail(path, f"{item!r} is not a task name nor dag:task", "key 'inputs'")
            ref = ExternalInput(dag, task)
            if ref not in external:
                external.append(ref)
        elif item == path.name:
            _fail(path, f"the task lists itself as an input ({item!r})", "key 'inputs'")
        elif item not in inputs:
            inputs.append(item)
    outputs = _outputs(path, spec.get("outputs"))
    if "sql" in spec:
        if task_type is not TaskType.SQL or implied is TaskType.SQL:
            _fail(path, "only a .yaml task of type 'sql' takes its SQL from this key", "key 'sql'")
        if not isinstance(spec["sql"], str):
            _fail(path, f"expected the SQL as a string, got {_kind(spec['sql'])}", "key 'sql'")
        body = spec["sql"]
    # As in dag-workflows, SQL runs against DATABASE_URL whether the header lists it
    # or not; so do output checks.
    if (task_type is TaskType.SQL or outputs) and DATABASE_URL not in parameters:
        parameters.insert(0, DATABASE_URL)
    if task_type is TaskType.SQL and not body.strip():
        if implied is TaskType.SQL:
            _fail(path, "the sql task has no SQL after its header")
        _fail(path, "a .yaml task of type 'sql' needs its SQL in the key 'sql'", "key 'sql'")
    if task_type is TaskType.PYTHON and not has_run:
        _fail(path, "defines no top-level run(context) function")
    if task_type is TaskType.PYTHON and async_run:
        _fail(path, "run must be a plain function, not async def")
    timeout = _number(path, spec, "timeout", minimum=0.0, strict=True)
    return Task(
        name=path.name,
        type=task_type,
        path=path,
        description=_string(path, spec, "description"),
        inputs=tuple(inputs),
        external_inputs=tuple(external),
        parameters=tuple(dict.fromkeys(parameters)),
        outputs=outputs,
        worker_config=_mapping(path, spec, "worker_config"),
        retries=_retries(path, spec),
        retry_delay=_retry_delay(path, spec),
        timeout=timeout,
        input_timeout=_number(path, spec, "input_timeout", minimum=0.0, strict=True),
        body=body,
    )


# --- inputs and order ---------------------------------------------------------------


def _check_inputs(name: str, tasks: dict[str, Task]) -> dict[str, Task]:
    """Check the inputs within the DAG; the tasks in topological order."""
    for task in tasks.values():
        unknown = [i for i in task.inputs if i not in tasks]
        if unknown:
            _fail(
                task.path,
                f"unknown input(s) {', '.join(map(repr, unknown))}; "
                f"tasks of DAG {name!r}: {', '.join(sorted(tasks)) or 'none'}",
                "key 'inputs'",
            )
    order = topological_order({t.name: t.inputs for t in tasks.values()})
    if order and isinstance(order[0], list):
        cycle: list[str] = order[0]
        _fail(tasks[cycle[0]].path, f"inputs form a cycle: {' -> '.join(cycle)}", "key 'inputs'")
    return {str(n): tasks[str(n)] for n in order}


# --- values -------------------------------------------------------------------------


def _fail(path: Path | str, problem: str, where: str | None = None) -> NoReturn:
    raise DagLoadError(str(path), problem, where)


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict = 2, 4, 4
_SHORT.maxstring = _SHORT.maxother = 30


def _kind(value: object) -> str:
    if value is None:
        return "nothing (null)"
    # A bounded repr: a YAML alias bomb must not be rendered whole to be cut to 40.
    text = _SHORT.repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    names |= {list: "a list", dict: "a mapping"}
    return f"{names.get(type(value), type(value).__name__)} {text}"


def _unknown_keys(path: Path, spec: Mapping[Any, Any], allowed: tuple[str, ...]) -> None:
    for key in spec:
        if key not in allowed:
            _fail(
                path,
                f"unknown key {str(key)[:60]!r}; allowed keys: {', '.join(allowed)}",
                f"key {str(key)[:60]!r}",
            )


def _string(path: Path, spec: Mapping[Any, Any], key: str, required: bool = False) -> str:
    value = spec.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        _fail(path, f"expected a non-empty string, got {_kind(value)}", f"key {key!r}")
    return value


def _mapping(path: Path, spec: Mapping[Any, Any], key: str) -> dict[str, Any]:
    value = spec.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        _fail(path, f"expected a mapping, got {_kind(value)}", f"key {key!r}")
    for name in value:
        if not isinstance(name, str):
            _fail(path, f"keys must be strings, got {_kind(name)}", f"key {key!r}")
    return dict(value)


def _names(path: Path, spec: Mapping[Any, Any], key: str) -> list[str]:
    value = spec.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        _fail(path, f"expected a list of strings, got {_kind(value)}", f"key {key!r}")
    for item in value:
        if not isinstance(item, str) or not item:
            _fail(path, f"expected a list of strings, found {_kind(item)}", f"key {key!r}")
    return list(value)


def _number(
    path: Path, spec: Mapping[Any, Any], key: str, minimum: float, strict: bool = False
) -> float | None:
    value = spec.get(key)
    if value is None:
        return None
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (value <= minimum if strict else value < minimum):
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        _fail(path, f"expected a number of seconds {bound}, got {_kind(value)}", f"key {key!r}")
    if value > MAX_SECONDS:
        _fail(
            path, f"{value:g} seconds is over a year (the limit is {MAX_SECONDS})", f"key {key!r}"
        )
    return float(value)


_Choice = TypeVar("_Choice", bound=enum.StrEnum)


def _choice(
    path: Path, spec: Mapping[Any, Any], key: str, choices: type[_Choice]
) -> _Choice | None:
    """The value of ``key``, one of the strings of ``choices``; None when absent."""
    value = spec.get(key)
    if value is None:
        return None
    allowed = ", ".join(c.value for c in choices)
    if not isinstance(value, str):
        _fail(path, f"expected one of {allowed}, got {_kind(value)}", f"key {key!r}")
    try:
        return choices(value)
    except ValueError:
        _fail(path, f"unknown value {value[:40]!r}; expected one of {allowed}", f"key {key!r}")


def _retries(path: Path, spec: Mapping[Any, Any]) -> int | None:
    value = spec.get("retries")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        _fail(path, f"expected an integer >= 0, got {_kind(value)}", "key 'retries'")
    return value


def _retry_delay(path: Path, spec: Mapping[Any, Any]) -> float | None:
    return _number(path, spec, "retry_delay", minimum=0.0)


UNSUPPORTED_TYPES = {
    "big_query_sql": "BigQuery tasks are not supported",
}


def _task_type(path: Path, spec: Mapping[Any, Any], implied: TaskType) -> TaskType:
    value = spec.get("type")
    if value is None:
        return implied
    if not isinstance(value, str):
        _fail(path, f"expected a string, got {_kind(value)}", "key 'type'")
    if value in UNSUPPORTED_TYPES:
        _fail(path, f"{UNSUPPORTED_TYPES[value]} (type {value!r})", "key 'type'")
    try:
        declared = TaskType(value)
    except ValueError:
        known = ", ".join(t.value for t in TaskType)
        _fail(path, f"unknown task type {value[:40]!r}; known types: {known}", "key 'type'")
    # A .yaml file may hold a SQL task, its SQL in the key 'sql' (as in dag-workflows).
    inline_sql = implied is TaskType.NO_OP and declared is TaskType.SQL
    if declared is not implied and not inline_sql:
        _fail(
            path,
            f"type {declared.value!r} contradicts the file extension {path.suffix!r} "
            f"(which means {implied.value!r})",
            "key 'type'",
        )
    return declared


def _timezone(path: Path, value: Any) -> str:
    if not isinstance(value, str) or not value:
        _fail(path, f"expected an IANA time zone name, got {_kind(value)}", "key 'timezone'")
    from zoneinfo import ZoneInfo

    try:
        ZoneInfo(value)
    except Exception:  # ZoneInfoNotFoundError, ValueError for malformed keys, ...
        _fail(
            path,
            f"unknown time zone {value[:60]!r} (expected an IANA name like Europe/Paris)",
            "key 'timezone'",
        )
    return value


def _schedule(path: Path, value: Any) -> str | None:
    if value is None:
        return None
    where = "key 'schedule'"
    if not isinstance(value, str):
        _fail(path, f"expected a cron expression string, got {_kind(value)}", where)
    problem = cron_problem(value)
    if problem:
        _fail(path, problem, where)
    from workflows_tick.cron import expand_nickname

    return expand_nickname(value) or value.strip()


def cron_problem(expr: str) -> str | None:
    """Why ``expr`` is not a usable 5-field cron expression or nickname, or None."""
    from workflows_tick.cron import NICKNAMES

    text = expr.strip()
    if text.startswith("@"):
        if text.lower() in NICKNAMES:
            return None
        known = ", ".join(NICKNAMES)
        return f"{text[:40]!r} is not a cron nickname; use 5 fields (e.g. '0 0 * * *') or one of {known}"
    fields = text.split()
    if len(fields) != 5:
        return (
            f"{text[:60]!r} has {len(fields)} fields; expected 5 "
            "(minute hour day-of-month month day-of-week)"
        )
    from workflows_tick.cron import check_schedule

    return check_schedule(text)


# --- outputs ------------------------------------------------------------------------


UNSUPPORTED_OUTPUTS = {
    "big_query_table": "BigQuery table outputs are not supported",
    "django_table": "Django table outputs are not supported: declare a 'table' with its columns",
}


def _outputs(path: Path, value: Any) -> tuple[TableOutput, ...]:
    if value is None:
        return ()
    where = "key 'outputs'"
    if not isinstance(value, list):
        _fail(path, f"expected a list of outputs, got {_kind(value)}", where)
    outputs = []
    for index, item in enumerate(value):
        at = f"key 'outputs[{index}]'"
        if not isinstance(item, dict):
            _fail(path, f"expected a mapping (type, name, columns, ...), got {_kind(item)}", at)
        for key in item:
            if key not in OUTPUT_KEYS:
                _fail(path, f"unknown key {str(key)[:60]!r}; allowed: {', '.join(OUTPUT_KEYS)}", at)
        if item.get("type") in UNSUPPORTED_OUTPUTS:
            _fail(path, f"{UNSUPPORTED_OUTPUTS[item['type']]} (type {item['type']!r})", at)
        if item.get("type") != "table":
            _fail(path, f"'type' must be 'table', got {_kind(item.get('type'))}", at)
        name = item.get("name")
        if not isinstance(name, str) or not name.strip():
            _fail(path, f"'name' must be a table name, got {_kind(name)}", at)
        columns = _columns(path, item.get("columns"), at)
        queries = item.get("validation_queries")
        if queries is None:
            queries = []
        if not isinstance(queries, list) or not all(
            isinstance(q, str) and q.strip() for q in queries
        ):
            _fail(
                path,
                f"'validation_queries' must be a list of SQL strings, got {_kind(queries)}",
                at,
            )
        outputs.append(TableOutput(name.strip(), columns, tuple(queries)))
    return tuple(outputs)


def _columns(path: Path, value: Any, at: str) -> tuple[OutputColumn, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        _fail(path, f"'columns' must be a list, got {_kind(value)}", at)
    columns = []
    for item in value:
        if not isinstance(item, dict):
            _fail(
                path,
                f"each column must be a mapping (name, datatype, nullable), got {_kind(item)}",
                at,
            )
        for key in item:
            if key not in COLUMN_KEYS:
                _fail(
                    path,
                    f"unknown column key {str(key)[:60]!r}; allowed: {', '.join(COLUMN_KEYS)}",
                    at,
                )
        name = item.get("name")
        datatype = item.get("datatype")
        nullable = item.get("nullable")
        if not isinstance(name, str) or not name:
            _fail(path, f"a column's 'name' must be a string, got {_kind(name)}", at)
        if datatype is not None and (not isinstance(datatype, str) or not datatype.strip()):
            _fail(path, f"column {name!r}: 'datatype' must be a string, got {_kind(datatype)}", at)
        if nullable is not None and not isinstance(nullable, bool):
            _fail(
                path,
                f"column {name!r}: 'nullable' must be true or false, got {_kind(nullable)}",
                at,
            )
        columns.append(OutputColumn(name, datatype.strip() if datatype else None, nullable))
    return tuple(columns)
