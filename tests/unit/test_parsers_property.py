"""Property tests: the spec and header parsers never fail with anything but DagLoadError,
and a valid spec written into any task file format reads back as written."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workflows_tick import loader
from workflows_tick.errors import DagLoadError
from workflows_tick.loader import cron_problem, task_from_source, workflow_from_text
from workflows_tick.model import TaskType
from workflows_tick.taskfiles import shell_header, sql_header

SETTINGS = settings(
    max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "80")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

EXTENSIONS = [".sql", ".py", ".sh", ".yaml", ".yml"]

yaml_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=20),
)
yaml_values = st.recursive(
    yaml_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=10), children, max_size=4),
    ),
    max_leaves=12,
)
task_keys = st.sampled_from([*loader.TASK_KEYS, "other"])
workflow_keys = st.sampled_from([*loader.WORKFLOW_KEYS, "x"])
# Text that looks a bit like our files: YAML punctuation, comment markers, quotes.
fragments = st.sampled_from(
    ["/*", "*/", "#", "#!", '"""', "'''", ":", "- ", "[", "]", "{", "}", "\n", "  ", "\t",
     "type: ", "inputs: ", "def run(c):\n    pass\n", "&a", "*a", "!!python/object", "\x00",
     "\ufeff", "\r\n", "%YAML 1.1\n", "---\n", "..."]
)  # fmt: skip
junk = st.one_of(
    st.text(max_size=200), st.lists(st.one_of(fragments, st.text(max_size=5))).map("".join)
)


def _check(path: Path, source: str) -> None:
    try:
        task = task_from_source(path, source)
    except DagLoadError as exc:
        assert "\n" not in str(exc)
        assert str(exc).startswith(str(path))
    else:
        assert task.name == path.name


@SETTINGS
@given(st.sampled_from(EXTENSIONS), junk)
def test_any_task_text_loads_or_gives_a_load_error(extension: str, source: str) -> None:
    _check(Path(f"/dag/task{extension}"), source)


@SETTINGS
@given(st.sampled_from(EXTENSIONS), st.dictionaries(task_keys, yaml_values, max_size=6))
def test_any_task_spec_mapping_loads_or_gives_a_load_error(
    extension: str, spec: dict[str, Any]
) -> None:
    text = yaml.safe_dump(spec)
    _check(Path(f"/dag/t{extension}"), render(extension, text, "SELECT 1;\n"))


@SETTINGS
@given(st.one_of(junk, st.dictionaries(workflow_keys, yaml_values).map(yaml.safe_dump)))
def test_any_workflow_text_loads_or_gives_a_load_error(text: str) -> None:
    path = Path("/dag/workflow.yaml")
    try:
        fields = workflow_from_text(path, text)
    except DagLoadError as exc:
        assert "\n" not in str(exc)
    else:
        assert isinstance(fields["description"], str)


@SETTINGS
@given(st.text(max_size=60))
def test_cron_problem_never_raises(expr: str) -> None:
    result = cron_problem(expr)
    assert result is None or isinstance(result, str)


def render(extension: str, header: str, body: str) -> str:
    if extension == ".sql":
        return f"/*\n{header}*/\n{body}"
    if extension == ".sh":
        lines = "".join(f"# {line}\n" for line in header.splitlines())
        return f"#!/usr/bin/env bash\n{lines}\n{body}"
    if extension == ".py":
        return f'r"""\n{header}"""\n\n\ndef run(context):\n    pass\n'
    return header


names = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)
env_names = st.from_regex(r"[A-Z_][A-Z0-9_]{0,10}", fullmatch=True)
printable = st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters='*/"\\')
descriptions = st.text(printable, max_size=40)


@st.composite
def valid_specs(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if draw(st.booleans()):
        spec["description"] = draw(descriptions)
    spec["parameters"] = draw(st.lists(env_names, max_size=3, unique=True))
    spec["inputs"] = [f"{n}.yaml" for n in draw(st.lists(names, max_size=3, unique=True))]
    if draw(st.booleans()):
        spec["retries"] = draw(st.integers(0, 10))
    if draw(st.booleans()):
        spec["timeout"] = draw(st.floats(0.5, 1e6))
    if draw(st.booleans()):
        spec["worker_config"] = draw(
            st.dictionaries(names, st.text(printable, max_size=10), max_size=3)
        )
    return spec


@SETTINGS
@given(st.sampled_from(EXTENSIONS), valid_specs())
def test_valid_spec_round_trips(extension: str, spec: dict[str, Any]) -> None:
    if extension == ".sql" and "DATABASE_URL" not in spec["parameters"]:
        spec["parameters"].append("DATABASE_URL")
    body = "SELECT 1;\n/* a later comment */\n"
    source = render(extension, yaml.safe_dump(spec), body)
    task = task_from_source(Path(f"/dag/the_task_file{extension}"), source)
    assert task.type is {".sql": TaskType.SQL, ".py": TaskType.PYTHON, ".sh": TaskType.SHELL}.get(
        extension, TaskType.NO_OP
    )
    assert task.description == spec.get("description", "")
    assert list(task.parameters) == spec["parameters"]
    assert list(task.inputs) == spec["inputs"]
    assert task.retries == spec.get("retries")
    assert task.timeout == spec.get("timeout")
    assert dict(task.worker_config) == spec.get("worker_config", {})
    if extension == ".sql":
        assert task.body == body


@SETTINGS
@given(st.text(max_size=200), st.text(max_size=200))
def test_sql_header_splits_at_the_first_comment_end(header: str, body: str) -> None:
    header = header.replace("*/", "")
    result = sql_header(f"/*{header}*/{body}")
    assert result.text == header
    expected = body[2:] if body.startswith("\r\n") else body.removeprefix("\n")
    assert result.body == expected


@SETTINGS
@given(st.lists(st.text(st.characters(blacklist_categories=["Cs"]), max_size=30), max_size=8))
def test_shell_header_round_trips(lines: list[str]) -> None:
    lines = [
        line
        for line in lines
        if not any(c in line for c in "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
    ]
    source = "".join(f"# {line}\n" for line in lines) + "\necho done\n"
    result = shell_header(source)
    if lines:
        assert result.text == "\n".join(lines)
        assert result.first_line == 1
    assert result.body == source
