"""Every broken DAG in tests/broken_dags/project gives one clear line; good ones load."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.support import add_runtime_broken_dags
from workflows_tick import dags
from workflows_tick.errors import DagLoadError
from workflows_tick.model import Dag

CORPUS = Path(__file__).parent.parent / "broken_dags" / "project"

GOOD = (
    "good_chain",
    "good_other",
    "good_outputs_implied_database_url",
    "good_sql_implied_database_url",
    "mutual_a",
    "mutual_b",
)

# DAG folder -> (file named in the message, expected substring)
EXPECTED: dict[str, tuple[str, str]] = {
    "yaml_error_workflow": ("workflow.yaml", "line 2: YAML syntax error"),
    "yaml_error_sql_header": ("bad.sql", "line 4: YAML syntax error"),
    "yaml_error_py_docstring": ("bad.py", "line 3: YAML syntax error"),
    "yaml_error_sh_header": ("bad.sh", "line 3: YAML syntax error"),
    "yaml_error_task_yaml": ("bad.yaml", "line 2: YAML syntax error"),
    "cron_bad_minute": ("workflow.yaml", "key 'schedule': '61 * * * *' is not a valid cron"),
    "cron_six_fields": ("workflow.yaml", "has 6 fields; expected 5"),
    "cron_reboot": ("workflow.yaml", "'@reboot' is not a cron nickname; use 5 fields"),
    "cron_wrong_type": ("workflow.yaml", "key 'schedule': expected a cron expression string"),
    "timezone_unknown": ("workflow.yaml", "key 'timezone': unknown time zone 'Mars/Olympus_Mons'"),
    "timezone_wrong_type": ("workflow.yaml", "key 'timezone': expected an IANA time zone name"),
    "cycle": ("a.yaml", "inputs form a cycle: a.yaml -> c.yaml -> b.yaml -> a.yaml"),
    "self_input": ("a.yaml", "the task lists itself as an input"),
    "unknown_input": ("b.yaml", "key 'inputs': unknown input(s) 'nope.sql'"),
    "cross_dag_unknown_dag": ("a.yaml", "input 'nowhere:x.sql': no DAG 'nowhere'"),
    "cross_dag_unknown_task": ("a.yaml", "DAG 'good_other' has no task 'missing.sql'"),
    "cross_dag_broken_dag": (
        "a.yaml",
        "input 'cycle:zzz.yaml': DAG 'cycle' has no task 'zzz.yaml'",
    ),
    "missing_description": ("workflow.yaml", "key 'description': is required"),
    "description_wrong_type": ("workflow.yaml", "key 'description': expected a non-empty string"),
    "workflow_unknown_key": ("workflow.yaml", "key 'schedul': unknown key 'schedul'"),
    "workflow_not_mapping": ("workflow.yaml", "expected a YAML mapping of keys, got a list"),
    "retries_negative": ("workflow.yaml", "key 'retries': expected an integer >= 0"),
    "retries_float": ("workflow.yaml", "key 'retries': expected an integer >= 0, got a number"),
    "retry_delay_negative": ("workflow.yaml", "key 'retry_delay': expected a number of seconds"),
    "worker_config_not_mapping": ("workflow.yaml", "key 'worker_config': expected a mapping"),
    "task_unknown_key": ("a.yaml", "key 'input': unknown key 'input'"),
    "task_retries_string": ("a.yaml", "key 'retries': expected an integer >= 0, got a string"),
    "task_timeout_zero": ("a.sh", "key 'timeout': expected a number of seconds > 0"),
    "task_retry_delay_bool": (
        "a.yaml",
        "key 'retry_delay': expected a number of seconds >= 0, got a boolean",
    ),
    "task_description_number": ("a.yaml", "key 'description': expected a non-empty string"),
    "task_worker_config_string": ("a.yaml", "key 'worker_config': expected a mapping"),
    "inputs_not_list": ("b.yaml", "key 'inputs': expected a list of strings, got a string"),
    "parameters_bad_name": ("a.sh", "'1BAD-NAME' is not an environment variable name"),
    "parameters_not_list": ("a.sh", "key 'parameters': expected a list of strings"),
    "type_mismatch": ("a.sql", "type 'python' contradicts the file extension '.sql'"),
    "type_unknown": ("a.yaml", "unknown task type 'spark'"),
    "type_wrong_type": ("a.yaml", "key 'type': expected a string"),
    "py_missing_run": ("a.py", "defines no top-level run(context) function"),
    "py_syntax_error": ("a.py", "line 6: Python syntax error"),
    "py_async_run": ("a.py", "run must be a plain function, not async def"),
    "sql_yaml_without_sql": ("a.yaml", "key 'sql': a .yaml task of type 'sql' needs its SQL"),
    "type_big_query": ("a.sql", "key 'type': BigQuery tasks are not supported"),
    "sql_header_unclosed": ("a.sql", "line 2: the /* header comment is never closed"),
    "sql_empty_body": ("a.sql", "the sql task has no SQL after its header"),
    "sql_header_not_mapping": ("a.sql", "line 1: the header must be a YAML mapping"),
    "outputs_bad_type": ("a.sql", "key 'outputs[0]': 'type' must be 'table'"),
    "outputs_not_list": ("a.sql", "key 'outputs': expected a list of outputs"),
    "outputs_bad_nullable": ("a.sql", "'nullable' must be true or false"),
    "outputs_unknown_key": ("a.sql", "key 'outputs[0]': unknown key 'checks'"),
    "binary_junk": ("a.sql", "holds NUL bytes"),
    "non_utf8": ("a.yaml", "line 1: is not valid UTF-8"),
    "non_utf8_workflow": ("workflow.yaml", "line 1: is not valid UTF-8"),
    "case_duplicate": ("load.yaml", "differ only in case"),
    "task_is_directory": ("sub.sql", "is a directory, not a file"),
}

# Cases that git cannot hold (modes, links, special files, size): made at test time.
RUNTIME: dict[str, tuple[str, str]] = {
    "huge_file": ("big.sql", "is too large"),
    "symlink_loop": ("loop.sql", "is a symlink that cannot be followed"),
    "dangling_symlink": ("gone.yaml", "is a symlink that cannot be followed"),
    "fifo": ("pipe.sh", "is not a regular file"),
    "unreadable": ("secret.yaml", "cannot be read"),
}


def _add_runtime_cases(root: Path) -> None:
    add_runtime_broken_dags(root)
    (root / "unreadable").mkdir()
    (root / "unreadable" / "workflow.yaml").write_text("description: unreadable\n")
    secret = root / "unreadable" / "secret.yaml"
    secret.write_text("description: hidden\n")
    secret.chmod(0)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> dags.DagRegistry:
    root = tmp_path_factory.mktemp("corpus") / "project"
    shutil.copytree(CORPUS, root, symlinks=True)
    _add_runtime_cases(root)
    return dags.register_directory(root)


def test_corpus_is_large_enough() -> None:
    assert len(EXPECTED) + len(RUNTIME) >= 32


def test_every_corpus_folder_has_an_expectation() -> None:
    folders = {p.parent.name for p in CORPUS.glob("*/workflow.yaml")}
    assert folders == set(EXPECTED) | set(GOOD)


@pytest.mark.parametrize("name", sorted(EXPECTED) + sorted(RUNTIME))
def test_broken_dag_gives_one_clear_line(registry: dags.DagRegistry, name: str) -> None:
    if name == "unreadable" and os.geteuid() == 0:
        pytest.skip("root reads files whatever their mode")
    filename, expected = {**EXPECTED, **RUNTIME}[name]
    result = registry.load(name)
    assert isinstance(result, DagLoadError)
    message = str(result)
    assert "\n" not in message
    assert expected in message
    assert f"{registry.root / name / filename}:" in message
    assert result.path == str(registry.root / name / filename)
    with pytest.raises(DagLoadError):
        registry.get(name)


@pytest.mark.parametrize("name", GOOD)
def test_good_dags_load_next_to_broken_ones(registry: dags.DagRegistry, name: str) -> None:
    assert isinstance(registry.load(name), Dag)


def test_mutual_cross_dag_inputs_load(registry: dags.DagRegistry) -> None:
    a, b = registry.get("mutual_a"), registry.get("mutual_b")
    assert [i.task for i in a.task("a1.yaml").external_inputs] == ["b1.yaml"]
    assert [i.dag for i in b.task("b2.yaml").external_inputs] == ["mutual_a"]


def test_errors_and_dags_split_the_registry(registry: dags.DagRegistry) -> None:
    good = set(GOOD) | ({"unreadable"} if os.geteuid() == 0 else set())
    assert {d.name for d in registry.dags()} == good
    assert len(registry.errors()) == len(registry) - len(good)
