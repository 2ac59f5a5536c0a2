"""The runner's sql and python tasks, and output checks, on a real PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import psycopg2
import pytest

from tests.support import query, write_dag
from workflows_tick import model
from workflows_tick.errors import TaskFailed
from workflows_tick.runner import run_tasks


def run(dag: model.Dag, url: str, *names: str) -> None:
    tasks = [dag.task(n) for n in names] if names else list(dag.tasks.values())
    run_tasks(dag, tasks, {"DATABASE_URL": url})


def exists(url: str, table: str) -> bool:
    return bool(query(url, f"SELECT to_regclass('{table}') IS NOT NULL")[0][0])


HEADER = "/*\nparameters: [DATABASE_URL]\n{extra}*/\n"


def sql_task(body: str, extra: str = "") -> str:
    return HEADER.format(extra=extra) + body


OUTPUT = """outputs:
  - type: table
    name: things
    columns:
      - {name: id, datatype: int4, nullable: false}
      - {name: label, datatype: varchar}
      - {name: at, datatype: timestamptz, nullable: true}
    validation_queries:
      - SELECT id FROM things WHERE id < 0
"""


def test_sql_tasks_run_in_order_and_commit(tmp_path: Path, database_url: str) -> None:
    dag = write_dag(
        tmp_path,
        {
            "a.sql": sql_task(
                "CREATE TABLE things (id int NOT NULL, label varchar(5), at timestamptz);"
            ),
            "b.sql": sql_task(
                "INSERT INTO things (id, label) VALUES (1, 'x'), (2, '50%');\n/* kept */",
                "inputs: [a.sql]\n" + OUTPUT,
            ),
        },
    )
    run(dag, database_url)
    assert query(database_url, "SELECT id, label FROM things ORDER BY id") == [(1, "x"), (2, "50%")]


def test_failed_validation_query_rolls_back(tmp_path: Path, database_url: str) -> None:
    dag = write_dag(
        tmp_path,
        {
            "a.sql": sql_task(
                "CREATE TABLE things (id int NOT NULL, label text, at timestamptz);\n"
                "INSERT INTO things VALUES (-1, 'bad', now()), (-2, 'worse', now());",
                OUTPUT.replace("varchar", "text"),
            )
        },
    )
    with pytest.raises(
        TaskFailed,
        match=r"validation query 'SELECT id FROM things WHERE id < 0' returned rows: \(-1,\); \(-2,\)",
    ):
        run(dag, database_url)
    assert not exists(database_url, "things")


@pytest.mark.parametrize(
    ("ddl", "expected"),
    [
        ("SELECT 1", "output table 'things': does not exist"),
        ("CREATE TABLE things (id int NOT NULL, at timestamptz)", "has no column 'label'"),
        (
            "CREATE TABLE things (id bigint NOT NULL, label varchar, at timestamptz)",
            "column 'id' is bigint, not int4",
        ),
        (
            "CREATE TABLE things (id int, label varchar, at timestamptz)",
            "column 'id' is nullable, expected NOT NULL",
        ),
        (
            "CREATE TABLE things (id int NOT NULL, label varchar, at timestamp)",
            "is timestamp without time zone, not timestamptz",
        ),
    ],
)
def test_a_table_unlike_its_declared_output_fails_the_task_and_rolls_back(
    tmp_path: Path, database_url: str, ddl: str, expected: str
) -> None:
    dag = write_dag(tmp_path, {"a.sql": sql_task(ddl + ";", OUTPUT)})
    with pytest.raises(TaskFailed, match=expected.replace("(", r"\(").replace(")", r"\)")):
        run(dag, database_url)
    assert not exists(database_url, "things")


def test_sql_error_is_one_line_and_rolls_back(tmp_path: Path, database_url: str) -> None:
    dag = write_dag(tmp_path, {"a.sql": sql_task("CREATE TABLE t1 (id int);\nSELEC 1;")})
    with pytest.raises(TaskFailed) as info:
        run(dag, database_url)
    assert 'SyntaxError: ERROR:  syntax error at or near "SELEC"' in str(info.value)
    assert "\n" not in str(info.value)
    assert not exists(database_url, "t1")


def test_sql_statement_timeout(tmp_path: Path, database_url: str) -> None:
    dag = write_dag(tmp_path, {"a.sql": sql_task("SELECT pg_sleep(10);", "timeout: 0.2\n")})
    with pytest.raises(TaskFailed, match="statement timeout"):
        run(dag, database_url)


def test_python_task_with_connection(tmp_path: Path, database_url: str) -> None:
    good = '''"""
parameters: [DATABASE_URL]
outputs: [{type: table, name: py_made, columns: [{name: n, datatype: integer}]}]
"""


def run(context):
    assert set(context) == {"DATABASE_URL", "conn"}
    with context["conn"].cursor() as cur:
        cur.execute("CREATE TABLE py_made (n integer)")
        cur.execute("INSERT INTO py_made VALUES (1)")
'''
    bad = '''"""
parameters: [DATABASE_URL]
"""


def run(context):
    with context["conn"].cursor() as cur:
        cur.execute("CREATE TABLE py_broken (n integer)")
    raise RuntimeError("after the DDL")
'''
    dag = write_dag(tmp_path, {"good.py": good, "bad.py": bad})
    run(dag, database_url, "good.py")
    assert query(database_url, "SELECT n FROM py_made") == [(1,)]
    with pytest.raises(TaskFailed, match="RuntimeError: after the DDL"):
        run(dag, database_url, "bad.py")
    assert not exists(database_url, "py_broken")


def test_shell_outputs_are_checked_on_a_fresh_connection(tmp_path: Path, database_url: str) -> None:
    dag = write_dag(
        tmp_path,
        {
            "a.sh": "# parameters: [DATABASE_URL]\n# outputs: [{type: table, name: from_shell}]\ntrue\n"
        },
    )
    with pytest.raises(TaskFailed, match="output table 'from_shell': does not exist"):
        run(dag, database_url)
    conn = psycopg2.connect(database_url)
    with conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE from_shell (x int)")
    conn.close()
    run(dag, database_url)


def test_connection_errors_never_show_the_password(tmp_path: Path) -> None:
    dag = write_dag(tmp_path, {"a.sql": sql_task("SELECT 1;")})
    url = "postgresql://someone:hunter2secret@127.0.0.1:1/nowhere?connect_timeout=2"
    with pytest.raises(TaskFailed) as info:
        run(dag, url)
    assert "cannot connect" in str(info.value)
    assert "hunter2secret" not in str(info.value)


def test_a_malformed_database_url_never_shows_its_password(tmp_path: Path) -> None:
    dag = write_dag(tmp_path, {"a.sql": sql_task("SELECT 1;")})
    with pytest.raises(TaskFailed) as info:
        run(dag, "postgres//someone:hunter2secret@h/db")
    assert "hunter2secret" not in str(info.value)


def test_a_timeout_over_the_server_limit_in_milliseconds_still_runs(
    tmp_path: Path, database_url: str
) -> None:
    # 2,600,000 s is 2.6e9 ms, more than PostgreSQL's statement_timeout accepts
    # (2^31 - 1 ms); the loader takes it (under a year), so the runner must too.
    dag = write_dag(
        tmp_path, {"a.sql": sql_task("CREATE TABLE ran (x int);", "timeout: 2600000\n")}
    )
    assert dag.task("a.sql").timeout == 2600000
    run(dag, database_url)
    assert exists(database_url, "ran")
