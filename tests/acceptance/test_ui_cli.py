"""``workflows CONFIG ui``: the real command, over real HTTP, against a real database."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import _stop_leftover_server
from tests.support import start_ui, stop_ui, workflows, write_project
from workflows_tick import database

SCRIPT = "<script>alert('owned')</script>"


def get(url: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Accept": "text/html"})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def project(tmp_path: Path) -> str:
    write_project(
        tmp_path,
        {
            "shouty": {
                "workflow.yaml": "description: prints markup, then fails\nretries: 0\n",
                "noisy.sh": f'echo "{SCRIPT}"\nexit 4\n',
            }
        },
    )
    return str(tmp_path / "config.py")


def test_a_task_printing_a_script_tag_shows_it_as_text(
    project: str, subprocess_env: dict[str, str]
) -> None:
    assert workflows(project, "trigger", "shouty", env=subprocess_env).returncode == 0
    workflows(project, "schedule", "worker", "--until-idle", env=subprocess_env)
    proc, base = start_ui(project, subprocess_env)
    try:
        status, body = get(f"{base}/api/failures")
        failure = json.loads(body)["failures"][0]
        status, html = get(f"{base}/task-runs/{failure['id']}")
        assert status == 200
        assert SCRIPT not in html
        assert "&lt;script&gt;alert(&#39;owned&#39;)&lt;/script&gt;" in html
        status, log = get(f"{base}/task-runs/{failure['id']}/log")
        assert SCRIPT in log  # the download is the text itself, served as text/plain
        status, dags = get(f"{base}/")
        assert status == 200 and 'data-dag="shouty"' in dags
    finally:
        stop_ui(proc)


def test_a_public_address_without_token_is_refused_in_one_line(
    project: str, subprocess_env: dict[str, str]
) -> None:
    env = {**subprocess_env, "WORKFLOWS_UI_TOKEN": ""}
    done = workflows(project, "ui", "--host", "0.0.0.0", "--port", "0", env=env)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "WORKFLOWS_UI_TOKEN" in lines[0] and "--insecure" in lines[0]


def test_with_a_token_every_request_needs_the_bearer_header(
    project: str, subprocess_env: dict[str, str]
) -> None:
    env = {**subprocess_env, "WORKFLOWS_UI_TOKEN": "a-long-test-token"}
    proc, base = start_ui(project, env, "--host", "0.0.0.0")
    base = base.replace("0.0.0.0", "127.0.0.1")
    try:
        assert get(f"{base}/api/dags")[0] == 401
        status, body = get(f"{base}/api/dags", token="a-long-test-token")
        assert status == 200 and json.loads(body)["dags"][0]["name"] == "shouty"
    finally:
        log = stop_ui(proc)
    assert "a-long-test-token" not in log


def test_sigterm_stops_the_page_cleanly(project: str, subprocess_env: dict[str, str]) -> None:
    proc, base = start_ui(project, subprocess_env)
    assert get(f"{base}/healthz")[0] == 200
    proc.send_signal(signal.SIGTERM)
    stop_ui(proc)
    assert proc.returncode in (0, 128 + signal.SIGTERM)


def test_a_port_in_use_is_one_line(project: str, subprocess_env: dict[str, str]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        done = workflows(project, "ui", "--port", port, env=subprocess_env)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        f"workflows: ui: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]


@pytest.mark.slow
def test_without_a_database_url_it_serves_the_embedded_database_and_stops_it(
    project: str,
) -> None:
    folder = Path(tempfile.mkdtemp(prefix="workflows-tick-test-ui-embedded-"))
    pgdata = folder / database.PGDATA_NAME
    env = {k: v for k, v in os.environ.items() if k not in database.URL_VARIABLES}
    env[database.DATA_DIR_VARIABLE] = str(folder)
    try:
        assert workflows(project, "trigger", "shouty", env=env).returncode == 0
        proc, base = start_ui(project, env)
        try:
            status, body = get(f"{base}/api/dags")
            assert status == 200
            assert json.loads(body)["dags"][0]["last_run"]["status"] == "running"
            assert (pgdata / "postmaster.pid").exists()
        finally:
            stop_ui(proc)
        assert proc.returncode == 128 + signal.SIGTERM
        assert not (pgdata / "postmaster.pid").exists(), "the embedded server kept running"
    finally:
        _stop_leftover_server(pgdata)
        shutil.rmtree(folder, ignore_errors=True)
