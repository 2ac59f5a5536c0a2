"""``workflows <config> run / validate / list`` as users run them: the real command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import environment_for
from tests.support import workflows, write_project

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "config.py"
CORPUS = REPO / "tests" / "broken_dags" / "project"


def one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("workflows:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_validate_examples() -> None:
    result = workflows(EXAMPLES, "validate")
    assert result.returncode == 0, result.stderr
    assert "all valid" in result.stdout
    assert "hello: 4 tasks, schedule '*/5 * * * *' (Europe/Paris), next " in result.stdout


def test_list_examples() -> None:
    result = workflows(EXAMPLES, "list")
    assert result.returncode == 0, result.stderr
    names = [line.split(":")[0] for line in result.stdout.splitlines()]
    assert names == ["fan_out", "flaky_fails", "greeting", "hello", "warehouse"]


@pytest.mark.parametrize(
    ("dag", "expected"),
    [
        ("hello", ["hello from say_hello.sh", "the sentence has 4 words"]),
        ("fan_out", ["branch a", "branch b", "branch c", "all branches done"]),
    ],
)
def test_run_examples_without_a_database(dag: str, expected: list[str]) -> None:
    result = workflows(EXAMPLES, "run", dag)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == expected


def test_run_example_with_a_parameter() -> None:
    result = workflows(EXAMPLES, "run", "greeting", env={**os.environ, "GREETING_NAME": "Ada"})
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello, Ada!\n"
    line = one_line_error(workflows(EXAMPLES, "run", "greeting"), 2)
    assert line == (
        "workflows: task greeting/greet.py needs environment variable(s) GREETING_NAME, "
        "which are not set"
    )


def test_failing_example_stops_at_the_failure() -> None:
    result = workflows(EXAMPLES, "run", "flaky_fails")
    line = one_line_error(result, 1)
    assert line == "workflows: task flaky_fails/fails.sh failed: exit code 3"
    assert "about to fail" in result.stderr
    assert "never_runs.yaml" not in result.stderr


def test_warehouse_example(database_url: str) -> None:
    result = workflows(EXAMPLES, "run", "warehouse", env=environment_for(database_url))
    assert result.returncode == 0, result.stderr
    again = workflows(EXAMPLES, "run", "warehouse", env=environment_for(database_url))
    assert again.returncode == 0, again.stderr


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("chain")
    (root / "config.py").write_text(
        "import os\nfrom workflows_tick import dags\n"
        "DAGS = dags.register_directory(os.path.dirname(__file__))\n"
    )
    folder = root / "chain"
    folder.mkdir()
    (folder / "workflow.yaml").write_text("description: five tasks in a row\n")
    previous = None
    for name in ("a", "b", "c", "d", "e"):
        inputs = f"# inputs: [{previous}]\n" if previous else ""
        (folder / f"{name}.sh").write_text(f'# parameters: [OUT]\n{inputs}echo {name} >> "$OUT"\n')
        previous = f"{name}.sh"
    return root


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ([], "abcde"),
        (["-o", "c.sh"], "c"),
        (["-b", "c.sh"], "cde"),
        (["-e", "c.sh"], "abc"),
        (["-b", "b.sh", "-e", "d.sh"], "bcd"),
    ],
)
def test_run_selects_tasks(chain: Path, tmp_path: Path, options: list[str], expected: str) -> None:
    out = tmp_path / "out.txt"
    result = workflows(
        chain / "config.py", "run", "chain", *options, env={**os.environ, "OUT": str(out)}
    )
    assert result.returncode == 0, result.stderr
    assert out.read_text().split() == list(expected)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["run", "nope"],
            "workflows: unknown DAG 'nope'; known DAGs: fan_out, flaky_fails, greeting, hello, warehouse",
        ),
        (
            ["run", "hello", "-o", "nope.sh"],
            "workflows: DAG 'hello' has no task 'nope.sh'; its tasks: ",
        ),
        (["run", "hello", "-b", "nope.sh"], "workflows: DAG 'hello' has no task 'nope.sh'"),
        (
            ["run", "hello", "-o", "begin.yaml", "-e", "finish.yaml"],
            "workflows: -o cannot be combined with -b or -e",
        ),
    ],
)
def test_user_mistakes_on_the_examples(args: list[str], expected: str) -> None:
    assert one_line_error(workflows(EXAMPLES, *args), 2).startswith(expected)


def test_a_missing_or_empty_config_is_one_line(tmp_path: Path) -> None:
    line = one_line_error(workflows(tmp_path / "missing.py", "validate"), 2)
    assert "no such config file" in line
    (tmp_path / "nodags.py").write_text("X = 1\n")
    line = one_line_error(workflows(tmp_path / "nodags.py", "list"), 2)
    assert "defines no DAGS" in line
    line = one_line_error(workflows("no_such_module_anywhere", "list", cwd=tmp_path), 2)
    assert "no such config module" in line


@pytest.mark.parametrize("command", [["list"], ["run", "d"]])
def test_a_failing_config_is_one_line_without_the_database_password(
    tmp_path: Path, command: list[str]
) -> None:
    (tmp_path / "config.py").write_text(
        "import os\nraise RuntimeError('cannot reach ' + os.environ['DATABASE_URL'])\n"
    )
    env = environment_for("postgresql://u:hunter22@127.0.0.1:1/db")
    result = workflows("config.py", *command, env=env, cwd=tmp_path)
    line = one_line_error(result, 2)
    assert line.startswith("workflows: config.py: importing the config failed")
    assert "hunter22" not in result.stderr


def test_a_config_error_over_several_lines_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "config.py").write_text("raise RuntimeError('first\\nsecond')\n")
    result = workflows("config.py", "list", cwd=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1, result.stderr


def test_validate_reports_every_problem_of_the_corpus() -> None:
    result = workflows(CORPUS / "config.py", "validate")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    names = {p.parent.name for p in CORPUS.glob("*/workflow.yaml")}
    good = {name for name in names if name.startswith(("good_", "mutual_"))}
    broken = names - good
    lines = result.stderr.splitlines()
    assert len(lines) == len(broken)
    for name in broken:
        assert sum(line.startswith(f"{CORPUS / name}/") for line in lines) == 1, name
    assert f"{len(broken)} broken" in result.stdout
    assert f"{len(broken) + len(good)} DAG(s)" in result.stdout


def test_list_shows_broken_dags(tmp_path: Path) -> None:
    result = workflows(CORPUS / "config.py", "list")
    assert result.returncode == 0, result.stderr
    assert "cycle: BROKEN: " in result.stdout
    assert "good_chain: 4 tasks, schedule '0 3 * * *' (UTC)" in result.stdout


def test_running_a_broken_dag_is_one_line() -> None:
    line = one_line_error(workflows(CORPUS / "config.py", "run", "cycle"), 1)
    assert line.endswith("inputs form a cycle: a.yaml -> c.yaml -> b.yaml -> a.yaml")


def test_an_attempt_of_one_task_reads_only_its_own_file(tmp_path: Path) -> None:
    # An attempt a scheduler started (WORKFLOWS_TASK_RUN_ID set) of one task reads
    # workflow.yaml and its own file: a sibling's mistake is the scheduler's to report.
    write_project(
        tmp_path,
        {
            "d": {
                "workflow.yaml": "description: d\n",
                "ok.py": "def run(context):\n    print('ran')\n",
                "broken.yaml": "type: [\n",
            }
        },
    )
    config = tmp_path / "config.py"
    attempt = {**os.environ, "WORKFLOWS_TASK_RUN_ID": "7"}
    ran = workflows(config, "run", "d", "-o", "ok.py", env=attempt)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "ran\n"
    # By hand, the whole DAG is loaded and its load error reported.
    by_hand = one_line_error(workflows(config, "run", "d", "-o", "ok.py"), 1)
    assert "broken.yaml" in by_hand and "YAML syntax error" in by_hand
    # The task's own broken file: the same message as by hand.
    own = one_line_error(workflows(config, "run", "d", "-o", "broken.yaml", env=attempt), 1)
    assert own == by_hand
    # Hooks are handed the whole DAG: with one registered, the whole DAG is loaded.
    config.write_text(config.read_text() + "DAGS.register_hook(lambda event, **kwargs: None)\n")
    hooked = one_line_error(workflows(config, "run", "d", "-o", "ok.py", env=attempt), 1)
    assert hooked == by_hand


def test_run_imports_nothing_heavy() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "workflows_tick",
            str(EXAMPLES),
            "run",
            "hello",
            "-o",
            "begin.yaml",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    for heavy in ("click", "sqlalchemy", "alembic", "kubernetes", "psycopg2"):
        assert heavy not in imported
    # Only the DAG that was asked for is read.
    assert "workflows_tick.validate" not in imported
