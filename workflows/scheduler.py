"""dag-workflows' ``workflows.scheduler``: ``trigger_dag(dag, parameters=...)``.

The database layer is imported on the first call, not here: config modules import
this module, and ``workflows <config> run`` must start fast.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from workflows_tick.model import Dag
    from workflows_tick.queries import DagRunRow

__all__ = ["trigger_dag"]


def trigger_dag(
    dag: Dag | str, *, creator: str = "python", parameters: Mapping[str, str] | None = None
) -> DagRunRow:
    """Create a run of ``dag`` now; see :func:`workflows_tick.scheduler.trigger_dag`."""
    from workflows_tick.scheduler import trigger_dag as trigger

    return trigger(dag, creator=creator, parameters=parameters)
