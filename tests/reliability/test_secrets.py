"""Secrets stay secret; trigger parameters never pass through a shell string.

A run is made with a known database password (a role created for the test; the
test server may accept any password, what matters is that it is in DATABASE_URL)
and known ``kube_env`` values (registry and DAG ``worker_config``). Every output is
searched for them: the scheduler's stderr with ``-v``, ``runs``, ``logs`` of every
task run, ``list``, ``validate``, and every column of the task_run and dag_run rows.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.reliability.helpers import query, workflows
from tests.support import write_project

PASSWORD = "Pw-5ecret-" + uuid.uuid4().hex[:8]
REGISTRY_TOKEN = "reg-t0ken-" + uuid.uuid4().hex[:8]
DAG_TOKEN = "dag-t0ken-" + uuid.uuid4().hex[:8]
SECRETS = (PASSWORD, REGISTRY_TOKEN, DAG_TOKEN)


@dataclass
class Scenario:
    url: str
    env: dict[str, str]
    config: str
    printed: dict[str, str]
    """What each command printed (stdout and stderr)."""
    pwned: Path
    payload: str


@pytest.fixture
def password_url(database_url: str) -> Iterator[str]:
    """``database_url`` for a new superuser role that has the known password."""
    role = f"secret_{uuid.uuid4().hex[:10]}"
    query(database_url, f"CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{PASSWORD}'")
    try:
        url = make_url(database_url).set(username=role, password=PASSWORD)
        yield url.render_as_string(hide_password=False)
    finally:
        query(database_url, f"DROP ROLE IF EXISTS {role}")


def _run_scenario(tmp_path: Path, database_url: str, password_url: str) -> Scenario:
    pwned = tmp_path / f"pwned-{uuid.uuid4().hex[:6]}"
    payload = f"$(touch {pwned}); ; rm -rf `touch {pwned}` \"'$HOME"
    write_project(
        tmp_path / "project",
        {
            "ok": {
                "workflow.yaml": (
                    f"description: x\nworker_config:\n  kube_env:\n    DAG_TOKEN: {DAG_TOKEN}\n"
                ),
                "load.sql": "/*\nparameters: [DATABASE_URL]\n*/\nSELECT 1;\n",
                "use.py": (
                    '"""\nparameters: [DATABASE_URL]\ninputs: [load.sql]\n"""\n\n\n'
                    "def run(context):\n"
                    "    with context['conn'].cursor() as cur:\n"
                    "        cur.execute('SELECT 1')\n"
                ),
                "show.sh": '# parameters: [PAYLOAD]\necho "payload=[$PAYLOAD]"\n',
                "show.py": (
                    '"""\nparameters: [PAYLOAD]\n"""\n\n\n'
                    "def run(context):\n    print('payload=[' + context['PAYLOAD'] + ']')\n"
                ),
            },
            "fails": {
                "workflow.yaml": "description: x\nretries: 0\n",
                "bad.sql": "/*\nparameters: [DATABASE_URL]\n*/\nSELEC nonsense;\n",
                # A library error quoting its connection string, as some do.
                "leak.py": (
                    '"""\nparameters: [DATABASE_URL]\n"""\n\n\n'
                    "def run(context):\n"
                    "    raise ValueError('cannot parse ' + context['DATABASE_URL'])\n"
                ),
                "leak.sh": (
                    "# parameters: [DATABASE_URL]\n"
                    'echo "connecting to $DATABASE_URL failed" >&2\nexit 3\n'
                ),
            },
        },
    )
    config = tmp_path / "project" / "config.py"
    config.write_text(
        config.read_text()
        + f"DAGS.worker_config.update({{'kube_env': {{'REGISTRY_TOKEN': {REGISTRY_TOKEN!r}}}}})\n"
    )
    env = {k: v for k, v in os.environ.items() if "DATABASE_URL" not in k}
    env["DATABASE_URL"] = password_url
    printed: dict[str, str] = {}

    def run(name: str, *args: str, options: tuple[str, ...] = ()) -> str:
        out = workflows(*options, str(config), *args, env=env)
        printed[name] = out.stdout + out.stderr
        return out.stdout

    run("trigger ok", "trigger", "ok", "-p", f"PAYLOAD={payload}")
    run("trigger fails", "trigger", "fails")
    run(
        "schedule -v",
        *("schedule", "worker", "--until-idle", "--interval", "0.2", "--concurrency", "2"),
        options=("-v",),
    )
    run("schedule --log-json -v", "schedule", "worker", "--once", options=("--log-json", "-v"))
    run("runs", "runs", "-n", "50")
    for (task_run_id,) in query(database_url, "SELECT id FROM task_run ORDER BY id"):
        run(f"logs {task_run_id}", "logs", str(task_run_id))
    run("list", "list")
    run("validate", "validate")
    run("validate --manager kubernetes", "validate", "--manager", "kubernetes")
    return Scenario(database_url, env, str(config), printed, pwned, payload)


def test_secrets_are_never_printed_and_parameters_never_reach_a_shell(
    tmp_path: Path, database_url: str, password_url: str
) -> None:
    s = _run_scenario(tmp_path, database_url, password_url)
    statuses = dict(query(database_url, "SELECT dag_name, status FROM dag_run"))
    assert statuses == {"ok": "succeeded", "fails": "failed"}, s.printed["schedule -v"][-3000:]
    assert "started ok/show.sh" in s.printed["schedule -v"]  # -v really logged the work
    for name, text in s.printed.items():
        for secret in SECRETS:
            assert secret not in text, f"{name} printed a secret: {text[-2000:]}"
    # Rows, all columns but the output tail (see the next test), as text.
    rows = query(database_url, "SELECT (t.*)::text FROM dag_run t") + query(
        database_url,
        "SELECT (id, dag_run_id, task_name, attempt, status, manager, host, exit_code, error)"
        "::text FROM task_run",
    )
    for (row,) in rows:
        assert all(secret not in row for secret in SECRETS), row
    # The leaking tasks did fail, and say why (with the password masked).
    errors = dict(
        query(database_url, "SELECT task_name, error FROM task_run WHERE status = 'failed'")
    )
    assert "cannot parse postgresql://" in errors["leak.py"]
    assert "***" in errors["leak.py"] and errors["leak.sh"].endswith("exit code 3")
    # The parameter reached both tasks verbatim, through the environment only.
    shown = {
        name: text
        for name, text in s.printed.items()
        if name.startswith("logs ") and "payload=[" in text
    }
    assert len(shown) == 2
    assert all(f"payload=[{s.payload}]" in text for text in shown.values()), shown
    assert not s.pwned.exists()
    assert "PAYLOAD" in s.printed["runs"] and s.payload not in s.printed["runs"]


def test_task_output_is_stored_without_the_database_password(
    tmp_path: Path, database_url: str, password_url: str
) -> None:
    _run_scenario(tmp_path, database_url, password_url)
    tails = query(
        database_url,
        "SELECT task_name, output_tail FROM task_run WHERE task_name = 'leak.py'",
    )
    assert tails and all(PASSWORD not in (tail or "") for _, tail in tails), tails
