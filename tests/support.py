"""Helpers shared by the test suites. Those the benchmarks need too (DAG projects on
disk, the real command and its processes) and the fakes live in :mod:`workflows_tick.testing`."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from workflows_tick.loader import MAX_FILE_BYTES
from workflows_tick.model import Dag
from workflows_tick.testing import (
    LEDGER_TABLE,
    LEDGER_TASK,
    descendants,
    processes_matching,
    query,
    still_alive,
    wait_for,
    workflows,
    write_project,
)
from workflows_tick.tick import Ticker

__all__ = [
    "LEDGER_TABLE",
    "LEDGER_TASK",
    "add_runtime_broken_dags",
    "descendants",
    "processes_matching",
    "query",
    "rows",
    "start_scheduler",
    "start_ui",
    "still_alive",
    "stop_ui",
    "wait_for",
    "workflows",
    "write_dag",
    "write_project",
]


def write_dag(root: Path, files: Mapping[str, str], workflow: str = "description: d\n") -> Dag:
    """Write one DAG named ``d`` (``workflow.yaml`` and ``files``) under ``root`` and load it."""
    return write_project(root, {"d": {"workflow.yaml": workflow, **files}}).get("d")


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


def passes_at_once(tickers: Iterable[Ticker]) -> None:
    """One pass of each scheduler, all released at the same instant (threads behind a
    barrier), as schedulers sharing a database do; any error fails the caller."""
    tickers = list(tickers)
    barrier = threading.Barrier(len(tickers))
    errors: list[BaseException] = []

    def go(tk: Ticker) -> None:
        try:
            barrier.wait()
            tk.run_pass()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(tk,)) for tk in tickers]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []


def rows(engine: Engine, sql: str) -> list[tuple[Any, ...]]:
    """The rows of one statement on ``engine``, as plain tuples."""
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text(sql))]


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
