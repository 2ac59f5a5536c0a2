"""Inputs on other DAGs (``other_dag:task``): a task run waits until the upstream
DAG's latest due run has produced the task, on a real PostgreSQL with a settable clock."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine, event

from tests.support import passes_at_once, rows, write_project
from workflows_tick.dags import DagRegistry
from workflows_tick.managers.base import Launch
from workflows_tick.scheduler import cancel_run, rerun_run, trigger_dag
from workflows_tick.testing import FakeClock, InstantManager
from workflows_tick.tick import Ticker

HOURLY = "schedule: '0 * * * *'\n"


def project(tmp_path: Path, up: str = HOURLY, down: str = "", x_spec: str = "") -> DagRegistry:
    """``up`` (task ``t.yaml``, no retries) and ``down`` (``x.yaml`` reads ``up:t.yaml``)."""
    return write_project(
        tmp_path,
        {
            "up": {
                "workflow.yaml": f"description: up\nretries: 0\n{up}",
                "t.yaml": "type: no_op\n",
            },
            "down": {
                "workflow.yaml": f"description: down\n{down}",
                "x.yaml": f"type: no_op\ninputs: ['up:t.yaml']\n{x_spec}",
            },
        },
    )


class Upstream:
    """The outcome of ``up``'s attempts: held running, failed or succeeded."""

    def __init__(self) -> None:
        self.state: bool | None = True

    def __call__(self, launch: Launch) -> bool | None:
        return self.state if launch.dag.name == "up" else True


def ticker(
    engine: Engine,
    registry: DagRegistry,
    clock: FakeClock,
    outcome: Callable[[Launch], bool | None],
) -> tuple[Ticker, InstantManager]:
    manager = InstantManager(outcome=outcome, clock=clock)
    return Ticker(registry, manager, engine, "config.py", clock=clock), manager


def settle(t: Ticker, limit: int = 50) -> None:
    for _ in range(limit):
        if not t.run_pass().did_work:
            return
    raise AssertionError("no quiescence")


def x_runs(engine: Engine) -> list[tuple[int, str, list[str] | None]]:
    return rows(
        engine,
        "SELECT t.attempt, t.status, t.waiting_for FROM task_run t "
        "JOIN dag_run r ON r.id = t.dag_run_id WHERE r.dag_name = 'down' ORDER BY t.id",
    )


def started_x(manager: InstantManager) -> list[tuple[str, str, int]]:
    return [ran for ran in manager.ran() if ran[0] == "down"]


def test_a_task_waits_for_its_input_on_another_dag_then_starts_when_it_succeeds(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    upstream = Upstream()
    upstream.state = None  # up's t.yaml runs until told otherwise
    t, manager = ticker(engine, project(tmp_path, down=HOURLY), clock, upstream)
    t.run_pass()
    clock.advance(minutes=59, seconds=30)  # 13:00: both DAGs fire
    settle(t)
    assert x_runs(engine) == [(1, "waiting", ["up:t.yaml"])]
    assert started_x(manager) == []

    upstream.state = True
    result = t.run_pass()  # records up's success, and lets x start in the same pass

    assert result.inputs_ready == 1
    assert started_x(manager) == [("down", "x.yaml", 1)]
    settle(t)
    assert x_runs(engine) == [(1, "succeeded", None)]
    assert rows(engine, "SELECT dag_name, status FROM dag_run ORDER BY dag_name") == [
        ("down", "succeeded"),
        ("up", "succeeded"),
    ]


def test_an_upstream_success_older_than_its_latest_due_run_does_not_count(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    upstream = Upstream()
    t, manager = ticker(engine, project(tmp_path, down=HOURLY), clock, upstream)
    t.run_pass()
    clock.advance(minutes=59, seconds=30)  # 13:00: up succeeds, and so does down
    settle(t)
    upstream.state = False
    clock.advance(hours=1)  # 14:00: up's t.yaml fails
    settle(t)

    assert x_runs(engine) == [(1, "succeeded", None), (1, "waiting", ["up:t.yaml"])]
    assert started_x(manager) == [("down", "x.yaml", 1)]


def test_an_upstream_success_in_a_later_run_does_not_count(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    upstream = Upstream()
    upstream.state = False
    reg = project(tmp_path)  # down has no schedule: a manual run
    t, manager = ticker(engine, reg, clock, upstream)
    t.run_pass()
    clock.advance(minutes=59, seconds=30)  # 13:00: up's t.yaml fails
    settle(t)
    clock.advance(minutes=30)
    trigger_dag("down", creator="test", engine=engine, clock=clock)  # anchored at 13:30
    settle(t)
    assert x_runs(engine) == [(1, "waiting", ["up:t.yaml"])]

    upstream.state = True
    clock.advance(minutes=30)  # 14:00: up succeeds, in a run anchored after 13:30
    settle(t)

    assert rows(engine, "SELECT status FROM dag_run WHERE dag_name = 'up' ORDER BY id") == [
        ("failed",),
        ("succeeded",),
    ]
    assert x_runs(engine) == [(1, "waiting", ["up:t.yaml"])]
    assert started_x(manager) == []


def test_a_manual_run_finds_its_input_by_its_creation_time(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    upstream = Upstream()
    reg = project(tmp_path)
    t, manager = ticker(engine, reg, clock, upstream)
    t.run_pass()
    clock.advance(minutes=59, seconds=30)  # 13:00: up succeeds
    settle(t)
    clock.advance(minutes=40)  # 13:40: up's 13:00 run is its latest due run
    trigger_dag("down", creator="test", engine=engine, clock=clock)

    settle(t)

    assert x_runs(engine) == [(1, "succeeded", None)]
    assert started_x(manager) == [("down", "x.yaml", 1)]


def test_input_timeout_fails_the_task_run_with_where_it_looked_and_no_retry(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    upstream = Upstream()
    upstream.state = False
    # retries: 2 for down, which a task failed for want of inputs does not use.
    reg = project(tmp_path, down=f"{HOURLY}retries: 2\n", x_spec="input_timeout: 600\n")
    t, manager = ticker(engine, reg, clock, upstream)
    t.run_pass()
    clock.advance(minutes=59, seconds=30)  # 13:00: up fails, x waits
    settle(t)
    clock.advance(seconds=599)
    settle(t)
    assert x_runs(engine) == [(1, "waiting", ["up:t.yaml"])]

    clock.advance(seconds=1)  # 13:10: 600 s since x's task run was created
    result = t.run_pass()
    settle(t)

    assert result.inputs_timed_out == 1
    assert x_runs(engine) == [(1, "failed", ["up:t.yaml"])]
    assert rows(engine, "SELECT t.error FROM task_run t WHERE t.task_name = 'x.yaml'") == [
        (
            "input up:t.yaml not ready after 600 s: no run of up from 2024-01-01 13:00:00 UTC "
            "to 2024-01-01 13:00:00 UTC has it succeeded",
        )
    ]
    assert rows(engine, "SELECT status, message FROM dag_run WHERE dag_name = 'down'") == [
        ("failed", "failed: x.yaml (inputs on other DAGs not ready)")
    ]
    assert started_x(manager) == []


def test_a_dag_level_input_timeout_applies_to_its_tasks(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    upstream = Upstream()
    upstream.state = False
    reg = project(tmp_path, up="", down="input_timeout: 60\n")  # up has no schedule
    t, _ = ticker(engine, reg, clock, upstream)
    trigger_dag("down", creator="test", engine=engine, clock=clock)  # 12:00:30
    settle(t)
    clock.advance(seconds=59)
    settle(t)
    assert x_runs(engine) == [(1, "waiting", ["up:t.yaml"])]

    clock.advance(seconds=1)
    settle(t)

    assert x_runs(engine) == [(1, "failed", ["up:t.yaml"])]
    assert rows(engine, "SELECT error FROM task_run") == [
        (
            "input up:t.yaml not ready after 60 s: no run of up at or before "
            "2024-01-01 12:00:30 UTC has it succeeded",
        )
    ]


def test_without_an_upstream_schedule_any_earlier_run_counts_and_no_later_one(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    upstream = Upstream()
    reg = project(tmp_path, up="")  # neither DAG has a schedule
    t, manager = ticker(engine, reg, clock, upstream)
    early = trigger_dag("down", creator="test", engine=engine, clock=clock)  # 12:00:30
    clock.advance(minutes=10)
    trigger_dag("up", creator="test", engine=engine, clock=clock)  # 12:10:30: after `early`
    settle(t)
    assert x_runs(engine) == [(1, "waiting", ["up:t.yaml"])]

    cancel_run(early.id, engine=engine, clock=clock)  # it would hold down's later runs
    clock.advance(days=3)
    later = trigger_dag("down", creator="test", engine=engine, clock=clock)
    settle(t)

    assert rows(
        engine,
        "SELECT r.id, t.status FROM task_run t JOIN dag_run r ON r.id = t.dag_run_id "
        "WHERE r.dag_name = 'down' ORDER BY r.id",
    ) == [(early.id, "cancelled"), (later.id, "succeeded")]
    assert started_x(manager) == [("down", "x.yaml", 1)]


def test_a_rerun_of_the_upstream_run_satisfies_the_wait(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    upstream = Upstream()
    upstream.state = False
    t, _ = ticker(engine, project(tmp_path, down=HOURLY), clock, upstream)
    t.run_pass()
    clock.advance(minutes=59, seconds=30)  # 13:00: up fails, x waits
    settle(t)
    (up_run,) = rows(engine, "SELECT id FROM dag_run WHERE dag_name = 'up'")

    upstream.state = True
    rerun_run(up_run[0], engine=engine, clock=clock)
    settle(t)

    assert x_runs(engine) == [(1, "succeeded", None)]


def test_two_schedulers_never_start_a_waiting_task_early_or_twice(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    upstream = Upstream()
    upstream.state = None
    reg = project(tmp_path, down=HOURLY)
    pairs = [ticker(engine, reg, clock, upstream) for _ in range(2)]
    pairs[0][0].run_pass()
    clock.advance(minutes=59, seconds=30)

    for _ in range(5):
        passes_at_once(tk for tk, _ in pairs)
    assert [started_x(m) for _, m in pairs] == [[], []]
    upstream.state = True
    for _ in range(10):
        passes_at_once(tk for tk, _ in pairs)

    assert sum(len(started_x(m)) for _, m in pairs) == 1
    assert x_runs(engine) == [(1, "succeeded", None)]


def test_an_edit_removing_the_input_releases_the_waiting_task_run(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    upstream = Upstream()
    upstream.state = False
    reg = project(tmp_path, up="")
    t, manager = ticker(engine, reg, clock, upstream)
    trigger_dag("down", creator="test", engine=engine, clock=clock)
    settle(t)
    assert x_runs(engine) == [(1, "waiting", ["up:t.yaml"])]

    (tmp_path / "down" / "x.yaml").write_text("type: no_op\n")
    t.reload_dags()  # no loaded DAG has inputs on another one now
    settle(t)

    assert x_runs(engine) == [(1, "succeeded", None)]
    assert started_x(manager) == [("down", "x.yaml", 1)]


def waits_probes(engine: Engine, t: Ticker) -> int:
    """How many statements of one pass look for task runs waiting on other DAGs."""
    statements: list[str] = []

    def log(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(engine, "before_cursor_execute", log)
    try:
        t.run_pass()
    finally:
        event.remove(engine, "before_cursor_execute", log)
    return sum("waiting_for IS NOT NULL" in s for s in statements)


def test_the_pass_looks_for_waits_only_when_a_dag_has_inputs_on_another(
    engine: Engine, tmp_path: Path, clock: FakeClock
) -> None:
    reg = write_project(
        tmp_path / "plain",
        {"a": {"workflow.yaml": "description: a\n", "t.yaml": "type: no_op\n"}},
    )
    plain, _ = ticker(engine, reg, clock, Upstream())
    # Once after loading (waits an edit may have orphaned), then never again.
    assert [waits_probes(engine, plain) for _ in range(3)] == [1, 0, 0]
    plain.reload_dags()
    assert [waits_probes(engine, plain) for _ in range(2)] == [1, 0]

    cross, _ = ticker(engine, project(tmp_path / "cross"), clock, Upstream())
    assert [waits_probes(engine, cross) for _ in range(3)] == [1, 1, 1]
