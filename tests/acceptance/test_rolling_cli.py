"""A rolling deploy with the real command: two ``schedule worker`` processes loading
two versions of the DAG folder on one database (docs/scheduler.md, "Rolling deploys")."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from tests.support import query, start_scheduler, wait_for, workflows, write_project

SHARED = {"workflow.yaml": "description: in both versions\n", "a.yaml": "type: no_op\n"}
CHANGED = {**SHARED, "b.yaml": "type: no_op\ninputs: [a.yaml]\n"}  # a task added
ADDED = {
    "workflow.yaml": "description: only in the new version\n",
    # Long enough for the old scheduler to meet the run many times while it runs.
    "slow.sh": "sleep 1.5\n",
    "after.yaml": "type: no_op\ninputs: [slow.sh]\n",
}


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return err


def test_a_dag_only_the_new_version_has_succeeds_beside_a_scheduler_of_the_old_version(
    tmp_path: Path, subprocess_env: dict[str, str], database_url: str
) -> None:
    write_project(tmp_path / "old", {"shared": SHARED, "changed": SHARED})
    write_project(tmp_path / "new", {"shared": SHARED, "changed": CHANGED, "added": ADDED})
    old_config, new_config = (
        str(tmp_path / "old" / "config.py"),
        str(tmp_path / "new" / "config.py"),
    )
    fast = ("--interval", "0.2", "--reload-interval", "0.2")
    old = start_scheduler(old_config, subprocess_env, *fast)
    new = start_scheduler(new_config, subprocess_env, *fast)
    try:
        wait_for(
            lambda: (
                query(
                    database_url,
                    "SELECT count(*) FILTER (WHERE fingerprints ? 'added'), count(*) "
                    "FROM scheduler_heartbeat WHERE stopped_at IS NULL",
                )
                == [(1, 2)]
            ),
            what="both schedulers' first pass",
        )
        trig = workflows(new_config, "trigger", "added", env=subprocess_env)
        assert trig.returncode == 0, trig.stderr
        run_id = int(trig.stdout)
        wait_for(
            lambda: (
                query(database_url, f"SELECT status FROM dag_run WHERE id = {run_id}")
                != [("running",)]
            ),
            timeout=60,
            what="the run to end",
        )
        status = workflows(new_config, "status", env=subprocess_env)
    finally:
        old_err = _stop(old)
        new_err = _stop(new)
    assert query(database_url, f"SELECT status, message FROM dag_run WHERE id = {run_id}") == [
        ("succeeded", None)
    ], new_err
    assert query(
        database_url,
        f"SELECT task_name, status FROM task_run WHERE dag_run_id = {run_id} ORDER BY id",
    ) == [("slow.sh", "succeeded"), ("after.yaml", "succeeded")]
    # The old scheduler met the run (and read its folder again for it), but never failed it.
    assert "runs of DAG(s) not loaded (added)" in old_err, old_err
    assert "no longer in the registry" not in old_err, old_err
    # `status` shows what each scheduler has loaded, and which DAGs differ between them.
    assert status.returncode == 0, status.stderr
    assert "2: changed, shared" in status.stdout, status.stdout
    assert "3: added, changed, shared" in status.stdout, status.stdout
    assert "in different versions by running schedulers" in status.stdout, status.stdout
    assert status.stdout.split("in different versions")[1].split("\n")[0].endswith(": changed"), (
        status.stdout
    )
