"""dag-workflows' ``workflows.testing``: the ``workflows`` and ``conn`` pytest fixtures.

They are registered automatically (a pytest plugin of workflows-tick); see
:mod:`workflows_tick.pytest_plugin`.
"""

from workflows_tick.pytest_plugin import (
    WorkflowsFixture,
    conn,
    workflows,
    workflows_database_url,
)

__all__ = ["WorkflowsFixture", "conn", "workflows", "workflows_database_url"]
