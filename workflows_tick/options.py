"""The scheduler's options and their defaults, each named once.

Kept free of heavy imports: the ``workflows`` command builds its ``schedule``
options (and their ``--help`` defaults) from these.
"""

from __future__ import annotations

from dataclasses import dataclass

from workflows_tick.hooks import DEFAULT_HOOK_TIMEOUT_SECONDS

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_HOOK_TIMEOUT_SECONDS",
    "DEFAULT_INTERVAL_SECONDS",
    "DEFAULT_LEASE_SECONDS",
    "DEFAULT_MAX_RUNNING",
    "DEFAULT_RELOAD_SECONDS",
    "DEFAULT_REMOVED_GRACE_SECONDS",
    "SchedulerOptions",
]


DEFAULT_INTERVAL_SECONDS = 5.0
"""The longest sleep between passes."""
DEFAULT_CONCURRENCY = 1
"""Tasks one worker scheduler runs at once."""
DEFAULT_MAX_RUNNING = 20
"""Kubernetes pods in flight across all schedulers."""
DEFAULT_LEASE_SECONDS = 60.0
"""How long a running task run stays a scheduler's without renewal."""
DEFAULT_RELOAD_SECONDS = 10.0
"""How often a looping scheduler looks for added, removed or edited DAGs."""
DEFAULT_REMOVED_GRACE_SECONDS = 600.0
"""How long after its last pass another scheduler (not stopped) counts as live: while
one is, its copies of the DAGs keep their runs and cursors (rolling deploys)."""


@dataclass(frozen=True)
class SchedulerOptions:
    config: str
    manager: str = "worker"
    once: bool = False
    until_idle: bool = False
    interval: float = DEFAULT_INTERVAL_SECONDS
    concurrency: int = DEFAULT_CONCURRENCY
    fork_server: bool = True
    max_running: int = DEFAULT_MAX_RUNNING
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    reload_seconds: float = DEFAULT_RELOAD_SECONDS
    removed_grace: float = DEFAULT_REMOVED_GRACE_SECONDS
    hook_timeout: float = DEFAULT_HOOK_TIMEOUT_SECONDS
    metrics_port: int | None = None
