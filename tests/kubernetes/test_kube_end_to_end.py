"""End to end: ``workflows <config> schedule kubernetes --once``, pass after pass, against
the kmock emulator over HTTPS, until a fan-out DAG with a flaky task has succeeded.

start → (a, b, flaky) → join, every pod in namespace ``jobs``; the fake kubelet fails
``flaky``'s first attempt with exit code 3 and lets every other pod succeed, moving each
pod one step (Pending → Running → Succeeded/Failed) between two passes. The API calls of
each pass are counted from the requests the emulator recorded (the kubelet's left out)
and printed (``pytest -s``).

Finished pods are deleted once their attempt is no longer recorded as running *and*
they are more than the manager's grace (30 s) old: a younger pod may belong to a
replica whose running row this pass has not seen. The tests do not wait 30 s: once the
run is over they age the pods (move their ``creationTimestamp`` back), then run two
more passes, after which no pod may remain.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    _create_database,
    _drop_database,
    environment_for,
    libpq_url,
    sqlalchemy_url,
)
from tests.kubernetes.kube_emulator import PODS, EmulatorThread, FakeKubelet
from tests.support import query, workflows, write_project
from workflows_tick.managers.kubernetes.manager import DEFAULT_GRACE
from workflows_tick.managers.kubernetes.pods import ATTEMPT_LABEL, TASK_LABEL, label_value

NAMESPACE = "jobs"
DAG = "fan"
TASKS = ("start.yaml", "a.yaml", "b.yaml", "flaky.yaml", "join.yaml")
MAX_PASSES = 40


CONFIG = """\
import os

from workflows_tick import dags

DAGS = dags.register_directory(os.path.dirname(__file__))
DAGS.worker_config = {"kube_image": "example/workflows:1", "kube_namespace": "jobs"}
"""


def write_fan_project(root: Path) -> Path:
    write_project(
        root,
        {
            DAG: {
                "workflow.yaml": "description: fan-out with a flaky branch\n",
                "start.yaml": "description: start\n",
                "a.yaml": "description: a\ninputs: [start.yaml]\n",
                "b.yaml": "description: b\ninputs: [start.yaml]\n",
                "flaky.yaml": "description: fails once\ninputs: [start.yaml]\n",
                "join.yaml": "description: join\ninputs: [a.yaml, b.yaml, flaky.yaml]\n",
            }
        },
    )
    config = root / "config.py"
    config.write_text(CONFIG)
    return config


def exit_code_for(pod: dict[str, Any]) -> int:
    """The fake kubelet's verdict: flaky's first attempt exits 3, everything else 0."""
    labels = pod["metadata"].get("labels") or {}
    if labels.get(TASK_LABEL) == label_value("flaky.yaml") and labels.get(ATTEMPT_LABEL) == "1":
        return 3
    return 0


def log_text(pod: dict[str, Any]) -> str:
    labels = pod["metadata"].get("labels") or {}
    return f"task {labels.get(TASK_LABEL)} attempt {labels.get(ATTEMPT_LABEL)}\nbye\n"


def make_kubelet(emu: EmulatorThread, folder: Path) -> FakeKubelet:
    """A kubelet stepped by hand (``sweep``), never as a thread; it writes each pod's log."""
    kubeconfig = emu.write_kubeconfig(folder / "kubelet-kubeconfig")

    def outcome(pod: dict[str, Any]) -> int:
        emu.emulator.logs[pod["metadata"]["name"]] = log_text(pod)
        return exit_code_for(pod)

    return FakeKubelet(kubeconfig, [NAMESPACE, "default"], outcome)


class Driver:
    """Runs passes, steps the kubelet between them, and keeps the calls of each pass."""

    def __init__(
        self, emu: EmulatorThread, kubelet: FakeKubelet, run_pass: Callable[[], None]
    ) -> None:
        self.emu, self.kubelet, self._run_pass = emu, kubelet, run_pass
        self.calls: list[Counter[tuple[str, str]]] = []
        """Per pass: (verb, namespace) -> count; verbs LIST, POST, DELETE, GET log."""
        self.seconds: list[float] = []

    def one_pass(self) -> None:
        before = len(self.emu.emulator.client_requests())
        started = time.perf_counter()
        self._run_pass()
        self.seconds.append(time.perf_counter() - started)
        counts: Counter[tuple[str, str]] = Counter()
        for request in self.emu.emulator.client_requests()[before:]:
            assert request.resource == PODS, request
            action = request.action.value if request.action else "?"
            verb = {"CREATE": "POST", "FETCH": "GET"}.get(action, action)
            if request.subresource:
                verb = f"{verb} {request.subresource}"
            counts[(verb, request.namespace or "")] += 1
        self.calls.append(counts)

    def pods(self) -> list[str]:
        """Names of the pods the emulator still holds."""
        return self.emu.call(
            lambda: sorted(
                key[2] for key, obj in self.emu.emulator.objects.items() if not obj.deleted
            )
        )

    def age_pods(self, seconds: float) -> None:
        """Move every pod's creationTimestamp ``seconds`` back (as if that much time passed)."""

        def age() -> None:
            for obj in self.emu.emulator.objects.values():
                if obj.deleted:
                    continue
                created = datetime.fromisoformat(
                    obj["metadata"]["creationTimestamp"].replace("Z", "+00:00")
                )
                earlier = (created - timedelta(seconds=seconds)).astimezone(UTC)
                obj.patch(
                    {"metadata": {"creationTimestamp": earlier.strftime("%Y-%m-%dT%H:%M:%SZ")}}
                )

        self.emu.call(age)

    def table(self) -> str:
        verbs = ("LIST", "POST", "DELETE", "GET log")
        lines = ["pass | " + " | ".join(verbs) + " | total | seconds"]
        for number, (counts, seconds) in enumerate(zip(self.calls, self.seconds, strict=True), 1):
            per_verb = [sum(n for (v, _), n in counts.items() if v == verb) for verb in verbs]
            lines.append(
                f"{number:4d} | "
                + " | ".join(str(n) for n in per_verb)
                + f" | {sum(counts.values())} | {seconds:.2f}"
            )
        return "\n".join(lines)


def run_status(database_url: str) -> str | None:
    rows = query(database_url, "SELECT status FROM dag_run WHERE dag_name = %s", (DAG,))
    return rows[0][0] if rows else None


def task_runs(database_url: str) -> list[tuple[Any, ...]]:
    return query(
        database_url,
        "SELECT task_name, attempt, status, exit_code, error, output_tail, host "
        "FROM task_run ORDER BY id",
    )


def drive_to_completion(driver: Driver, database_url: str) -> int:
    """Pass after pass until the run succeeded; then age the pods and run two more.

    Returns how many passes the run took.
    """
    passes = 0
    while True:
        passes += 1
        driver.one_pass()
        if run_status(database_url) == "succeeded":
            break
        if passes == MAX_PASSES:
            pytest.fail(f"the run did not succeed in {MAX_PASSES} passes:\n{driver.table()}")
        driver.kubelet.sweep()
    # As if the grace had passed since every pod was created.
    driver.age_pods(DEFAULT_GRACE + 5)
    driver.one_pass()
    driver.one_pass()
    return passes


def check_run(database_url: str) -> list[str]:
    """The run succeeded, flaky once after one failure; returns the pod names (hosts)."""
    assert run_status(database_url) == "succeeded"
    rows = task_runs(database_url)
    attempts = sorted((task, attempt, status) for task, attempt, status, *_ in rows)
    assert attempts == sorted(
        [(t, 1, "succeeded") for t in TASKS if t != "flaky.yaml"]
        + [("flaky.yaml", 1, "failed"), ("flaky.yaml", 2, "succeeded")]
    )
    for task, attempt, _, exit_code, error, output_tail, host in rows:
        assert output_tail == f"task {label_value(task)} attempt {attempt}\nbye\n", (task, attempt)
        assert host and host.startswith(f"fan-{label_value(task)}-"), host
        if task == "flaky.yaml" and attempt == 1:
            assert exit_code == 3
            assert error == f"pod {host} failed: Error (exit code 3)"
        else:
            assert (exit_code, error) == (0, None), (task, attempt)
    return sorted(row[6] for row in rows)


def check_calls(driver: Driver, hosts: list[str]) -> None:
    """One POST per attempt, one LIST per namespace per pass at most, one log read per end."""
    emulator = driver.emu.emulator
    posts = emulator.client_requests("CREATE")
    assert sorted(r.data["metadata"]["name"] for r in posts) == hosts
    assert {r.namespace for r in posts} == {NAMESPACE}
    for number, counts in enumerate(driver.calls, 1):
        lists = {ns: n for (verb, ns), n in counts.items() if verb == "LIST"}
        assert set(lists) <= {NAMESPACE, "default"}, (number, counts)
        assert all(n == 1 for n in lists.values()), (number, counts)
    assert all(r.params.get("labelSelector") for r in emulator.client_requests("LIST"))
    logs = [r for r in emulator.client_requests("FETCH") if r.subresource == "log"]
    assert sorted(r.name for r in logs) == hosts


def check_cleanup(driver: Driver, hosts: list[str]) -> None:
    """Every finished pod was deleted, once, and none is left."""
    deletes = sorted(r.name for r in driver.emu.emulator.client_requests("DELETE"))
    assert (deletes, driver.pods()) == (hosts, [])


# --- the real CLI, one process per pass -------------------------------------------------


class CliRun:
    def __init__(self, driver: Driver, database_url: str, passes: int) -> None:
        self.driver, self.database_url, self.passes = driver, database_url, passes


@pytest.fixture(scope="module")
def cli_run(
    tls: tuple[Path, Path],
    tmp_path_factory: pytest.TempPathFactory,
    pg_admin_url: str,
    _admin_connection: Any,
    template_database: str,
) -> Iterator[CliRun]:
    """The whole scenario once, with the CLI; the tests below check its parts."""
    tmp_path = tmp_path_factory.mktemp("e2e")
    name = _create_database(_admin_connection, "test_e2e", template=template_database)
    database_url = libpq_url(pg_admin_url, name)
    try:
        with EmulatorThread(*tls) as emu:
            config = str(write_fan_project(tmp_path / "project"))
            env = {
                **environment_for(database_url),
                "KUBECONFIG": str(emu.write_kubeconfig(tmp_path / "kubeconfig")),
                "WORKFLOWS_DATA_DIR": str(tmp_path / "data"),
            }

            def cli(*args: str) -> None:
                done = workflows(config, *args, env=env, timeout=60)
                assert done.returncode == 0, f"{args}:\n{done.stdout}\n{done.stderr}"

            cli("trigger", DAG)
            kubelet = make_kubelet(emu, tmp_path)
            try:
                driver = Driver(emu, kubelet, lambda: cli("schedule", "kubernetes", "--once"))
                passes = drive_to_completion(driver, database_url)
            finally:
                kubelet.close()
            print(f"\n`schedule kubernetes --once`: succeeded after {passes} passes")
            print(driver.table())
            yield CliRun(driver, database_url, passes)
    finally:
        _drop_database(_admin_connection, name)


@pytest.mark.slow
def test_cli_run_succeeds_after_one_retry(cli_run: CliRun) -> None:
    check_run(cli_run.database_url)
    # One kubelet step between passes: start (3 passes: create, Running, recorded — the
    # recording pass also creates a, b, flaky), then 2 more for them, 2 for flaky's
    # retry, 2 for join; the run ends in the pass that records join.
    assert cli_run.passes == 9


@pytest.mark.slow
def test_cli_api_calls_per_pass(cli_run: CliRun) -> None:
    check_calls(cli_run.driver, check_run(cli_run.database_url))


@pytest.mark.slow
def test_cli_finished_pods_are_deleted(cli_run: CliRun) -> None:
    # A new process lists every namespace the DAGs name, not only those of running rows.
    check_cleanup(cli_run.driver, check_run(cli_run.database_url))


# --- in process: Loop with SchedulerOptions(once=True) ---------------------------------------


@pytest.mark.parametrize(
    "manager_per_pass",
    [
        pytest.param(False, id="one-manager"),
        pytest.param(True, id="manager-per-pass"),
    ],
)
def test_in_process_loop_once(
    emu: EmulatorThread,
    tmp_path: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    manager_per_pass: bool,
) -> None:
    """``one-manager`` keeps one manager across passes, as a long-running scheduler does;
    ``manager-per-pass`` builds one per pass, as each ``--once`` process does (it knows of
    no pod it saw before, yet must still find the last finished pods in ``jobs``)."""
    from workflows_tick import database
    from workflows_tick.config import load_registry
    from workflows_tick.loop import Loop, SchedulerOptions, build_manager
    from workflows_tick.scheduler import trigger_dag

    config = str(write_fan_project(tmp_path / "project"))
    monkeypatch.setenv("KUBECONFIG", str(emu.write_kubeconfig(tmp_path / "kubeconfig")))
    registry = load_registry(config)
    options = SchedulerOptions(config=config, manager="kubernetes", once=True)
    engine = database.make_engine(sqlalchemy_url(database_url), purpose="test")
    kubelet = make_kubelet(emu, tmp_path)
    try:
        trigger_dag(registry.get(DAG), creator="test", engine=engine)
        shared = build_manager("kubernetes", registry, options)

        def run_pass() -> None:
            # Loop.run() ends with manager.shutdown(), which closes the API client;
            # a shared manager reconnects on its next pass and keeps what it saw.
            manager = build_manager("kubernetes", registry, options) if manager_per_pass else shared
            Loop(registry, manager, engine, options).run()

        driver = Driver(emu, kubelet, run_pass)
        passes = drive_to_completion(driver, database_url)
        print(
            f"\nin process ({'manager per pass' if manager_per_pass else 'one manager'}): "
            f"succeeded after {passes} passes\n{driver.table()}"
        )
        hosts = check_run(database_url)
        check_calls(driver, hosts)
        check_cleanup(driver, hosts)
    finally:
        kubelet.close()
        engine.dispose()


def test_cancel_deletes_the_pending_pods_of_the_run_and_records_them_cancelled(
    emu: EmulatorThread, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CronJob-style ``--once`` pass after the cancel (a fresh manager, the kubelet never
    stepped: every pod is still Pending) deletes the run's pods over HTTP."""
    from workflows_tick import database
    from workflows_tick.config import load_registry
    from workflows_tick.loop import Loop, SchedulerOptions, build_manager
    from workflows_tick.scheduler import cancel_run, trigger_dag

    config = str(write_fan_project(tmp_path / "project"))
    monkeypatch.setenv("KUBECONFIG", str(emu.write_kubeconfig(tmp_path / "kubeconfig")))
    registry = load_registry(config)
    options = SchedulerOptions(config=config, manager="kubernetes", once=True)
    engine = database.make_engine(sqlalchemy_url(database_url), purpose="test")
    kubelet = make_kubelet(emu, tmp_path)
    try:
        run = trigger_dag(registry.get(DAG), creator="test", engine=engine)
        driver = Driver(
            emu,
            kubelet,
            lambda: Loop(
                registry, build_manager("kubernetes", registry, options), engine, options
            ).run(),
        )
        driver.one_pass()
        assert len(driver.pods()) == 1  # start.yaml's pod, Pending
        cancel_run(run.id, engine=engine)
        driver.one_pass()

        assert driver.pods() == []
        assert sum(n for (verb, _), n in driver.calls[-1].items() if verb == "DELETE") == 1
        assert task_runs(database_url) and {r[2] for r in task_runs(database_url)} == {"cancelled"}
        assert run_status(database_url) == "cancelled"
    finally:
        kubelet.close()
        engine.dispose()
