"""The DAG model: -o/-b/-e selection, up/downstream, order, cycles, worker_config."""

from __future__ import annotations

from pathlib import Path

import pytest

from workflows_tick import dags
from workflows_tick.errors import UnknownTaskError
from workflows_tick.model import Dag, Task, TaskType, topological_order


def make_dag(edges: dict[str, tuple[str, ...]], **kwargs: object) -> Dag:
    order = topological_order(edges)
    assert all(isinstance(n, str) for n in order)
    tasks = {
        str(n): Task(name=str(n), type=TaskType.NO_OP, path=Path(str(n)), inputs=edges[str(n)])
        for n in order
    }
    return Dag(name="d", path=Path("d"), description="", tasks=tasks, **kwargs)  # type: ignore[arg-type]


CHAIN = make_dag({"a": (), "b": ("a",), "c": ("b",), "d": ("c",), "e": ("d",)})
DIAMOND = make_dag(
    {"start": (), "x": ("start",), "y": ("start",), "z": ("start",), "join": ("x", "y", "z")}
)


def names(tasks: list[Task]) -> list[str]:
    return [t.name for t in tasks]


@pytest.mark.parametrize(
    ("only", "begin", "end", "expected"),
    [
        (None, None, None, ["a", "b", "c", "d", "e"]),
        ("c", None, None, ["c"]),
        (None, "c", None, ["c", "d", "e"]),
        (None, None, "c", ["a", "b", "c"]),
        (None, "b", "d", ["b", "c", "d"]),
        (None, "a", "e", ["a", "b", "c", "d", "e"]),
        (None, "e", None, ["e"]),
        (None, None, "a", ["a"]),
    ],
)
def test_select_on_a_chain(
    only: str | None, begin: str | None, end: str | None, expected: list[str]
) -> None:
    assert names(CHAIN.select(only=only, begin=begin, end=end)) == expected


def test_select_on_a_diamond() -> None:
    assert names(DIAMOND.select(begin="y")) == ["y", "join"]
    assert names(DIAMOND.select(end="y")) == ["start", "y"]
    assert names(DIAMOND.select(end="join")) == ["start", "x", "y", "z", "join"]
    assert DIAMOND.downstream("start") == {"start", "x", "y", "z", "join"}
    assert DIAMOND.upstream("join") == {"start", "x", "y", "z", "join"}


@pytest.mark.parametrize("kwargs", [{"only": "nope"}, {"begin": "nope"}, {"end": "nope"}])
def test_select_unknown_task(kwargs: dict[str, str]) -> None:
    with pytest.raises(UnknownTaskError, match="has no task 'nope'; its tasks: a, b, c, d, e"):
        CHAIN.select(**kwargs)


def test_topological_order_breaks_ties_by_name() -> None:
    assert topological_order({"b": (), "a": (), "c": ("b", "a")}) == ["a", "b", "c"]


def test_topological_order_names_a_cycle() -> None:
    assert topological_order({"a": ("c",), "b": ("a",), "c": ("b",), "x": ()}) == [
        ["a", "c", "b", "a"]
    ]
    assert topological_order({"a": ("a",)}) == [["a", "a"]]


def test_attempts_and_retry_delay() -> None:
    dag = make_dag({"a": ()}, retries=3, retry_delay=5.0)
    task = dag.task("a")
    assert dag.max_attempts(task) == 4
    assert dag.retry_delay_of(task) == 5.0
    custom = Task(name="t", type=TaskType.NO_OP, path=Path("t"), retries=0, retry_delay=1.0)
    assert dag.max_attempts(custom) == 1
    assert dag.retry_delay_of(custom) == 1.0


def test_worker_config_layers_merge(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "workflow.yaml").write_text(
        "description: d\nworker_config: {kube_image: dag, kube_env: {A: '1'}}\n"
    )
    (tmp_path / "d" / "t.yaml").write_text("worker_config: {kube_env: {B: '2'}}\n")
    registry = dags.register_directory(tmp_path)
    registry.worker_config = {"kube_image": "base", "kube_namespace": "ns", "kube_env": {"C": "3"}}
    dag = registry.get("d")
    assert registry.worker_config_for(dag, dag.task("t.yaml")) == {
        "kube_image": "dag",
        "kube_namespace": "ns",
        "kube_env": {"A": "1", "B": "2", "C": "3"},
    }


def test_register_directory_skips_hidden_and_pycache(tmp_path: Path) -> None:
    for name in ("good", ".hidden", "__pycache__", "no_workflow"):
        (tmp_path / name).mkdir()
    for name in ("good", ".hidden", "__pycache__"):
        (tmp_path / name / "workflow.yaml").write_text("description: x\n")
    registry = dags.register_directory(tmp_path)
    assert registry.names() == ["good"]
    assert "good" in registry
    assert len(registry) == 1


def test_an_empty_begin_end_selection_is_a_usage_error() -> None:
    from workflows_tick.errors import UsageError

    with pytest.raises(UsageError, match="both downstream of 'd' and upstream of 'b'"):
        CHAIN.select(begin="d", end="b")
