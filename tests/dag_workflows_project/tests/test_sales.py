import pytest
from config import DAGS


def test_totals_sum_the_orders(workflows):
    task = DAGS["sales"].get_task("totals.yaml")
    workflows.setup_task_inputs(task, {"orders": [{"id": 1, "amount": 2}, {"id": 2, "amount": 3}]})
    assert workflows.execute_task(task) == {"totals": [{"total": 5}]}


def test_the_whole_dag_runs(workflows):
    workflows.execute_dag(DAGS["sales"])
    assert workflows.execute_sql("SELECT total FROM totals") == [(12,)]


def test_each_test_starts_without_the_tables_of_the_others(workflows):
    assert workflows.execute_sql("SELECT to_regclass('totals'), to_regclass('orders')") == [
        (None, None)
    ]


def test_a_failing_task_raises_and_keeps_what_the_test_set_up(workflows):
    task = DAGS["sales"].get_task("totals.yaml")
    workflows.setup_task_inputs(task, {"orders": [{"id": 1, "amount": -4}]})
    with pytest.raises(workflows.TaskFailed, match="validation query"):
        workflows.execute_task(task)
    assert workflows.execute_sql("SELECT count(*) FROM orders") == [(1,)]
