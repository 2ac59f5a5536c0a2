"""Event hooks: the dag-workflows hook API.

A hook is any callable registered with :meth:`DagRegistry.register_hook`. It is
called as ``hook(event, dag=..., task=..., dag_run=..., task_run=..., exception=...)``
with the keyword arguments that fit the event (the others are ``None``), so a
hook written for dag-workflows runs unchanged.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "DEFAULT_HOOK_TIMEOUT_SECONDS",
    "Event",
    "Hook",
    "call_hooks",
    "make_slack_notification_hook",
]

log = logging.getLogger(__name__)

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

HOOK_ARGUMENTS = ("dag", "task", "dag_run", "task_run", "exception")
"""The keyword arguments every hook receives (``None`` when they do not fit the event)."""


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
        # Imported here: every `workflows run` imports this module, few post to Slack.
        import json
        import urllib.request

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


def call_hooks(
    hooks: Sequence[Hook],
    event: Event,
    *,
    timeout: float = DEFAULT_HOOK_TIMEOUT_SECONDS,
    **kwargs: Any,
) -> None:
    """Call each hook as ``hook(event, dag=, task=, dag_run=, task_run=, exception=)``.

    A hook that raises is logged and skipped; one still running after ``timeout``
    seconds is left to finish in the background (a daemon thread), so neither can
    fail or stall what fired the event.
    """
    arguments = {name: kwargs.get(name) for name in HOOK_ARGUMENTS}
    for hook in hooks:
        name = getattr(hook, "__name__", repr(hook))

        def call(hook: Hook = hook, name: str = name) -> None:
            try:
                hook(event, **arguments)
            except Exception:
                log.warning("hook %s failed on %s", name, event.name, exc_info=True)

        thread = threading.Thread(target=call, name=f"hook {name}", daemon=True)
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            log.warning(
                "hook %s still running after %gs on %s; not waiting for it",
                name,
                timeout,
                event.name,
            )
