"""The real scheduler over the broken-DAG corpus: good DAGs run, each broken one is one line.

The corpus (``tests/broken_dags/project``, plus the cases git cannot hold, made here)
is read by ``workflows <config> schedule worker --until-idle`` with every good DAG
triggered. The loader's own messages are checked in ``tests/unit/test_broken_corpus.py``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy

from tests.reliability.helpers import query, workflows
from tests.support import add_runtime_broken_dags
from workflows_tick import database
from workflows_tick.dags import register_directory
from workflows_tick.model import Dag
from workflows_tick.scheduler import trigger_dag

CORPUS = Path(__file__).parents[1] / "broken_dags" / "project"
NOT_LOADED = re.compile(r"DAG (\S+) is not loaded: ")


def _corpus(root: Path) -> tuple[str, list[str], list[str]]:
    """Copy the corpus under ``root`` with the runtime-only cases; (config, good, broken)."""
    project = root / "project"
    shutil.copytree(CORPUS, project, symlinks=True)

    add_runtime_broken_dags(project)
    registry = register_directory(project)
    loaded = registry.load_all()
    good = sorted(name for name, dag in loaded.items() if isinstance(dag, Dag))
    broken = sorted(name for name, dag in loaded.items() if not isinstance(dag, Dag))
    return str(project / "config.py"), good, broken


def test_scheduler_runs_the_good_dags_and_logs_one_line_per_broken_one(
    tmp_path: Path, subprocess_env: dict[str, str], database_url: str
) -> None:
    config, good, broken = _corpus(tmp_path)
    assert len(broken) >= 50 and set(good) >= {"good_chain", "good_other", "mutual_a", "mutual_b"}
    mutual = ("mutual_a", "mutual_b")
    for name in good:
        if name not in mutual:
            out = workflows(config, "trigger", name, env=subprocess_env)
            assert out.returncode == 0, out.stderr
    # Each of these reads a task of the other, which only a run of the other anchored at
    # or before its own may provide: triggered at the same instant, each finds the other's.
    engine = sqlalchemy.create_engine(
        database.normalize_url(database_url), poolclass=sqlalchemy.NullPool
    )
    try:
        now = datetime.now(UTC)
        for name in mutual:
            trigger_dag(name, creator="test", engine=engine, clock=lambda: now)
    finally:
        engine.dispose()
    sched = workflows(
        "-v",
        config,
        "schedule",
        "worker",
        "--until-idle",
        "--interval",
        "0.2",
        "--concurrency",
        "2",
        env=subprocess_env,
        timeout=100,
    )
    assert sched.returncode == 0, sched.stderr[-3000:]
    assert "Traceback" not in sched.stderr
    assert query(database_url, "SELECT dag_name, status FROM dag_run ORDER BY dag_name") == [
        (name, "succeeded") for name in good
    ]
    assert query(database_url, "SELECT DISTINCT status FROM task_run") == [("succeeded",)]
    lines = [line for line in sched.stderr.splitlines() if NOT_LOADED.search(line)]
    named = [NOT_LOADED.search(line).group(1) for line in lines]  # type: ignore[union-attr]
    assert sorted(named) == broken  # each broken DAG exactly once
    assert all(" ERROR " in line and "\n" not in line for line in lines)


def test_until_idle_returns_when_a_broken_dag_has_a_running_run(
    tmp_path: Path, subprocess_env: dict[str, str], database_url: str
) -> None:
    config, _, _ = _corpus(tmp_path)
    engine = sqlalchemy.create_engine(
        database.normalize_url(database_url), poolclass=sqlalchemy.NullPool
    )
    try:
        # As if 'cycle' was triggered (or came due) before an edit broke it.
        trigger_dag("cycle", creator="test", engine=engine)
        trigger_dag("good_other", creator="test", engine=engine)
    finally:
        engine.dispose()
    try:
        sched = workflows(
            config,
            "schedule",
            "worker",
            "--until-idle",
            "--interval",
            "0.2",
            env=subprocess_env,
            timeout=60,  # not a speed limit: "never idle" would run until killed
        )
        returned = sched.returncode == 0
    except subprocess.TimeoutExpired:
        returned = False
    # The good DAG was not held up by the broken one...
    assert query(database_url, "SELECT status FROM dag_run WHERE dag_name = 'good_other'") == [
        ("succeeded",)
    ]
    # ...but the scheduler never considered itself idle.
    assert returned
