"""Event hooks: the dag-workflows hook API.

A hook is any callable registered with :meth:`DagRegistry.register_hook`. It is
called as ``hook(event, dag=..., task=..., dag_run=..., task_run=..., exception=...)``
with the keyword arguments that fit the event (the others are ``None``), so a
hook written for dag-workflows runs unchanged.
"""

from __future__ import annotations

import enum
import json
import urllib.request
from collections.abc import Callable
from typing import Any

__all__ = ["DEFAULT_HOOK_TIMEOUT_SECONDS", "Event", "Hook", "make_slack_notification_hook"]

DEFAULT_HOOK_TIMEOUT_SECONDS = 10.0


class Event(enum.Enum):
    """What happened; the values are dag-workflows' own."""

    DAG_RUN_START = 0  # dag_run given
    TASK_RUN_START = 1  # task_run given
    TASK_START = 2  # task given: fired where the task executes
    TASK_FINISH = 3  # task, and exception when it failed: fired where the task executes
    TASK_RUN_FINISH = 4  # task_run given
    DAG_RUN_FINISH = 5  # dag_run given


Hook = Callable[..., object]


def make_slack_notification_hook(
    webhook_url: str, message_template: str, timeout: float = DEFAULT_HOOK_TIMEOUT_SECONDS
) -> Hook:
    """A hook that posts ``message_template`` to a Slack webhook when a task fails.

    The template is formatted with ``dag``, ``task`` and ``exception``, as in
    dag-workflows. The post gives up after ``timeout`` seconds.
    """

    def slack_notification_hook(
        event: Event, task: Any = None, exception: BaseException | str | None = None, **_: Any
    ) -> None:
        if event is not Event.TASK_FINISH or exception is None or task is None:
            return
        text = message_template.format(dag=task.dag.name, task=task.name, exception=exception)
        request = urllib.request.Request(
            webhook_url,
            data=json.dumps({"text": text}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()

    return slack_notification_hook
