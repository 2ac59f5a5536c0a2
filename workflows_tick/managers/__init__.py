"""Task managers: how a claimed task run is executed (subprocess, Kubernetes pod, ...)."""

from __future__ import annotations

from workflows_tick.managers.base import (
    Launch,
    ManagerSettings,
    Outcome,
    PollResult,
    RunningTaskRun,
    TaskManager,
)

__all__ = ["Launch", "ManagerSettings", "Outcome", "PollResult", "RunningTaskRun", "TaskManager"]
