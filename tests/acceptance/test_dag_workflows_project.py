"""A project written for dag-workflows 1.0.5 (tests/dag_workflows_project), unchanged:
it validates, runs with ``run``, schedules with ``schedule worker --until-idle``, calls
its Slack hook when a task fails, and its own tests pass with the pytest fixtures."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from tests.support import query, workflows

PROJECT = Path(__file__).parent.parent / "dag_workflows_project"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the project (running it writes bytecode caches)."""
    return Path(shutil.copytree(PROJECT, tmp_path / "project"))


class SlackStub:
    """A local HTTP server standing in for a Slack webhook: records each posted JSON."""

    def __init__(self) -> None:
        self.posts: list[dict[str, str]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                stub.posts.append(json.loads(body))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def slack() -> Iterator[SlackStub]:
    stub = SlackStub()
    try:
        yield stub
    finally:
        stub.close()


@pytest.fixture
def env(subprocess_env: dict[str, str], slack: SlackStub) -> dict[str, str]:
    return {**subprocess_env, "SLACK_WEBHOOK": slack.url}


def test_the_project_validates_and_says_which_helper_file_it_skipped(
    project: Path, env: dict[str, str]
) -> None:
    result = workflows(str(project / "config.py"), "validate", env=env)
    assert result.returncode == 0, result.stderr
    assert "2 DAG(s), 4 task(s): all valid" in result.stdout
    assert "sales: 3 tasks, schedule '0 0 * * *'" in result.stdout
    assert "skipped _helpers.py: not a task" in result.stdout


def test_the_project_validates_for_the_kubernetes_manager(
    project: Path, env: dict[str, str]
) -> None:
    result = workflows(str(project / "config.py"), "validate", "--manager", "kubernetes", env=env)
    assert result.returncode == 0, result.stderr + result.stdout
    # Its kube_security_context (runAsUser 1000, fsGroup 2000) keeps pods non-root.
    assert "warning" not in result.stderr


def test_run_executes_sql_without_a_declared_database_url(
    project: Path, env: dict[str, str], database_url: str, slack: SlackStub
) -> None:
    result = workflows(str(project / "config.py"), "run", "sales", env=env)
    assert result.returncode == 0, result.stderr
    assert "sales total: 12" in result.stdout
    assert query(database_url, "SELECT total FROM totals") == [(12,)]
    assert slack.posts == []


def test_a_failing_run_posts_to_the_slack_hook(
    project: Path, env: dict[str, str], slack: SlackStub
) -> None:
    result = workflows(str(project / "config.py"), "run", "alerts", env=env)
    assert result.returncode == 1
    assert "the alerts task failed on purpose" in result.stderr
    assert len(slack.posts) == 1
    text = slack.posts[0]["text"]
    assert text.startswith("Task alerts:broken.py failed with exception: ")
    assert "RuntimeError: the alerts task failed on purpose" in text


def test_the_scheduler_runs_the_project_and_the_hook_fires_from_the_task(
    project: Path, env: dict[str, str], database_url: str, slack: SlackStub
) -> None:
    config = str(project / "config.py")
    for dag in ("sales", "alerts"):
        assert workflows(config, "trigger", dag, env=env).returncode == 0
    result = workflows(config, "schedule", "worker", "--until-idle", "--interval", "0.1", env=env)
    assert result.returncode == 0, result.stderr
    rows = query(
        database_url,
        "SELECT DISTINCT ON (r.dag_name, t.task_name) r.dag_name, t.task_name, t.status "
        "FROM task_run t JOIN dag_run r ON r.id = t.dag_run_id "
        "ORDER BY r.dag_name, t.task_name, t.attempt DESC",
    )
    states = {(dag, task): state for dag, task, state in rows}
    assert states == {
        ("sales", "_orders.sql"): "succeeded",
        ("sales", "totals.yaml"): "succeeded",
        ("sales", "report.py"): "succeeded",
        ("alerts", "broken.py"): "failed",
    }
    # One post per failed attempt (three: the first and two retries).
    assert len(slack.posts) == 3
    assert all("alerts:broken.py" in post["text"] for post in slack.posts)


def test_the_projects_own_tests_pass_with_the_pytest_fixtures(
    project: Path, database_url: str
) -> None:
    env = {**os.environ, "WORKFLOWS_TEST_DATABASE_URL": database_url}
    env.pop("PYTEST_ADDOPTS", None)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:asyncio", "-p", "no:randomly"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout
