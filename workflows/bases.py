"""dag-workflows' ``workflows.bases``: the registry, DAG and task classes, and events."""

from workflows_tick.dags import Dag as DAG
from workflows_tick.dags import DagRegistry, Task
from workflows_tick.errors import DagLoadError as RegistrationError
from workflows_tick.hooks import Event

__all__ = ["DAG", "DagRegistry", "Event", "RegistrationError", "Task"]
