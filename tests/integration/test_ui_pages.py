"""The web page's handlers against a real database: pages, JSON, escaping, query counts,
and the access rules (token, login cookie, Host check, read-only POSTs, CSRF)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy import event, text
from starlette.testclient import TestClient

from tests.support import write_project
from workflows_tick.dags import DagRegistry
from workflows_tick.ui.app import create_app
from workflows_tick.ui.security import Guard

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
XSS = "<script>alert('x')</script>"
BROWSER = {"Accept": "text/html,application/xhtml+xml"}

PROJECT = {
    "chain": {
        "workflow.yaml": (
            f'description: "A chain {XSS}"\nschedule: "0 3 * * *"\ntimezone: Europe/Paris\n'
        ),
        "a.sh": "echo a\n",
        "b.sh": "# inputs: [a.sh]\necho b\n",
        "c.sh": "# inputs: [b.sh]\necho c\n",
    },
    "solo": {
        "workflow.yaml": "description: alone\n",
        "only.sh": "echo only\n",
        "after_chain.sh": "# inputs: ['chain:c.sh']\necho after\n",
    },
    "broken": {
        "workflow.yaml": "description: broken\nschedule: [not, a, string]\n",
        "x.sh": "echo\n",
    },
}


@pytest.fixture
def registry(tmp_path: Path) -> DagRegistry:
    return write_project(tmp_path, PROJECT)


def insert_run(
    engine: sqlalchemy.Engine,
    dag: str,
    status: str,
    tasks: dict[str, list[str]],
    created: datetime = T0,
    parameters: str = "{}",
    output: str | None = None,
    error: str | None = None,
) -> tuple[int, dict[str, list[int]]]:
    """A run of ``dag`` with task runs (task -> status of each attempt); ids."""
    with engine.begin() as conn:
        run_id = conn.execute(
            text(
                "INSERT INTO dag_run (dag_name, status, trigger, creator, parameters, created_at, "
                "ended_at) VALUES (:dag, :status, 'manual', 'tests', CAST(:p AS jsonb), :t, "
                "CASE WHEN :status = 'running' THEN NULL ELSE CAST(:t AS timestamptz) END) "
                "RETURNING id"
            ),
            {"dag": dag, "status": status, "t": created, "p": parameters},
        ).scalar_one()
        ids: dict[str, list[int]] = {}
        for task, attempts in tasks.items():
            for attempt, task_status in enumerate(attempts, start=1):
                finished = task_status in ("succeeded", "failed")
                ids.setdefault(task, []).append(
                    conn.execute(
                        text(
                            "INSERT INTO task_run (dag_run_id, task_name, attempt, status, "
                            "created_at, not_before, started_at, ended_at, host, exit_code, "
                            "error, output_tail) VALUES (:run, :task, :attempt, :status, :t, :t, "
                            ":t, :ended, 'host-1', :code, :error, :output) RETURNING id"
                        ),
                        {
                            "run": run_id,
                            "task": task,
                            "attempt": attempt,
                            "status": task_status,
                            "t": created,
                            "ended": created + timedelta(seconds=5) if finished else None,
                            "code": {"succeeded": 0, "failed": 1}.get(task_status),
                            "error": error if task_status == "failed" else None,
                            "output": output if finished else None,
                        },
                    ).scalar_one()
                )
    return run_id, ids


def make_client(
    engine: sqlalchemy.Engine,
    registry: DagRegistry,
    token: str | None = None,
    loopback_only: bool = False,
    allow_actions: bool = False,
    base_url: str = "http://testserver",
) -> TestClient:
    guard = Guard(
        token=token,
        secret=secrets.token_bytes(32),
        loopback_only=loopback_only,
        allow_actions=allow_actions,
    )
    app = create_app(engine, registry, guard, clock=lambda: T0 + timedelta(hours=1))
    return TestClient(app, base_url=base_url, follow_redirects=False)


@pytest.fixture
def client(engine: sqlalchemy.Engine, registry: DagRegistry) -> Iterator[TestClient]:
    with make_client(engine, registry) as test_client:
        yield test_client


# --- pages and JSON ---------------------------------------------------------------------


def test_dag_list_shows_every_dag_failing_ones_first(
    client: TestClient, engine: sqlalchemy.Engine
) -> None:
    insert_run(engine, "solo", "failed", {"only.sh": ["failed"]})
    insert_run(engine, "chain", "succeeded", {"a.sh": ["succeeded"]})
    data = client.get("/api/dags").json()
    names = [d["name"] for d in data["dags"]]
    # broken (cannot load) and solo (last run failed) are failing: first, by name.
    assert names == ["broken", "solo", "chain"]
    chain = data["dags"][2]
    assert chain["schedule"] == "0 3 * * *"
    assert chain["schedule_words"] == "at 03:00 every day"
    assert chain["timezone"] == "Europe/Paris"
    assert chain["next_fire_at"] == "2026-03-02T02:00:00+00:00"
    assert chain["last_run"]["status"] == "succeeded"
    assert "schedule" in data["dags"][0]["error"]
    html = client.get("/").text
    assert html.index('data-dag="broken"') < html.index('data-dag="chain"')
    assert "03:00:00 CET" in html  # the next fire in the DAG's zone too


def test_dag_list_filters_failing_dags_and_names(
    client: TestClient, engine: sqlalchemy.Engine
) -> None:
    insert_run(engine, "solo", "failed", {"only.sh": ["failed"]})
    failing = client.get("/api/dags?failing=1").json()["dags"]
    assert [d["name"] for d in failing] == ["broken", "solo"]
    assert [d["name"] for d in client.get("/api/dags?q=CHA").json()["dags"]] == ["chain"]


def test_dag_grid_has_a_cell_per_task_and_run_with_attempt_counts(
    client: TestClient, engine: sqlalchemy.Engine
) -> None:
    first, _ = insert_run(engine, "chain", "succeeded", {"a.sh": ["succeeded"]})
    second, ids = insert_run(
        engine,
        "chain",
        "failed",
        {"a.sh": ["succeeded"], "b.sh": ["failed", "failed", "failed"]},
        created=T0 + timedelta(minutes=5),
    )
    data = client.get("/api/dags/chain").json()
    assert [r["id"] for r in data["runs"]] == [second, first]
    rows = {row["task"]: row["cells"] for row in data["grid"]}
    assert list(rows) == ["a.sh", "b.sh", "c.sh"]
    assert rows["b.sh"][0] == {
        "task_run_id": ids["b.sh"][2],
        "status": "failed",
        "attempts": 3,
        "seconds": 5.0,
        "waiting_for": None,
    }
    assert rows["b.sh"][1] is None and rows["c.sh"] == [None, None]
    # The graph shows the newest run unless another is chosen.
    assert data["graph"]["states"] == {"a.sh": "succeeded", "b.sh": "failed"}
    assert client.get(f"/api/dags/chain?run={first}").json()["graph"]["states"] == {
        "a.sh": "succeeded"
    }
    html = client.get("/dags/chain").text
    assert f'href="/task-runs/{ids["b.sh"][2]}"' in html
    assert '<svg class="dag-graph"' in html
    assert re.search(r'class="node s-failed" data-task="b.sh"', html)


def test_the_graph_shows_inputs_on_other_dags_as_dashed_nodes(client: TestClient) -> None:
    data = client.get("/api/dags/solo").json()
    assert data["graph"]["inputs"]["after_chain.sh"] == ["chain:c.sh"]
    html = client.get("/dags/solo").text
    assert 'class="node s-none external" data-task="chain:c.sh"' in html
    assert html.count('<path class="edge"') == 1


def test_run_page_shows_every_attempt_and_masks_secret_parameters(
    client: TestClient, engine: sqlalchemy.Engine
) -> None:
    run_id, _ = insert_run(
        engine,
        "chain",
        "failed",
        {"a.sh": ["failed", "succeeded"], "b.sh": ["failed"]},
        parameters='{"DB_PASSWORD": "hunter2-secret", "URL": "postgres://u:pw1234@h/db", '
        '"DAY": "2026-03-01"}',
        error="boom",
    )
    data = client.get(f"/api/runs/{run_id}").json()
    assert data["run"]["parameters"] == {
        "DAY": "2026-03-01",
        "DB_PASSWORD": "***",
        "URL": "postgres://u:***@h/db",
    }
    assert [(t["task"], t["attempt"], t["status"]) for t in data["task_runs"]] == [
        ("a.sh", 1, "failed"),
        ("a.sh", 2, "succeeded"),
        ("b.sh", 1, "failed"),
    ]
    assert data["graph"]["states"] == {"a.sh": "succeeded", "b.sh": "failed"}
    html = client.get(f"/runs/{run_id}").text
    assert "hunter2" not in html and "pw1234" not in html
    assert "2026-03-01 12:00:00 UTC" in html and "13:00:00 CET" in html


def test_a_task_run_waiting_on_another_dag_says_what_it_waits_for(
    client: TestClient, engine: sqlalchemy.Engine
) -> None:
    run_id, ids = insert_run(
        engine, "solo", "running", {"only.sh": ["succeeded"], "after_chain.sh": ["waiting"]}
    )
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE task_run SET waiting_for = ARRAY['chain:c.sh'] WHERE id = :id"),
            {"id": ids["after_chain.sh"][0]},
        )

    data = client.get(f"/api/runs/{run_id}").json()
    assert [(t["task"], t["status"], t["waiting_for"]) for t in data["task_runs"]] == [
        ("only.sh", "succeeded", None),
        ("after_chain.sh", "waiting", ["chain:c.sh"]),
    ]
    html = client.get(f"/runs/{run_id}").text
    assert re.search(r'>waiting</span> <span class="waiting-for">for chain:c.sh</span>', html)
    grid = client.get("/api/dags/solo").json()["grid"]
    assert {row["task"]: row["cells"][0]["waiting_for"] for row in grid} == {
        "only.sh": None,
        "after_chain.sh": ["chain:c.sh"],
    }
    assert (
        'title="after_chain.sh: waiting for chain:c.sh, attempt 1"' in client.get("/dags/solo").text
    )


def test_task_run_page_shows_each_attempts_log_with_download_and_links_back(
    client: TestClient, engine: sqlalchemy.Engine
) -> None:
    run_id, ids = insert_run(
        engine, "chain", "failed", {"a.sh": ["failed", "failed"]}, output="line one\nline two\n"
    )
    first, second = ids["a.sh"]
    data = client.get(f"/api/task-runs/{second}").json()
    assert [a["attempt"] for a in data["attempts"]] == [1, 2]
    assert data["attempts"][1]["output"] == "line one\nline two\n"
    html = client.get(f"/task-runs/{second}").text
    assert f'href="/runs/{run_id}"' in html and f'href="/dags/chain?run={run_id}"' in html
    assert f'href="/task-runs/{first}/log"' in html
    download = client.get(f"/task-runs/{first}/log")
    assert download.headers["content-type"].startswith("text/plain")
    assert "attachment" in download.headers["content-disposition"]
    assert download.text.endswith("line one\nline two\n")
    assert "chain run" in download.text.splitlines()[0]


def test_failures_are_newest_first_with_their_errors(
    client: TestClient, engine: sqlalchemy.Engine
) -> None:
    insert_run(engine, "solo", "failed", {"only.sh": ["failed"]}, error="old failure")
    insert_run(
        engine,
        "chain",
        "failed",
        {"a.sh": ["failed"]},
        created=T0 + timedelta(hours=1),
        error="new failure",
    )
    failures = client.get("/api/failures").json()["failures"]
    assert [(f["dag"], f["error"]) for f in failures] == [
        ("chain", "new failure"),
        ("solo", "old failure"),
    ]
    assert "new failure" in client.get("/failures").text


def test_unknown_things_are_404_in_html_and_json(client: TestClient) -> None:
    assert client.get("/dags/nope").status_code == 404
    assert client.get("/api/runs/12345").json() == {"error": "not found"}
    assert client.get("/task-runs/12345").status_code == 404


def test_every_value_from_files_parameters_errors_and_logs_is_escaped(
    client: TestClient, engine: sqlalchemy.Engine
) -> None:
    run_id, ids = insert_run(
        engine,
        "chain",
        "failed",
        {"a.sh": ["failed"]},
        parameters='{"NOTE": "<script>alert(1)</script>"}',
        output=f"printed {XSS}\n",
        error=f"error {XSS}",
    )
    for path in (
        "/",
        "/dags/chain",
        f"/runs/{run_id}",
        f"/task-runs/{ids['a.sh'][0]}",
        "/failures",
    ):
        html = client.get(path).text
        assert "<script>alert" not in html, path
    assert "&lt;script&gt;alert(" in client.get(f"/task-runs/{ids['a.sh'][0]}").text


def test_each_page_issues_a_fixed_number_of_queries(
    client: TestClient, engine: sqlalchemy.Engine
) -> None:
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))

    def count(path: str) -> int:
        statements.clear()
        assert client.get(path).status_code == 200
        return len(statements)

    run_id, ids = insert_run(engine, "chain", "failed", {"a.sh": ["failed"]})
    pages = [
        "/",
        "/dags/chain",
        f"/runs/{run_id}",
        f"/task-runs/{ids['a.sh'][0]}",
        "/failures",
        "/schedulers",
    ]
    few = {path: count(path) for path in pages}
    for i in range(30):
        insert_run(
            engine,
            "chain" if i % 2 else "solo",
            "failed",
            {"a.sh": ["failed", "failed"], "b.sh": ["succeeded"], "only.sh": ["failed"]},
            created=T0 + timedelta(minutes=i),
        )
    assert {path: count(path) for path in pages} == few
    assert max(few.values()) <= 4


# --- access rules ---------------------------------------------------------------------------


def test_with_a_token_every_request_needs_it(
    engine: sqlalchemy.Engine, registry: DagRegistry
) -> None:
    with make_client(engine, registry, token="s3cret-token") as c:
        assert c.get("/api/dags").status_code == 401
        assert c.get("/api/dags").headers["www-authenticate"].startswith("Bearer")
        assert c.get("/healthz").status_code == 401
        page = c.get("/dags/chain?run=1", headers=BROWSER)
        assert page.status_code == 303
        assert page.headers["location"] == "/login?next=%2Fdags%2Fchain%3Frun%3D1"
        assert c.get("/api/dags", headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = c.get("/api/dags", headers={"Authorization": "Bearer s3cret-token"})
        assert ok.status_code == 200
        assert c.get("/static/style.css").status_code == 200


def test_the_login_form_sets_a_cookie_that_is_not_the_token(
    engine: sqlalchemy.Engine, registry: DagRegistry
) -> None:
    with make_client(engine, registry, token="s3cret-token") as c:
        wrong = c.post("/login", data={"token": "nope", "next": "/failures"})
        assert wrong.status_code == 401 and "not the token" in wrong.text
        good = c.post("/login", data={"token": "s3cret-token", "next": "/failures"})
        assert good.status_code == 303 and good.headers["location"] == "/failures"
        cookie = good.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert "s3cret-token" not in cookie
        assert c.get("/failures").status_code == 200  # the client keeps the cookie
        c.get("/logout")
        assert c.get("/failures", headers=BROWSER).status_code == 303
        # Never redirected off-site after logging in.
        away = c.post("/login", data={"token": "s3cret-token", "next": "//evil.example/"})
        assert away.headers["location"] == "/"


def test_on_loopback_without_token_only_loopback_host_names_are_answered(
    engine: sqlalchemy.Engine, registry: DagRegistry
) -> None:
    with make_client(engine, registry, loopback_only=True, base_url="http://127.0.0.1:8080") as c:
        assert c.get("/api/dags").status_code == 200
        assert c.get("/api/dags", headers={"Host": "localhost:8080"}).status_code == 200
        assert c.get("/api/dags", headers={"Host": "[::1]:8080"}).status_code == 200
        assert c.get("/api/dags", headers={"Host": "rebound.example:8080"}).status_code == 421


def test_read_only_refuses_every_post(client: TestClient) -> None:
    response = client.post("/dags/solo/trigger", data={"csrf": "x"})
    assert response.status_code == 403
    assert "--allow-actions" in response.text
    assert "Trigger" not in client.get("/").text
    assert client.post("/runs/1/cancel").status_code == 403


def test_actions_need_the_pages_csrf_token(
    engine: sqlalchemy.Engine, registry: DagRegistry
) -> None:
    with make_client(engine, registry, allow_actions=True) as c:
        html = c.get("/dags/solo").text
        token = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
        assert token is not None
        assert c.post("/dags/solo/trigger").status_code == 403
        assert c.post("/dags/solo/trigger", data={"csrf": "0" * 64}).status_code == 403
        done = c.post("/dags/solo/trigger", data={"csrf": token.group(1)})
        assert done.status_code == 303
        run = c.get("/api" + done.headers["location"]).json()["run"]
        assert (run["dag"], run["trigger"], run["status"]) == ("solo", "manual", "running")
        assert run["creator"].startswith("ui")
        assert c.post("/dags/broken/trigger", data={"csrf": token.group(1)}).status_code == 404


def test_responses_carry_security_headers_and_server_timing(client: TestClient) -> None:
    response = client.get("/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert re.fullmatch(r"app;dur=\d+\.\d", response.headers["server-timing"])


def test_a_database_outage_is_a_503_in_one_line(registry: DagRegistry, database_url: str) -> None:
    from tests.conftest import sqlalchemy_url
    from workflows_tick.database import make_engine

    engine = make_engine(sqlalchemy_url(database_url), purpose="test")
    with make_client(engine, registry) as c:
        assert c.get("/api/dags").status_code == 200
        engine.dispose()
        down = make_engine(
            "postgresql+psycopg2://nobody:hunter2@127.0.0.1:1/none?connect_timeout=2", "test"
        )
        c.app.state.ui.engine = down  # type: ignore[attr-defined]
        response = c.get("/api/dags")
        assert response.status_code == 503
        assert response.json()["error"].startswith("database unavailable: ")
        assert "hunter2" not in response.text
        page = c.get("/", headers=BROWSER)
        assert page.status_code == 503 and "database unavailable" in page.text
        down.dispose()


def test_metrics_and_healthz_are_served_and_need_the_token(
    engine: sqlalchemy.Engine, registry: DagRegistry
) -> None:
    insert_run(engine, "solo", "running", {"only.sh": ["running"]})
    with make_client(engine, registry, token="s3cret-token") as c:
        assert c.get("/metrics").status_code == 401
        assert c.get("/healthz").status_code == 401
        auth = {"Authorization": "Bearer s3cret-token"}
        metrics = c.get("/metrics", headers=auth)
        assert metrics.status_code == 200
        assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert "workflows_database_up 1.0" in metrics.text
        health = c.get("/healthz", headers=auth)
        assert (health.status_code, health.text) == (200, "ok\n")


# --- pause, cancel, rerun, schedulers -------------------------------------------------------


def _csrf(c: TestClient, path: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', c.get(path).text)
    assert found is not None, f"no form on {path}"
    return found.group(1)


def test_pause_and_unpause_buttons(engine: sqlalchemy.Engine, registry: DagRegistry) -> None:
    with make_client(engine, registry, allow_actions=True) as c:
        token = _csrf(c, "/dags/chain")
        assert "Pause" in c.get("/dags/chain").text
        done = c.post("/dags/chain/pause", data={"csrf": token})
        assert (done.status_code, done.headers["location"]) == (303, "/dags/chain")
        dag = c.get("/api/dags/chain").json()["dag"]
        assert dag["paused"] is True and dag["paused_by"].startswith("ui")
        listed = {d["name"]: d["paused"] for d in c.get("/api/dags").json()["dags"]}
        assert listed == {"broken": False, "chain": True, "solo": False}
        assert "Unpause" in c.get("/dags/chain").text
        assert c.post("/dags/chain/unpause", data={"csrf": token}).status_code == 303
        assert c.get("/api/dags/chain").json()["dag"]["paused"] is False


def test_cancel_a_running_run_and_rerun_a_failed_one(
    engine: sqlalchemy.Engine, registry: DagRegistry
) -> None:
    running, _ = insert_run(
        engine, "chain", "running", {"a.sh": ["succeeded"], "b.sh": ["waiting"]}
    )
    failed, _ = insert_run(
        engine, "solo", "failed", {"only.sh": ["failed"]}, created=T0 + timedelta(minutes=1)
    )
    with make_client(engine, registry, allow_actions=True) as c:
        token = _csrf(c, f"/runs/{running}")
        assert "Cancel the run" in c.get(f"/runs/{running}").text
        assert c.post(f"/runs/{running}/cancel", data={"csrf": token}).status_code == 303
        after = c.get(f"/api/runs/{running}").json()
        assert after["run"]["status"] == "cancelled"
        assert {t["task"]: t["status"] for t in after["task_runs"]}["b.sh"] == "cancelled"
        again = c.post(f"/runs/{running}/cancel", data={"csrf": token}, headers=BROWSER)
        assert again.status_code == 409 and "already ended" in again.text
        assert "Rerun from failure" in c.get(f"/runs/{failed}").text
        assert c.post(f"/runs/{failed}/rerun", data={"csrf": token}).status_code == 303
        assert c.get(f"/api/runs/{failed}").json()["run"]["status"] == "running"
        missing = c.post("/runs/99999/cancel", data={"csrf": token})
        assert missing.status_code == 404


def test_a_skipped_fire_shows_as_skipped_and_never_hides_a_failure(
    engine: sqlalchemy.Engine, registry: DagRegistry
) -> None:
    insert_run(engine, "solo", "failed", {"only.sh": ["failed"]})
    skipped, _ = insert_run(engine, "solo", "skipped", {}, created=T0 + timedelta(minutes=1))
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE dag_run SET message = :m WHERE id = :id"),
            {"m": "skipped: run 1 had not ended (overlap: skip)", "id": skipped},
        )
    with make_client(engine, registry, allow_actions=True) as c:
        solo = next(d for d in c.get("/api/dags").json()["dags"] if d["name"] == "solo")
        assert solo["failing"] is True
        assert solo["last_run"]["status"] == "skipped"
        page = c.get(f"/runs/{skipped}").text
        assert '<span class="badge s-skipped">skipped</span>' in page
        assert '<p class="note">skipped: run 1 had not ended (overlap: skip)</p>' in page
        assert "Rerun from failure" not in page and "Cancel the run" not in page
        assert 'class="square s-skipped' in c.get("/dags/solo").text


def test_schedulers_page_flags_stale_schedulers(
    engine: sqlalchemy.Engine, registry: DagRegistry
) -> None:
    now = T0 + timedelta(hours=1)
    with engine.begin() as conn:
        for name, last, stopped in (
            ("fresh", now - timedelta(seconds=5), None),
            ("stuck", now - timedelta(minutes=10), None),
            ("gone", now - timedelta(minutes=30), now - timedelta(minutes=30)),
            ("ancient", now - timedelta(days=3), None),
        ):
            conn.execute(
                text(
                    "INSERT INTO scheduler_heartbeat (id, host, pid, manager, started_at, "
                    "last_pass_at, last_pass_seconds, dags, stopped_at) VALUES (:id, 'h', 1, "
                    "'worker', :started, :last, 0.01, '{a,b}', :stopped)"
                ),
                {"id": name, "started": now - timedelta(hours=2), "last": last, "stopped": stopped},
            )
    with make_client(engine, registry) as c:
        rows = c.get("/api/schedulers").json()["schedulers"]
        assert [(r["id"], r["stale"]) for r in rows] == [
            ("fresh", False),
            ("stuck", True),
            ("gone", False),
        ]
        html = c.get("/schedulers").text
        assert html.count('class="failing stale"') == 1 and "<code>stuck</code>" in html
