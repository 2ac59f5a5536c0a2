"""Metrics, health and Cronitor through the real ``workflows`` command."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fake_cronitor import FakeCronitor
from tests.support import query, wait_for, workflows, write_project

DAGS = {
    "hourly": {
        "workflow.yaml": "description: x\nschedule: '0 * * * *'\n",
        "a.yaml": "type: no_op\n",
    },
    "manual": {"workflow.yaml": "description: x\n", "a.yaml": "type: no_op\n"},
}


@pytest.fixture
def fake() -> Iterator[FakeCronitor]:
    server = FakeCronitor()
    yield server
    server.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def families(body: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    return {
        f.name: [(s.labels, s.value) for s in f.samples]
        for f in text_string_to_metric_families(body)
    }


def test_schedule_serves_metrics_and_healthz(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    write_project(tmp_path, DAGS)
    config = str(tmp_path / "config.py")
    assert workflows(config, "trigger", "manual", env=subprocess_env).returncode == 0
    port = free_port()
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "workflows_tick", config, "schedule", "worker"),
            *("--interval", "0.5", "--metrics-port", str(port)),
        ],
        env=subprocess_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"

    def scrape() -> dict[str, list[tuple[dict[str, str], float]]]:
        with urllib.request.urlopen(base + "/metrics", timeout=10) as response:
            return families(response.read().decode())

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=10) as response:
                return response.status == 200 and response.read() == b"ok\n"
        except OSError:
            return False

    try:
        wait_for(healthy, timeout=60, what="/healthz to answer 200")
        wait_for(
            lambda: (
                ({"dag": "manual", "status": "succeeded"}, 1.0) in scrape()["workflows_dag_runs"]
            ),
            timeout=60,
            what="the triggered run to show as succeeded",
        )
        got = scrape()
        assert got["workflows_database_up"] == [({}, 1.0)]
        assert got["workflows_passes"][0][1] >= 1  # a counter: sample workflows_passes_total
        assert (
            {"dag": "hourly"},
            pytest.approx(got["workflows_dag_next_fire_timestamp_seconds"][0][1]),
        ) in got["workflows_dag_next_fire_timestamp_seconds"]
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err


def test_metrics_command_prints_the_text_once(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    write_project(tmp_path, DAGS)
    config = str(tmp_path / "config.py")
    assert workflows(config, "trigger", "manual", env=subprocess_env).returncode == 0
    result = workflows(config, "metrics", env=subprocess_env)
    assert result.returncode == 0, result.stderr
    got = families(result.stdout)
    assert got["workflows_dag_runs"] == [({"dag": "manual", "status": "running"}, 1.0)]
    assert got["workflows_events_undelivered"] == [({}, 1.0)]


def test_metrics_port_mistakes_are_one_line(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    write_project(tmp_path, DAGS)
    config = str(tmp_path / "config.py")
    once = workflows(
        config, "schedule", "worker", "--once", "--metrics-port", "0", env=subprocess_env
    )
    assert once.returncode != 0 and once.stderr.count("\n") == 1
    assert "--metrics-port needs a running loop" in once.stderr
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = workflows(
            config, "schedule", "worker", "--metrics-port", str(port), env=subprocess_env
        )
    assert busy.returncode != 0 and "Traceback" not in busy.stderr
    assert f"workflows: --metrics-port {port}: Address already in use" in busy.stderr


def test_cronitor_sync_by_hand(
    tmp_path: Path, subprocess_env: dict[str, str], fake: FakeCronitor
) -> None:
    write_project(tmp_path, DAGS)
    config = str(tmp_path / "config.py")
    missing = workflows(config, "cronitor", "sync", env=subprocess_env)
    assert missing.returncode != 0
    assert missing.stderr == "workflows: CRONITOR_API_KEY is not set\n"
    dry = workflows(config, "cronitor", "sync", "--dry-run", env=subprocess_env)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout == "would put hourly: 0 * * * * UTC, grace 65s\n0 unchanged\n"
    env = {
        **subprocess_env,
        "CRONITOR_API_KEY": "k3y",
        "WORKFLOWS_CRONITOR_URL": fake.url,
        "WORKFLOWS_CRONITOR_PREFIX": "ci-",
    }
    done = workflows(config, "cronitor", "sync", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "put ci-hourly: 0 * * * * UTC, grace 65s\n0 unchanged\n"
    assert [[m["key"] for m in put] for put in fake.puts()] == [["ci-hourly"]]
    again = workflows(config, "cronitor", "sync", env=env)
    assert again.stdout == "1 unchanged\n" and len(fake.puts()) == 1


def imported_modules(stderr: str) -> set[str]:
    """Module names from ``python -X importtime`` output."""
    return {line.rsplit("|", 1)[-1].strip() for line in stderr.splitlines() if "|" in line}


def test_cronitor_is_imported_only_to_send_something(
    tmp_path: Path, subprocess_env: dict[str, str], database_url: str, fake: FakeCronitor
) -> None:
    write_project(tmp_path, {"manual": DAGS["manual"]})
    config = str(tmp_path / "config.py")
    env = {**subprocess_env, "CRONITOR_API_KEY": "k3y", "WORKFLOWS_CRONITOR_URL": fake.url}

    def once(env: dict[str, str]) -> set[str]:
        result = subprocess.run(
            [
                *(sys.executable, "-X", "importtime", "-m", "workflows_tick", config),
                *("schedule", "worker", "--once"),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        return imported_modules(result.stderr)

    assert "cronitor" not in once(env)  # the key, but nothing to send
    assert workflows(config, "trigger", "manual", env=env).returncode == 0
    assert "cronitor" not in once(subprocess_env)  # something to send, but no key
    # The first run's start went to no sink; the second's start and the first's end
    # (a --once pass ends a run in the pass after its last task) go to Cronitor.
    run_id = int(workflows(config, "trigger", "manual", env=env).stdout)
    assert "cronitor" in once(env)
    pings = [(p["state"], p["series"]) for p in fake.pings()]
    assert pings == [("run", str(run_id)), ("complete", str(run_id - 1))]
    assert query(database_url, "SELECT count(*) FROM event WHERE delivered_at IS NULL") == [(0,)]
