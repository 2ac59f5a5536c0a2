"""The ``workflows`` entry point.

``workflows <config> run <dag> -o <task>`` is started once per task by the
scheduler, so that exact shape is parsed here by hand and runs without importing
click (a fifth of the start-up). Anything else, including ``--help`` and any
malformed ``run``, goes to the click CLI, which gives the same result with its
usual messages.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

_SELECTORS = {
    "-o": "only",
    "--only": "only",
    "-b": "begin",
    "--begin": "begin",
    "-e": "end",
    "--end": "end",
}


LOG_JSON_VARIABLES = ("WORKFLOWS_LOG_JSON", "LOG_JSON")
"""Environment variables that turn on ``--log-json`` (``LOG_JSON`` is dag-workflows')."""
_TRUE = ("1", "true", "t", "yes", "y", "on")
_FALSE = ("", "0", "false", "f", "no", "n", "off")


def env_log_json(environ: Mapping[str, str]) -> bool | None:
    """The log format the environment asks for; None when a value is not a boolean
    (click then reports it)."""
    for name in LOG_JSON_VARIABLES:
        value = environ.get(name)
        if value is None:
            continue
        value = value.strip().lower()
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        return None
    return False


def parse_run(
    argv: list[str], log_json: bool = False
) -> tuple[str, int, bool, str, dict[str, str]] | None:
    """``(config, verbose, log_json, dag, selection)`` for a plain ``run``, else None.

    ``verbose`` is -1 for ``--quiet``; ``log_json`` is the default for the format.
    """
    verbose, quiet, i = 0, False, 0
    while i < len(argv) and argv[i] in ("-v", "--verbose", "--quiet", "--log-json", "--log-text"):
        if argv[i] in ("--log-json", "--log-text"):
            log_json = argv[i] == "--log-json"
        elif argv[i] == "--quiet":
            quiet = True
        else:
            verbose += 1
        i += 1
    if quiet:
        verbose = -1
    rest = argv[i:]
    if len(rest) < 3 or rest[1] != "run" or rest[0].startswith("-") or rest[2].startswith("-"):
        return None
    config, dag, options = rest[0], rest[2], rest[3:]
    selection: dict[str, str] = {}
    while options:
        if len(options) < 2 or options[0] not in _SELECTORS or options[1].startswith("-"):
            return None
        key = _SELECTORS[options[0]]
        if key in selection:
            return None
        selection[key] = options[1]
        options = options[2:]
    if "only" in selection and len(selection) > 1:
        return None
    return config, verbose, log_json, dag, selection


def main(argv: list[str] | None = None) -> Any:
    args = sys.argv[1:] if argv is None else argv
    log_json = env_log_json(os.environ)
    if log_json is not None:
        parsed = parse_run(args, log_json)
        if parsed is not None:
            return _run(*parsed)
    from workflows_tick.cli import main as click_main

    return click_main(args)


def _run(config: str, verbose: int, log_json: bool, dag: str, selection: dict[str, str]) -> None:
    from workflows_tick.config import load_registry
    from workflows_tick.errors import UnknownDagError, WorkflowsError
    from workflows_tick.lifeline import die_with_scheduler
    from workflows_tick.logs import setup_logging
    from workflows_tick.runner import run_tasks

    die_with_scheduler(os.environ)
    setup_logging(json_lines=log_json, verbose=verbose)
    try:
        registry = load_registry(config)
        if dag not in registry:
            raise UnknownDagError(dag, registry.names())
        loaded = None
        if _started_by_scheduler(selection, registry.hooks):
            # The scheduler loaded the whole DAG when it claimed the task: read the
            # task's own file (edits are seen at once) and workflow.yaml, not the rest.
            loaded = registry.task_alone(dag, selection["only"])
        if loaded is None:
            loaded = registry.get(dag)
        run_tasks(loaded, loaded.select(**selection), os.environ, registry.hooks)
    except WorkflowsError as exc:
        from workflows_tick.logs import redact

        print(f"workflows: {redact(' '.join(str(exc).split()))}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("workflows: interrupted", file=sys.stderr)
        sys.exit(130)


TASK_RUN_VARIABLE = "WORKFLOWS_TASK_RUN_ID"
"""Set by the worker manager in the environment of every attempt it starts."""


def _started_by_scheduler(selection: Mapping[str, str], hooks: Sequence[object]) -> bool:
    """Whether ``run`` may read only the one task's file: one task (``-o``) of an
    attempt a scheduler started, and no hooks (which are handed the whole DAG)."""
    return list(selection) == ["only"] and not hooks and bool(os.environ.get(TASK_RUN_VARIABLE))
