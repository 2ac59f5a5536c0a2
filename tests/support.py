"""Helpers shared by the test suites: DAG projects on disk, the real command and its
processes. The fakes (clock, instant manager) live in :mod:`workflows_tick.testing`."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import psycopg2
from sqlalchemy import Engine, text

from workflows_tick.dags import DagRegistry, register_directory
from workflows_tick.loader import MAX_FILE_BYTES
from workflows_tick.model import Dag


def write_dag(root: Path, files: Mapping[str, str], workflow: str = "description: d\n") -> Dag:
    """Write one DAG named ``d`` (``workflow.yaml`` and ``files``) under ``root`` and load it."""
    return write_project(root, {"d": {"workflow.yaml": workflow, **files}}).get("d")


def write_project(root: Path, dags: Mapping[str, Mapping[str, str]]) -> DagRegistry:
    """Write DAG folders (``{dag: {file: text}}``) under ``root`` and register them."""
    for dag, files in dags.items():
        folder = root / dag
        folder.mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            (folder / name).write_text(textwrap.dedent(content))
    (root / "config.py").write_text(
        "import os\nfrom workflows_tick import dags\n"
        "DAGS = dags.register_directory(os.path.dirname(__file__))\n"
    )
    return register_directory(root)


def add_runtime_broken_dags(root: Path) -> None:
    """Add the broken DAGs a repository cannot hold: a file over the size limit, a
    symlink loop, a dangling symlink and a FIFO (a reader that opened it would hang)."""

    def folder(name: str) -> Path:
        path = root / name
        path.mkdir()
        (path / "workflow.yaml").write_text(f"description: {name}\n")
        return path

    with (folder("huge_file") / "big.sql").open("wb") as handle:
        handle.write(b"/*\nparameters: [DATABASE_URL]\n*/\n")
        handle.truncate(MAX_FILE_BYTES + 1)  # sparse: cheap to make
    (folder("symlink_loop") / "loop.sql").symlink_to("loop.sql")
    (folder("dangling_symlink") / "gone.yaml").symlink_to("does-not-exist.yaml")
    os.mkfifo(folder("fifo") / "pipe.sh")


# --- the real command, its database and its processes -----------------------------------

LEDGER_TABLE = "CREATE TABLE IF NOT EXISTS ledger (task_run_id bigint, attempt int, pid int)"

LEDGER_TASK = '''"""
parameters: [DATABASE_URL, WORKFLOWS_TASK_RUN_ID, WORKFLOWS_ATTEMPT]
{extra}
"""
import os
import time


def run(context):
    {body}
    with context["conn"].cursor() as cur:
        cur.execute(
            "INSERT INTO ledger (task_run_id, attempt, pid) VALUES (%s, %s, %s)",
            (context["WORKFLOWS_TASK_RUN_ID"], context["WORKFLOWS_ATTEMPT"], os.getpid()),
        )
'''
"""A Python task that appends one ledger row per attempt: ``.format(body=..., extra=...)``."""


def workflows(
    *args: str | Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run the real ``workflows`` command to completion.

    ``env`` is its whole environment (default: this process's, which the test
    harness keeps free of database URLs).
    """
    return subprocess.run(
        [sys.executable, "-m", "workflows_tick", *map(str, args)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_scheduler(config: str, env: Mapping[str, str], *extra: str) -> subprocess.Popen[str]:
    """Start ``workflows CONFIG schedule worker *extra`` (stderr piped, to read at exit)."""
    return subprocess.Popen(
        [sys.executable, "-m", "workflows_tick", config, "schedule", "worker", *extra],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def rows(engine: Engine, sql: str) -> list[tuple[Any, ...]]:
    """The rows of one statement on ``engine``, as plain tuples."""
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text(sql))]


def query(url: str, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
    """Run one statement on its own connection, committed; its rows (or [])."""
    conn = psycopg2.connect(url, connect_timeout=5)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def wait_for(
    check: Callable[[], bool], timeout: float = 30, what: str = "condition", step: float = 0.05
) -> float:
    """Seconds until ``check()`` held; TimeoutError after ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(step)
    raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")


def _stat(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, state, start time in clock ticks) of ``pid``, or None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), fields[0], int(fields[19])


def descendants(root: int) -> dict[int, int]:
    """Every live descendant of ``root``: pid -> start time (to tell a reused pid apart)."""
    children: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (info := _stat(int(entry.name))) and info[1] != "Z":
            children.setdefault(info[0], []).append(int(entry.name))
            starts[int(entry.name)] = info[2]
    found: dict[int, int] = {}
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found[child] = starts[child]
                todo.append(child)
    return found


def still_alive(processes: dict[int, int]) -> list[int]:
    """The pids of ``processes`` (pid -> start time) still running; zombies count as gone."""
    return [
        pid
        for pid, start in processes.items()
        if (info := _stat(pid)) is not None and info[1] != "Z" and info[2] == start
    ]


def processes_matching(text: str) -> list[int]:
    """Pids of live processes whose command line contains ``text``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        info = _stat(int(proc.name))
        if info is not None and info[1] != "Z" and text in cmdline:
            found.append(int(proc.name))
    return found


# --- the web page ---------------------------------------------------------------------------


def start_ui(
    config: str, env: dict[str, str], *args: str, timeout: float = 60
) -> tuple[subprocess.Popen[str], str]:
    """Start the real ``workflows CONFIG ui --port 0 ...``; the process and its base URL.

    Its log (one line per request) goes to a temporary file, never to a pipe that
    could fill up; :func:`stop_ui` returns it.
    """
    log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed by stop_ui
    proc = subprocess.Popen(
        [sys.executable, "-m", "workflows_tick", config, "ui", "--port", "0", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    proc.log = log  # type: ignore[attr-defined]
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "serving http://127.0.0.1:PORT/ (...)", or EOF on failure
    if not line.startswith("serving "):
        stop_ui(proc, timeout)
        log.seek(0)
        raise AssertionError(f"ui did not start: {line!r} {log.read()[-2000:]}")
    return proc, line.split()[1].rstrip("/")


def stop_ui(proc: subprocess.Popen[str], timeout: float = 30) -> str:
    """SIGTERM the ``ui`` process, wait for it; its log."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
    log = proc.log  # type: ignore[attr-defined]
    log.seek(0)
    text = str(log.read())
    log.close()
    return text
