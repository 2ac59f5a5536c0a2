"""Runner behaviour on a real PostgreSQL: regression tests for bugs found in review."""

from __future__ import annotations

from pathlib import Path

from workflows_tick import dags
from workflows_tick.errors import DagLoadError
from workflows_tick.runner import run_tasks


def test_a_long_timeout_that_validates_also_runs(tmp_path: Path, database_url: str) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "workflow.yaml").write_text("description: d\n")
    (folder / "a.sql").write_text(
        "/*\nparameters: [DATABASE_URL]\ntimeout: 2600000\n*/\nSELECT 1;\n"
    )
    try:
        dag = dags.register_directory(tmp_path).get("d")
    except DagLoadError:
        return  # refusing the value when loading is a fix too
    run_tasks(dag, list(dag.tasks.values()), {"DATABASE_URL": database_url})
